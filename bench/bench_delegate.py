"""Sub-agents: a multi-file offline task done with delegation and without.

Eight files to summarise. With delegation the orchestrator runs on balanced and hands one
task per file to sub-agents on fast, 4 at a time; without, one agent on balanced reads them
all itself. The offline model streams at a simulated speed (BENCH_DELEGATE_TPS tokens per
second, default 40), so wall time follows the calls that must wait for each other; a
second pair of runs adds a simulated time to first token per call (BENCH_DELEGATE_TTFT,
default 0.8 s), which the offline model alone does not have.
Figures: cost ratio (goal <= 0.5), wall-time ratio (goal <= 0.5), and whether each answer
names every file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2

from tuiagent.config import Settings
from tuiagent.llm.offline import OfflineModel
from tuiagent.runs.log import read_records
from tuiagent.session import open_session

FILES = [f"part{i}.md" for i in range(1, 9)]
PROMPT = f"Summarize {', '.join(FILES[:-1])} and {FILES[-1]}"
TPS = float(os.environ.get("BENCH_DELEGATE_TPS", "40"))
PARALLEL = 4
TTFT = float(os.environ.get("BENCH_DELEGATE_TTFT", "0.8"))
LINES = int(os.environ.get("BENCH_DELEGATE_LINES", "40"))


def _workspace(root: Path) -> Path:
    ws = root / "ws"
    ws.mkdir()
    for i, name in enumerate(FILES, 1):
        body = "".join(
            f"Section {j}: notes on topic {i}.{j}, with figures {i * j} and {i + j}.\n"
            for j in range(LINES + 10 * i)
        )
        (ws / name).write_text(f"# Part {i}: the {name} notes\n{body}")
    return ws


class _FirstTokenLatency(OfflineModel):
    """The offline model with a simulated time to first token on every messages call (a
    real model's per-call latency, which the offline model does not have)."""

    def __init__(self, seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self.seconds and not request.url.path.endswith("count_tokens"):
            await asyncio.sleep(self.seconds)
        return await super().handle_async_request(request)


def _since(iso: str, began: datetime) -> float:
    return (datetime.fromisoformat(iso.replace("Z", "+00:00")) - began).total_seconds()


async def _run(
    ws: Path, logs: Path, *, delegate: bool, ttft: float = 0.0
) -> tuple[Decimal, float, float, str]:
    """Cost, wall time, the time until the files were done (the last answer's call
    started), and the answer."""
    settings = Settings(
        log_dir=logs,
        tier="balanced",  # the orchestrator's tier; its workers take fast
        subagents=delegate,
        max_parallel_agents=PARALLEL,
        max_turns=40,
    )
    model = _FirstTokenLatency(ttft, tokens_per_second=TPS)
    session = open_session(settings, workspace=ws, offline=True, offline_model=model)
    agent = session.agent
    prompt = PROMPT + (" in parallel" if delegate else "")
    agent.start()
    began, began_at = time.perf_counter(), datetime.now(UTC)
    async for _ in agent.send(prompt):
        pass
    wall = time.perf_counter() - began
    agent.finish()
    last = agent.state.history[-1]
    answer = "".join(b.get("text", "") for b in last["content"] if b.get("type") == "text")
    records, _ = read_records(agent.log.path)
    final = [r for r in records if r["type"] == "turn" and r["agent"] == "main"][-1]
    return agent.ledger.spent, wall, _since(final["started_at"], began_at), answer


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = _workspace(Path(tmp))
        alone_cost, alone_wall, alone_work, alone_answer = asyncio.run(
            _run(ws, Path(tmp) / "logs", delegate=False)
        )
        with_cost, with_wall, with_work, with_answer = asyncio.run(
            _run(ws, Path(tmp) / "logs", delegate=True)
        )
        slow_alone = asyncio.run(_run(ws, Path(tmp) / "logs", delegate=False, ttft=TTFT))
        slow_with = asyncio.run(_run(ws, Path(tmp) / "logs", delegate=True, ttft=TTFT))
    names_all = all(name in with_answer for name in FILES) and all(
        name in alone_answer for name in FILES
    )
    return [
        ("without delegation (all balanced): cost", f"${alone_cost:.6f}", "-"),
        ("with delegation (balanced + 8 fast workers): cost", f"${with_cost:.6f}", "-"),
        ("cost ratio with / without", f"{with_cost / alone_cost:.3f}", "<= 0.5"),
        (f"wall time without / with ({TPS:g} tok/s)", f"{alone_wall:.2f}s / {with_wall:.2f}s", "-"),
        (f"wall-time ratio with / without ({PARALLEL} in parallel)", f"{with_wall / alone_wall:.3f}", "<= 0.5"),
        ("time to the files' results without / with", f"{alone_work:.2f}s / {with_work:.2f}s", "-"),
        ("  its ratio with / without (the final answer aside)", f"{with_work / alone_work:.3f}", "-"),
        (f"with {TTFT:g}s to first token per call: wall time without / with", f"{slow_alone[1]:.2f}s / {slow_with[1]:.2f}s", "-"),
        ("  its wall-time ratio with / without", f"{slow_with[1] / slow_alone[1]:.3f}", "<= 0.5"),
        ("both answers name all 8 files", "yes" if names_all else "no", "yes"),
    ]  # fmt: skip
