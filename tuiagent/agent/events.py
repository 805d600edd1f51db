"""What the agent says as it works: typed events for the headless runner and the UI alike.

Events that are also run-log lines subclass `LogRecord` and carry the typed record as it was
written (tuiagent/runs/records.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from tuiagent.cost.budget import BudgetSnapshot
from tuiagent.redact import redact_data
from tuiagent.runs import records


@dataclass(frozen=True)
class Event:
    """Base of every agent event. What it carries is redacted as it is made (no key ever
    reaches the screen, a notice or the headless output)."""

    def __post_init__(self) -> None:
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if isinstance(value, records.Record):
                object.__setattr__(self, name, value.redacted())
            elif isinstance(value, str | dict | list):
                clean = redact_data(value)
                # The record itself is kept when there is nothing to hide.
                if clean is not value and clean != value:
                    object.__setattr__(self, name, clean)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type[Event]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True)
class LogRecord(Event):
    record: records.Record

    @property
    def type(self) -> str:
        return self.record.TYPE


@dataclass(frozen=True)
class RunStarted(LogRecord):
    record: records.RunStart


@dataclass(frozen=True)
class Prompted(LogRecord):
    """The user's message joined the conversation (its `user` record)."""

    record: records.UserMessage


@dataclass(frozen=True)
class Answered(LogRecord):
    """The request's answer, as the run log keeps it (after its last call's TurnFinished)."""

    record: records.Answer


@dataclass(frozen=True)
class McpStateChanged(LogRecord):
    """An MCP server started, failed to start or stopped (agent/mcp.py)."""

    record: records.McpServerState


@dataclass(frozen=True)
class McpCostNoted(LogRecord):
    """What each MCP server's tool definitions took in an agent call (agent/mcp.py)."""

    record: records.McpCost


@dataclass(frozen=True)
class TurnFinished(LogRecord):
    record: records.Turn


@dataclass(frozen=True)
class ToolFinished(LogRecord):
    """A tool ran. `output` is what the model saw."""

    record: records.ToolCall
    output: str = ""
    original: str = ""


@dataclass(frozen=True)
class SubAgentEnded(LogRecord):
    """The `agent` record that closes a sub-agent: how it ended and what it spent."""

    record: records.SubAgentEnd


@dataclass(frozen=True)
class CallHeld(LogRecord):
    """A call's worst case is held in flight, its `hold` record written: it is being sent."""

    record: records.HoldRecord


@dataclass(frozen=True)
class AttemptFailed(LogRecord):
    record: records.Attempt


@dataclass(frozen=True)
class ContextEdited(LogRecord):
    """The conversation was edited to keep its context in bounds (agent/context.py):
    old tool results cleared, a compaction, /clear. The record says what it saved."""

    record: records.ContextEdit


@dataclass(frozen=True)
class RunEnded(LogRecord):
    record: records.RunEnd


@dataclass(frozen=True)
class Notice(Event):
    """Something the user should read: a fallback, a halt, a warning."""

    text: str
    level: str = "info"  # info | warning | error


@dataclass(frozen=True)
class TurnStarted(Event):
    turn: int
    tier: str
    model: str
    max_tokens: int
    route_reason: str
    # The tiers the router weighed: [{tier, model, predicted_cost_usd, cached_prefix_tokens}].
    route_candidates: list[dict[str, Any]] = field(default_factory=list)
    attempt: int = 1  # > 1 when a transient failure is being retried: discard the last stream


@dataclass(frozen=True)
class AnswerDelta(Event):
    turn: int
    text: str


@dataclass(frozen=True)
class ToolCallStarted(Event):
    turn: int
    tool_use_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Halted(Event):
    """A limit stopped the work. In the UI the session can go on once the limit is raised."""

    reason: records.HaltReason
    detail: str
    # Nothing of the user's message was sent and it left the conversation: the UI gives it
    # back to the user (to send again once the limit is raised).
    withdrawn: str | None = None
    needed_usd: Decimal | None = None  # at the cap: what the next call may cost at most

    @property
    def by_cap(self) -> bool:
        """Stopped by the spending cap: raising the cap lets the session go on."""
        return self.reason == records.HaltReason.MAX_COST


@dataclass(frozen=True)
class CacheStateChanged(Event):
    """The prompt cache of one model after a call: what is cached and until when.

    Times are wall-clock epoch seconds (`time.time()`), so the UI can count down to expiry.
    """

    model: str
    cached_prefix_tokens: int
    last_write_at: float | None
    last_read_at: float | None
    expires_at: float | None
    miss_reason: str | None = None


@dataclass(frozen=True)
class BudgetChanged(Event):
    """The budget after a reserve, settle, release or cap change: what a gauge shows."""

    budget: BudgetSnapshot


@dataclass(frozen=True)
class SubAgentChanged(Event):
    """A sub-agent (agent/delegate.py) was queued, started, made a call, or ended.

    state: queued | running | completed | stopped (its slice or a limit) | failed |
    interrupted. `spent` is what its calls settled, `in_flight` what its open call may
    still bill at most, `slice_usd` the most it may spend.
    """

    agent: str
    task: str
    tier: str
    state: str
    turns: int = 0
    spent: Decimal = Decimal(0)
    in_flight: Decimal = Decimal(0)
    slice_usd: Decimal = Decimal(0)
    detail: str = ""
