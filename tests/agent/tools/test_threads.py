"""Blocking tool work runs on daemon threads that are kept for the next call."""

from __future__ import annotations

import asyncio
import threading

from tuiagent.agent.tools.base import in_thread


async def test_sequential_calls_reuse_a_thread_and_a_blocked_one_holds_up_nothing() -> None:
    await in_thread(lambda: None)
    kept = {t for t in threading.enumerate() if t.name == "tuiagent-tool"}
    workers = {await in_thread(threading.current_thread) for _ in range(20)}
    assert workers <= kept  # the workers kept do the work: no thread start per call

    release = threading.Event()
    blocked = asyncio.ensure_future(in_thread(release.wait))
    await asyncio.sleep(0)
    # The blocked worker is busy: the next call gets a thread of its own and ends.
    other = await asyncio.wait_for(in_thread(threading.current_thread), timeout=10)
    assert not blocked.done()
    release.set()
    assert await asyncio.wait_for(blocked, timeout=10) is True
    assert other.is_alive()  # kept for the next call, like the first one
    assert all(t.daemon for t in threading.enumerate() if t.name == "tuiagent-tool")


async def test_an_error_in_the_thread_reaches_the_caller_and_the_worker_lives_on() -> None:
    def boom() -> None:
        raise OSError("disk on fire")

    for _ in range(3):
        try:
            await in_thread(boom)
        except OSError as exc:
            assert "disk on fire" in str(exc)
        else:
            raise AssertionError("the error was lost")
    assert await in_thread(lambda: 42) == 42
