"""Every exit status of tuiagent, and how a run's halt reason becomes its status and exit code.

Decided here once: `tuiagent run`, the app and replay all end a run through `outcome`.
"""

from __future__ import annotations

import signal
from typing import NamedTuple

EXIT_OK = 0
EXIT_ERROR = 1  # the run failed: an API error, a network that could not be reached
EXIT_USAGE = 2  # bad flags, config or input: one line says which
EXIT_HALTED = 3  # stopped by a limit the user set (the cap, max turns, ...)
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl+C
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143
EXIT_SIGHUP = 128 + signal.SIGHUP  # 129


class Outcome(NamedTuple):
    status: str  # run_end's status: completed | halted | error
    halt_reason: str | None
    exit_code: int


def outcome(halt_reason: str | None, *, unreachable: bool = False) -> Outcome:
    """A run's end from its halt reason. `unreachable`: the last failed attempt never got an
    answer, so running out of retries is an error (1), not a limit the user set (3)."""
    if halt_reason is None:
        return Outcome("completed", None, EXIT_OK)
    if halt_reason == "error" or (halt_reason == "max_retries" and unreachable):
        return Outcome("error", halt_reason, EXIT_ERROR)
    return Outcome("halted", halt_reason, EXIT_HALTED)
