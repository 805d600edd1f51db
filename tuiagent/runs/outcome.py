"""How a run ended, decided once: its status, its halt reason and the exit code.

`tuiagent run`, the app, replay, experiments and sub-agents all end through `outcome`.
"""

from __future__ import annotations

from typing import NamedTuple

from tuiagent.exit_codes import EXIT_ERROR, EXIT_HALTED, EXIT_OK, exit_for_signal
from tuiagent.runs.records import HaltReason

COMPLETED, HALTED, ERROR = "completed", "halted", "error"  # run_end's status


class Outcome(NamedTuple):
    status: str  # completed | halted | error
    halt_reason: HaltReason | None
    exit_code: int


def outcome(
    halt_reason: str | None,
    *,
    unreachable: bool = False,
    answered: bool = True,
    signum: int | None = None,
) -> Outcome:
    """A run's end from its halt reason. `unreachable`: the last failed attempt never got an
    answer, so running out of retries is an error (1), not a limit the user set (3).
    `answered` False: the run had to answer and did not (a replay): never "completed".
    `signum`: interrupted by this signal (its exit code, 128 + the signal)."""
    if signum is not None:
        return Outcome(HALTED, HaltReason.INTERRUPTED, exit_for_signal(signum))
    reason = None if halt_reason is None else HaltReason(halt_reason)
    if reason is None:
        return Outcome(COMPLETED, None, EXIT_OK) if answered else Outcome(HALTED, None, EXIT_HALTED)
    if reason is HaltReason.ERROR or (reason is HaltReason.MAX_RETRIES and unreachable):
        return Outcome(ERROR, reason, EXIT_ERROR)
    return Outcome(HALTED, reason, EXIT_HALTED)
