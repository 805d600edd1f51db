"""Checks of the environment a run starts in, before anything is sent: one line, exit 2.

Config values are checked where they are read (`tuiagent.config`), the key in
`tuiagent.apikey`; here are the base URL and the workspace.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from tuiagent.errors import UsageError

BASE_URL_ENV = "ANTHROPIC_BASE_URL"
# Never a workspace: the agent's tools would read (and its commands act on) the whole
# machine, or kernel files whose reads never end.
_SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an API's base URL (http or https, a host, a valid port, nothing
    a parser would quietly drop: whitespace or a control character), or None."""
    if not url.isprintable() or any(c.isspace() for c in url):
        return "it holds whitespace or a control character"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    if not parts.hostname:
        return "it has no host"
    if port == 0:
        return "port 0 cannot be connected to"
    return None


def check_base_url() -> None:
    """ANTHROPIC_BASE_URL, when set, must be a usable URL (`url_problem`)."""
    url = os.environ.get(BASE_URL_ENV)
    if url and (problem := url_problem(url)):
        raise UsageError(f"{BASE_URL_ENV} is not a usable URL ({problem}): {url!r}")


def check_workspace(path: Path) -> None:
    """Refuse `/` and the kernel's trees (/proc, /sys, /dev) as a workspace, as given or real."""
    _refuse_system(path, Path(os.path.abspath(path)))
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise UsageError(f"workspace {path} cannot be opened: {exc}") from None
    _refuse_system(path, real)


def _refuse_system(given: Path, candidate: Path) -> None:
    if candidate == Path(candidate.anchor):
        raise UsageError(f"workspace {given} is the whole filesystem; choose a project folder")
    if any(candidate == t or t in candidate.parents for t in _SYSTEM_TREES):
        raise UsageError(f"workspace {given} is a system folder ({candidate}); refused")
