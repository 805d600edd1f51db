"""One shape for a step that streams and then has a result: `EventStream`.

Every step of the agent (a metered call, a request, a step's tool calls, a compaction, a
sub-agent's work) is one: iterate it for its events (agent/events.py), then ask its result.
Its driver (`EventStream._drive`) is the runtime that runs a step and the sub-steps it
yields; it knows nothing of what the steps do.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, TypeVar

from tuiagent.agent.events import Event

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
