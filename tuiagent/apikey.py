"""The API key: read once at start, checked, kept out of commands' reach, redacted everywhere.

A process's initial environment stays readable in /proc/PID/environ for its whole life (by
any process of the same user, such as a `run_command` child), even after `os.environ` is
cleared. So the real entry point (`hand_off_secrets`, first thing in `tuiagent.cli.main`)
re-executes the same interpreter with the same argv and PID, the secrets removed from the
environment and passed through an inherited pipe instead; the new image reads the pipe and
closes it before doing anything else. After that the key lives only in this process's
memory, never in its environ, its argv or an open descriptor a child could inherit.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from tuiagent.errors import UsageError
from tuiagent.redact import remember

KEY_ENV = "ANTHROPIC_API_KEY"
TOKEN_ENV = "ANTHROPIC_AUTH_TOKEN"
SECRET_ENVS = (KEY_ENV, TOKEN_ENV)
# The number of the inherited pipe the secrets arrive on after the re-exec.
HANDOFF_ENV = "TUIAGENT_SECRETS_FD"
# A pipe holds at least this much without a reader (POSIX: PIPE_BUF is 512; Linux 64 KiB).
_HANDOFF_MAX = 16384

_secrets: dict[str, str] = {}


def _read_handoff(fd_text: str) -> None:
    try:
        fd = int(fd_text)
    except ValueError:
        return
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        received = json.loads(b"".join(chunks))
    except (OSError, ValueError):
        return
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # no child may inherit it
    if isinstance(received, dict):
        for name, value in received.items():
            if name in SECRET_ENVS and isinstance(value, str):
                _secrets[name] = value
                remember(value)


def hand_off_secrets() -> None:
    """Move the secrets out of the environment: read them after a re-exec, or re-exec now.

    Only the real entry point calls this (it replaces the process image); it returns at
    once when there is nothing to hide.
    """
    handoff = os.environ.pop(HANDOFF_ENV, None)
    if handoff is not None:
        _read_handoff(handoff)
        return
    present = {name: os.environ[name] for name in SECRET_ENVS if os.environ.get(name)}
    for value in present.values():
        remember(value)
    if not present or os.name != "posix" or not sys.executable or not sys.orig_argv:
        return
    payload = json.dumps(present).encode()
    if len(payload) > _HANDOFF_MAX:
        raise UsageError(f"{KEY_ENV} is too long to be an API key")
    read_end, write_end = os.pipe()
    os.write(write_end, payload)
    os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENVS}
    env[HANDOFF_ENV] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def secret(name: str) -> str | None:
    """A secret by its variable's name: handed off at start, or (in-process) the environment."""
    value = _secrets.get(name) or os.environ.get(name) or None
    remember(value)
    return value


def api_key() -> str | None:
    """The API key, checked: whitespace or control characters are refused, never echoed."""
    for name in SECRET_ENVS:
        value = secret(name)
        if value is not None and not (value.isascii() and value.isprintable() and " " not in value):
            raise UsageError(
                f"{name} contains whitespace or control characters (a trailing newline or "
                "space from a copy-paste?); set it again without them"
            )
    return secret(KEY_ENV)


def auth_token() -> str | None:
    """ANTHROPIC_AUTH_TOKEN (a bearer token some gateways use), handed to the SDK directly."""
    api_key()  # checks both
    return secret(TOKEN_ENV)
