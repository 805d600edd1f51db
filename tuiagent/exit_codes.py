"""Every exit status of tuiagent (how a run's end becomes one: tuiagent/runs/outcome.py)."""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_ERROR = 1  # the run failed: an API error, a network that could not be reached
EXIT_USAGE = 2  # bad flags, config or input: one line says which
EXIT_HALTED = 3  # stopped by a limit the user set (the cap, max turns, ...)
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl+C
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143
EXIT_SIGHUP = 128 + signal.SIGHUP  # 129

_BY_SIGNAL: dict[int, int] = {
    signal.SIGINT: EXIT_INTERRUPTED,
    signal.SIGTERM: EXIT_SIGTERM,
    signal.SIGHUP: EXIT_SIGHUP,
}


def exit_for_signal(signum: int) -> int:
    """The exit status of a run stopped by this signal (the shell's 128 + its number)."""
    return _BY_SIGNAL.get(signum, 128 + signum)
