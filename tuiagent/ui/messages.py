"""App-wide messages: what flows up from the session workers, the Budget and the panels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from tuiagent.config import Settings
    from tuiagent.session import Session


@dataclass
class SessionOpened(Message):
    """The agent is built (the SDK is imported); `resumed_from`: the run it goes on with."""

    session: Session
    resumed_from: str | None = None
    settings: Settings | None = None  # what it was built from (the app's may have changed since)


@dataclass
class SessionFailed(Message):
    """The run could not start: one line that says why."""

    error: str


class BudgetMoved(Message):
    """The Budget changed (in any thread): the app reads it again (ui/budget.py)."""
