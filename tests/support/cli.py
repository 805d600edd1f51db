"""`tuiagent` as a user runs it: a subprocess with no key and no base URL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without ANTHROPIC_* (no key, no base URL), plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    return {**base, **extra}


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`tuiagent ARGS` in a subprocess, as a user runs it (in `cwd`, if given)."""
    return subprocess.run(
        [sys.executable, "-m", "tuiagent", *args],
        capture_output=True,
        text=True,
        env=cli_env(**(env or {})),
        timeout=120,
        cwd=cwd,
    )


def start_cli(*args: str, sigint_ignored: bool = False) -> subprocess.Popen[str]:
    """`tuiagent ARGS` started in the background, to be signalled by the test (with SIGINT
    ignored from the start, as a script's background job `cmd &` gets it, when asked)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tuiagent", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        if sigint_ignored
        else None,
    )
