"""The engine's own overhead per turn on the offline model: everything but the model's time.

A turn's wall time minus the time spent inside the offline model's transport (which stands
in for the network and the model) is what tuiagent itself costs: building the request,
placing cache breakpoints, the SDK's serialisation and SSE parsing, pricing, the log and
transcript writes (the disk sync is off the loop, on its own thread), running the tools.
The one external process a tool starts, search_files' ripgrep, is timed on its own (its
start, its search, its exit) and shown both apart and included.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2

import tuiagent.agent.tools.workspace as workspace_tools
from tuiagent.config import Settings
from tuiagent.offline import OfflineModel
from tuiagent.session import open_session


class _TimedModel(OfflineModel):
    """The offline model, timing its own share of each request (including its stream)."""

    def __init__(self) -> None:
        super().__init__()
        self.model_seconds = 0.0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        t = time.perf_counter()
        response = await super().handle_async_request(request)
        self.model_seconds += time.perf_counter() - t
        return response

    async def _stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        stream = super()._stream(*args, **kwargs)
        while True:
            t = time.perf_counter()
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                return
            finally:
                self.model_seconds += time.perf_counter() - t
            yield chunk


class _TimedSearch:
    """search_files' ripgrep run (tools/search.py `search`), timed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._search = workspace_tools.search

    async def __call__(self, *args: Any, **kwargs: Any) -> str:
        t = time.perf_counter()
        try:
            return await self._search(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t


_SEARCH = _TimedSearch()
workspace_tools.search = _SEARCH  # type: ignore[assignment]


async def _session_once(workspace: Path, log_dir: Path) -> tuple[float, float, int]:
    """(wall seconds, seconds in the model and in ripgrep, turns) of one session."""
    model = _TimedModel()
    _SEARCH.seconds = 0.0
    session = open_session(
        Settings().with_changes(log_dir=log_dir),
        workspace=workspace,
        offline=True,
        offline_model=model,
    )
    session.agent.start()
    t = time.perf_counter()
    async for _ in session.agent.send(
        "Which file here is largest? Then read notes.txt and search for TODO"
    ):
        pass
    wall = time.perf_counter() - t
    session.agent.finish()
    return wall, model.model_seconds + _SEARCH.seconds, session.agent.state.turns


PROMPTS = [
    "List the files here",
    "What does notes.txt say?",
    "Search for TODO",
    "Which file is largest?",
]


async def _count_calls(workspace: Path, log_dir: Path, turns: int = 20) -> tuple[int, int]:
    """count_tokens round trips in a session of `turns` turns far from its cap."""
    settings = Settings().with_changes(
        log_dir=log_dir, max_turns=10 * turns, max_cost_usd=Decimal(100)
    )
    session = open_session(settings, workspace=workspace, offline=True)
    agent = session.agent
    agent.start()
    i = 0
    while agent.state.turns < turns:
        async for _ in agent.send(PROMPTS[i % len(PROMPTS)]):
            pass
        i += 1
    agent.finish()
    return agent.caller.meter.count_calls, agent.state.turns


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        (ws / "notes.txt").write_text("TODO: one\n" * 50)
        (ws / "big.txt").write_text("x" * 20_000)
        for i in range(20):
            (ws / f"f{i}.py").write_text(f"# file {i}\nprint({i})\n")
        per_turn: list[float] = []
        with_search: list[float] = []
        search: list[float] = []

        async def sessions() -> None:
            # One event loop for them all, as in the app and `tuiagent run` (a loop's own
            # start and shutdown are not a turn's).
            for i in range(33):
                wall, outside, turns = await _session_once(ws, Path(tmp) / "logs")
                if i < 3:
                    continue  # warm-up
                per_turn.append((wall - outside) / turns * 1000)
                search.append(_SEARCH.seconds / turns * 1000)
                with_search.append(per_turn[-1] + search[-1])

        asyncio.run(sessions())
        counts, turns = asyncio.run(_count_calls(ws, Path(tmp) / "logs"))
    return [
        (f"count_tokens calls in a {turns}-turn session far from the cap", str(counts), "<= 3"),
        ("engine overhead per turn (median)", f"{statistics.median(per_turn):.2f} ms", "<= 2 ms"),
        (
            "engine overhead per turn (p90)",
            f"{statistics.quantiles(per_turn, n=10)[-1]:.2f} ms",
            "-",
        ),
        ("ripgrep's process per turn (median)", f"{statistics.median(search):.2f} ms", "-"),
        (
            "engine overhead per turn with ripgrep (median, p90)",
            f"{statistics.median(with_search):.2f} ms, "
            f"{statistics.quantiles(with_search, n=10)[-1]:.2f} ms",
            "-",
        ),
        ("load average (1 min) at the end", f"{os.getloadavg()[0]:.2f}", "-"),
    ]
