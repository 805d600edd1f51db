"""A tool: a name, a JSON schema for the model, and a function that returns text.

Every call has a deadline (`Tool.deadline_s`); a tool that outlives it is stopped and its
result is an error (toolbox.py runs the calls). Blocking work runs in `in_thread`: a daemon
thread, so a cancelled call returns at once and a thread still busy never keeps the process
alive at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tuiagent.agent.events import EventStream
from tuiagent.redact import redact

T = TypeVar("T")

# How long any tool call may take, unless its tool says otherwise.
DEFAULT_DEADLINE_S = 30.0


def as_utf8(text: str) -> str:
    """`text` as valid UTF-8: a byte that was not UTF-8 (a lone surrogate, as
    surrogateescape keeps it: a file name, a path from ripgrep) as `\\xNN`, marked and
    readable, where it would fail the request's encoding before it is sent."""
    if text.isascii() or not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return text
    return "".join(_byte_or_char(c) for c in text)


def _byte_or_char(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return "\ufffd" if 0xD800 <= code <= 0xDFFF else c


class ToolError(Exception):
    """A tool could not do what was asked. The message goes back to the model as is_error."""


@dataclass(frozen=True)
class ToolOutput:
    text: str
    is_error: bool = False

    def __post_init__(self) -> None:
        # Before it reaches the model: no key, and nothing the request cannot encode.
        object.__setattr__(self, "text", as_utf8(redact(self.text)))


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    run: Callable[[dict[str, Any]], Awaitable[str]]
    # Acts on the world (runs a command): the agent asks its `approve` hook first.
    needs_approval: bool = False
    # The call is stopped after this long (a tool with its own timeout sets it a little over).
    deadline_s: float = DEFAULT_DEADLINE_S
    # A tool that reports as it works (delegate): the agent's events, then its ToolOutput
    # (agent/events.py). The loop uses it where it is set; `run` is the same
    # without the events.
    stream: Callable[[dict[str, Any]], EventStream[ToolOutput]] | None = None

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


def _settle(future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled or timed out meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class _DaemonPool:
    """Daemon threads kept for the next blocking call: starting a thread per tool call cost
    more than many tools take. A worker idle for `idle_s` ends; a worker still blocked never
    keeps the process alive (they are daemons), and each call that finds no idle worker
    starts one, so a hung call never holds up the next."""

    def __init__(self, idle_s: float = 60.0) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[..., None]]]
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._idle_s = idle_s

    def submit(
        self, fn: Callable[[], Any], done: Callable[[Any, BaseException | None], None]
    ) -> None:
        """Run `fn()` on a worker, then `done(result, error)` there."""
        with self._lock:
            if self._idle:
                self._idle -= 1  # that worker takes this job
            else:
                threading.Thread(target=self._work, name="tuiagent-tool", daemon=True).start()
            self._jobs.put((fn, done))

    def _work(self) -> None:
        while True:
            try:
                fn, done = self._jobs.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if self._idle and self._jobs.empty():
                        self._idle -= 1
                        return
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:
                error = exc
            with self._lock:
                self._idle += 1  # before the caller hears of it: its next call finds us
            done(result, error)


_POOL = _DaemonPool()


async def in_thread(fn: Callable[[], T]) -> T:
    """`fn()` in a daemon thread. Unlike `asyncio.to_thread` (whose executor threads are
    joined at exit), a thread still blocked never keeps the process alive, and the awaiting
    call ends as soon as it is cancelled."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def done(result: T | None, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while we worked
            loop.call_soon_threadsafe(_settle, future, result, error)

    _POOL.submit(fn, done)
    return await future
