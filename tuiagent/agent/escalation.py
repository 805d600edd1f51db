"""Escalation: a failed fast-tier step (an empty answer, a refusal, the same tool error twice)
is redone one tier up, once per request; the rest of the request stays at that tier."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tuiagent.agent.router import step_failure, step_up


@dataclass
class Escalation:
    enabled: bool  # only auto routing escalates
    floor: tuple[str, str] | None = None  # the lowest tier allowed now, and why
    redo_of: int | None = None  # the turn being redone
    _tool_errors: set[tuple[str, str, str]] = field(default_factory=set)

    def may_escalate(self, tier: str) -> bool:
        return self.enabled and tier == "fast" and self.floor is None

    def failed_step(self, tier: str, text: str, stop_reason: str | None, tools: bool) -> str | None:
        """Why this step failed, when it may be redone; None otherwise."""
        return step_failure(text, stop_reason, tools) if self.may_escalate(tier) else None

    def tool_error(self, tier: str, name: str, args: dict[str, Any], error: str) -> str | None:
        """ "the same tool error twice" when this error was seen before in the request."""
        seen = (name, json.dumps(args, sort_keys=True), error)
        repeated = seen in self._tool_errors and self.may_escalate(tier)
        self._tool_errors.add(seen)
        return "the same tool error twice" if repeated else None

    def escalate(self, turn: int, tier: str, failed: str) -> str:
        """Raise the floor one tier above `tier` for the redo; returns the notice text."""
        up = step_up(tier)
        self.floor, self.redo_of = (up, f"escalated: fast-tier turn {turn} gave {failed}"), turn
        return f"turn {turn} on the fast tier gave {failed}: redoing it on {up}"

    def step_done(self) -> None:
        """A step went through: after the redo, the floor stays, with its reason."""
        if self.floor is not None:
            self.floor = (self.floor[0], f"kept at {self.floor[0]} after the escalation")

    def started(self) -> int | None:
        """The turn this step redoes (once), or None."""
        redo, self.redo_of = self.redo_of, None
        return redo
