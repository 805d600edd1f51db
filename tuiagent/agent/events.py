"""What the agent says as it works: typed events for the headless runner and the UI alike.

Events that are also run-log lines subclass `LogRecord` and carry the typed record as it was
written (tuiagent/runs/records.py).

And the one shape for a step that streams and then has a result: `EventStream`. Every step
of the agent (a metered call, a request, a step's tool calls, a compaction, a sub-agent's
work) is one: iterate it for its events, then ask its result.
Its driver (`EventStream._drive`) is the runtime that runs a step and the sub-steps it
yields; it knows nothing of what the steps do.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, fields
from decimal import Decimal
from types import TracebackType
from typing import Any, Generic, TypeVar

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


R = TypeVar("R")
# What a step's body yields: its own events, and the streams of the sub-steps it runs.
Steps = AsyncGenerator["Event | EventStream[Any]", None]


class _Unset:
    pass


_UNSET = _Unset()


class EventStream(AsyncGenerator[Event, None], Generic[R]):
    """One shape for a step that streams and then has a result: iterate it for its events,
    then ask it for its result, as the SDK's MessageStream is iterated and then asked
    `get_final_message()`.

        call = caller.call(spec)
        async for event in call:
            show(event)
        end = call.result()

    A step is written as an async generator of events (`steps`). Where it runs a sub-step it
    yields the sub-step's stream: the sub-step's events go up, as they come, to whoever
    iterates the outer stream, and the step reads the result after the `yield`:

        call = caller.call(spec)
        yield call
        end = call.result()

    An exception a sub-step raises is raised in the step that yielded it, at that `yield`.
    Closing a stream (`aclose()`, leaving `contextlib.aclosing`, cancelling the task that
    iterates it) closes the sub-step in progress first, then each step around it, as nested
    `aclosing` blocks would: a call in flight is settled where it stands, and every step's
    `finally` runs. A stream is run once.

    A step that owns state is a subclass that overrides `steps()` and calls `set_result`; a
    function's step is `EventStream(body(...))`, or `EventStream(lambda out: body(out, ...))`
    when the body sets a result (`out.set_result(...)`).
    """

    def __init__(self, steps: Steps | Callable[[EventStream[R]], Steps] | None = None) -> None:
        self._body = steps
        self._run: AsyncGenerator[Event, None] | None = None
        self._started = False
        self._result: R | _Unset = _UNSET

    def steps(self) -> Steps:
        """The step's body: its events and its sub-steps' streams."""
        if self._body is None:
            raise NotImplementedError(f"{type(self).__name__} has no steps")
        if callable(self._body):
            self._body = self._body(self)
        return self._body

    def set_result(self, value: R) -> None:
        self._result = value

    def result(self) -> R:
        """The step's result, once its events are all out."""
        if isinstance(self._result, _Unset):
            raise RuntimeError(f"{type(self).__name__} has no result (not run to its end)")
        return self._result

    def _start(self) -> Steps:
        if self._started:
            raise RuntimeError(f"{type(self).__name__} was already run")
        self._started = True
        return self.steps()

    async def _drive(self) -> AsyncGenerator[Event, None]:
        """Runs the step and, in it, every sub-step it yields (a stack of bodies: the
        innermost runs), passing their events out and each one's exception to the step
        that yielded it."""
        stack = [self._start()]
        error: BaseException | None = None
        try:
            while stack:
                body = stack[-1]
                try:
                    item = await (body.asend(None) if error is None else body.athrow(error))
                except StopAsyncIteration:
                    stack.pop()
                    error = None
                    continue
                except BaseException as exc:
                    stack.pop()
                    if not stack:
                        raise
                    error = exc
                    continue
                error = None
                if isinstance(item, Event):  # (a plain class: the cheaper check, per event)
                    yield item
                else:
                    stack.append(item._start())
        finally:
            # Closed early (aclose, a consumer gone, an exception from outside): innermost
            # first, as nested aclosing blocks close.
            failure: BaseException | None = None
            while stack:
                try:
                    await stack.pop().aclose()
                except BaseException as exc:  # close the rest, then raise the first
                    failure = failure or exc
            if failure is not None:
                raise failure

    def _runner(self) -> AsyncGenerator[Event, None]:
        if self._run is None:
            self._run = self._drive()
        return self._run

    def __aiter__(self) -> EventStream[R]:
        return self

    def __anext__(self) -> Coroutine[Any, Any, Event]:
        return self._runner().__anext__()

    def asend(self, value: None) -> Coroutine[Any, Any, Event]:
        return self._runner().asend(value)

    def athrow(
        self,
        typ: type[BaseException] | BaseException,
        val: object = None,
        tb: TracebackType | None = None,
    ) -> Coroutine[Any, Any, Event]:
        if val is None and tb is None:
            return self._runner().athrow(typ)  # type: ignore[arg-type]
        return self._runner().athrow(typ, val, tb)  # type: ignore[arg-type]

    def aclose(self) -> Coroutine[Any, Any, None]:
        if self._run is None and not self._started:
            self._started = True  # never run: nothing to close
            if self._body is not None and not callable(self._body):
                return self._body.aclose()
            return _nothing()
        return self._runner().aclose()


async def _nothing() -> None:
    return None


def awaited(make: Callable[[], Awaitable[R]]) -> EventStream[R]:
    """A step with a result and no events of its own (a tool that returns one output):
    `make()` is awaited when the step runs."""

    async def body(out: EventStream[R]) -> Steps:
        out.set_result(await make())
        return
        yield  # (an async generator: a step, with no events)

    return EventStream(body)
