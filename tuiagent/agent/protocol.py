"""What a face may ask of an agent: the UI holds this interface, never the concrete `Agent`.

Everything else the UI shows comes from the events of the streams the methods return
(agent/events.py EventStream: iterate it, then ask its result). To interrupt, close the
stream (`aclose()`, or cancel the task that iterates it): the call in flight is settled and recorded there and then, and what streamed
stays in the conversation. `Agent` (agent/loop.py) satisfies it; mypy checks that where the
session hands an `Agent` to the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from tuiagent.agent.edits import EditPreview
from tuiagent.agent.estimate import Estimate
from tuiagent.agent.events import (
    BudgetChanged,
    ContextEdited,
    EventStream,
    Halted,
    RunEnded,
    RunStarted,
)
from tuiagent.cost.budget import BudgetSnapshot
from tuiagent.runs.outcome import Outcome
from tuiagent.runs.records import HaltReason, Turn

# Asked before a tool that acts on the world runs: True runs it; False, or the user's reason
# as a string, declines it.
Approver = Callable[[str, dict[str, Any]], Awaitable[bool | str]]


@dataclass(frozen=True)
class AgentSnapshot:
    """The agent's state as a face shows it, at one moment."""

    run_id: str
    turns: int  # model calls made in the run
    tier: str  # auto | fast | balanced | deep
    max_turns: int  # model calls allowed per request
    budget: BudgetSnapshot  # cap, spent (settled) and in flight
    status: str | None  # set when the run has ended
    halt_reason: HaltReason | None  # what stopped the last request (max_cost, max_turns, ...)
    needed_usd: Decimal | None  # halted at the cap: the most the next call may cost
    # The limit a request stopped at partway, which go_on goes on with (it stays once the
    # limit is raised); None: nothing to go on with (answered, interrupted, its message given
    # back, the conversation cleared).
    waiting: HaltReason | None
    # The last `turn` record of this agent's own calls (not a sub-agent's): after an
    # interrupt, the stopped call's record when its stop_reason is "interrupted".
    last_call: Turn | None


@dataclass(frozen=True)
class RequestEnd:
    """How a request (send, go_on) ended: the result of its event stream."""

    answer: str | None  # the final answer's text; None when it stopped before one
    halt_reason: HaltReason | None  # what stopped it (None: answered)
    halted: Halted | None  # the Halted event a limit sent (None: answered, or an error)
    turns: int  # model calls it made (after go_on: since it went on)
    cost_usd: Decimal  # what its calls cost, sub-agents' and helper calls' included


class AgentControl(Protocol):
    """The steering a face has: send, go on, compact, keep warm (each an event stream),
    clear, set the cap, tier and turns, finish, a snapshot, and the budget's changes as they
    happen (`watch_budget`: in the thread that made each one)."""

    approve: Approver | None

    def start(
        self, replay_of: dict[str, Any] | None = None, eval_of: dict[str, Any] | None = None
    ) -> RunStarted: ...

    def send(self, prompt: str) -> EventStream[RequestEnd]: ...

    async def estimate(self, prompt: str) -> Estimate: ...

    def go_on(self) -> EventStream[RequestEnd]: ...

    def compact(self) -> EventStream[int]: ...

    def keep_warm(self) -> EventStream[None]: ...

    def clear_conversation(self) -> ContextEdited: ...

    def set_cap(self, cap: Decimal) -> BudgetChanged: ...

    def watch_budget(self, listener: Callable[[BudgetSnapshot], None]) -> Callable[[], None]: ...

    def set_tier(self, tier: str) -> None: ...

    def set_max_turns(self, turns: int) -> None: ...

    def undo(self, every: bool = False) -> list[str]: ...

    def preview_edit(self, name: str, arguments: dict[str, Any]) -> EditPreview | None: ...

    def finish(self, end: Outcome | None = None) -> RunEnded: ...

    def snapshot(self) -> AgentSnapshot: ...
