"""The one shape of a step that streams and then has a result (agent/stream.py):
events out in order through nested steps, each step's result, exceptions raised where the
sub-step was yielded, and closing innermost first (as nested aclosing blocks did)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tuiagent.agent.events import Notice
from tuiagent.agent.stream import EventStream, Steps


class Counted(EventStream[int]):
    """A step with state: yields n notices, then its result is n."""

    def __init__(self, n: int, log: list[str], fail: BaseException | None = None) -> None:
        super().__init__()
        self.n, self.log, self.fail = n, log, fail

    async def steps(self) -> Steps:
        try:
            for i in range(self.n):
                await asyncio.sleep(0)
                yield Notice(f"inner {i}")
            if self.fail is not None:
                raise self.fail
            self.set_result(self.n)
        finally:
            self.log.append("inner closed")


async def _collect(stream: EventStream[Any]) -> list[str]:
    return [e.text async for e in stream if isinstance(e, Notice)]


def test_events_then_result_through_nested_steps() -> None:
    log: list[str] = []
    seen: list[int] = []

    async def outer() -> Steps:
        yield Notice("before")
        first = Counted(2, log)
        yield first
        seen.append(first.result())
        second = Counted(1, log)
        yield second
        seen.append(second.result())
        yield Notice("after")

    texts = asyncio.run(_collect(EventStream(outer())))
    assert texts == ["before", "inner 0", "inner 1", "inner 0", "after"]
    assert seen == [2, 1]
    assert log == ["inner closed", "inner closed"]


def test_a_result_asked_before_the_end_is_an_error() -> None:
    stream = Counted(1, [])
    with pytest.raises(RuntimeError, match="no result"):
        stream.result()

    async def main() -> int:
        async for _ in stream:
            pass
        return stream.result()

    assert asyncio.run(main()) == 1
    with pytest.raises(RuntimeError, match="already run"):
        asyncio.run(_collect(EventStream(_yields(stream))))


async def _yields(stream: EventStream[Any]) -> Steps:
    yield stream


def test_a_sub_step_exception_is_raised_where_it_was_yielded() -> None:
    log: list[str] = []

    async def outer() -> Steps:
        try:
            yield Counted(1, log, fail=ValueError("boom"))
        except ValueError as exc:
            log.append(f"outer caught {exc}")
            yield Notice("recovered")

    texts = asyncio.run(_collect(EventStream(outer())))
    assert texts == ["inner 0", "recovered"]
    assert log == ["inner closed", "outer caught boom"]


def test_an_unhandled_exception_goes_through_every_step() -> None:
    log: list[str] = []

    async def outer() -> Steps:
        try:
            yield Counted(1, log, fail=KeyError("k"))
        finally:
            log.append("outer finally")

    with pytest.raises(KeyError):
        asyncio.run(_collect(EventStream(outer())))
    assert log == ["inner closed", "outer finally"]


def test_closing_closes_the_innermost_step_first() -> None:
    """Leaving early (aclosing, break): the sub-step in progress closes, then the step that
    yielded it sees GeneratorExit at its yield, as with nested aclosing blocks."""
    log: list[str] = []

    async def outer() -> Steps:
        try:
            yield Counted(5, log)
        except GeneratorExit:
            log.append("outer saw GeneratorExit")
            raise
        finally:
            log.append("outer finally")

    async def main() -> list[str]:
        got = []
        async with contextlib.aclosing(EventStream(outer())) as stream:
            async for event in stream:
                got.append(event)
                if len(got) == 2:
                    break
        return log

    assert asyncio.run(main()) == ["inner closed", "outer saw GeneratorExit", "outer finally"]


def test_cancelling_the_consumer_runs_every_step_cleanup() -> None:
    log: list[str] = []
    started = asyncio.Event()

    class Waits(EventStream[None]):
        async def steps(self) -> Steps:
            try:
                yield Notice("sent")
                started.set()
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                log.append("inner cancelled: settled")
                raise

    async def outer() -> Steps:
        try:
            yield Waits()
        except asyncio.CancelledError:
            log.append("outer saw the cancel")
            raise

    async def main() -> None:
        task = asyncio.create_task(_collect(EventStream(outer())))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert log == ["inner cancelled: settled", "outer saw the cancel"]


def test_a_stream_never_run_closes_quietly() -> None:
    async def body() -> Steps:
        yield Notice("never")

    asyncio.run(EventStream(body()).aclose())
