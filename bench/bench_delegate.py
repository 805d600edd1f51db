"""Sub-agents: a multi-file offline task done with delegation and without.

Eight files to summarise, the same prompt for both arms ("... in parallel" added for the
one with delegation, which is how a user asks for it). With delegation the orchestrator
runs on balanced (pinned, checked from its records) and hands one task per file to
sub-agents on fast, 4 at a time; without, one agent on balanced reads them all itself.
The offline model streams every output token at a simulated speed (BENCH_DELEGATE_TPS
tokens per second, default 40): text and a tool call's input alike, the same way in both
arms, so wall time follows the tokens the calls that must wait for each other write. A
second pair of runs adds a simulated time to first token per call (BENCH_DELEGATE_TTFT,
default 0.8 s), which the offline model alone does not have.
Figures: cost ratio (goal <= 0.5), wall-time ratio (goal <= 0.5), whether each answer
names every file, and where the delegated run's time and cost go.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2

from tuiagent.config import Settings
from tuiagent.offline import OfflineModel
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


@dataclass
class Arm:
    cost: Decimal
    wall: float
    answer: str
    records: list[dict[str, Any]]
    began: datetime

    def turns(self, agent: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if r["type"] == "turn"
            and (agent is None or (r["agent"] == "main") == (agent == "main"))
        ]

    def at(self, iso: str) -> float:
        return _since(iso, self.began)


async def _run(ws: Path, logs: Path, *, delegate: bool, ttft: float = 0.0) -> Arm:
    settings = Settings().with_changes(
        log_dir=logs,
        tier="balanced",  # pinned: the orchestrator's tier; its workers take fast
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
    return Arm(agent.spending.spent, wall, answer, records, began_at)


def _cost(turns: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(str(r["cost_usd"])) for r in turns), Decimal(0))


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = _workspace(Path(tmp))
        alone = asyncio.run(_run(ws, Path(tmp) / "logs", delegate=False))
        with_ = asyncio.run(_run(ws, Path(tmp) / "logs", delegate=True))
        slow_alone = asyncio.run(_run(ws, Path(tmp) / "logs", delegate=False, ttft=TTFT))
        slow_with = asyncio.run(_run(ws, Path(tmp) / "logs", delegate=True, ttft=TTFT))
    names_all = all(name in with_.answer for name in FILES) and all(
        name in alone.answer for name in FILES
    )
    tiers = {r["tier"] for r in alone.turns()} == {"balanced"} and (
        {r["tier"] for r in with_.turns("main")} == {"balanced"}
        and {r["tier"] for r in with_.turns("sub")} == {"fast"}
        and len({r["agent"] for r in with_.turns("sub")}) == len(FILES)
    )
    main = with_.turns("main")
    sub = with_.turns("sub")
    # Where the delegated run's time goes: the orchestrator's delegate call, the sub-agents
    # (its first call's end to the last sub-agent's end), the combined answer.
    t_delegate = with_.at(main[0]["ended_at"])
    t_workers = max(with_.at(r["ended_at"]) for r in sub) - t_delegate
    t_final = with_.at(main[-1]["ended_at"]) - with_.at(main[-1]["started_at"])
    a_final = alone.turns()[-1]
    t_alone_final = alone.at(a_final["ended_at"]) - alone.at(a_final["started_at"])
    return [
        ("without delegation (all balanced): cost", f"${alone.cost:.6f}", "-"),
        ("with delegation (balanced + 8 fast workers): cost", f"${with_.cost:.6f}", "-"),
        ("cost ratio with / without", f"{with_.cost / alone.cost:.3f}", "<= 0.5"),
        ("  with: orchestrator's 2 calls / the 8 sub-agents' 16", f"${_cost(main):.6f} / ${_cost(sub):.6f}", "-"),
        (f"wall time without / with ({TPS:g} tok/s)", f"{alone.wall:.2f}s / {with_.wall:.2f}s", "-"),
        (f"wall-time ratio with / without ({PARALLEL} in parallel)", f"{with_.wall / alone.wall:.3f}", "<= 0.5"),
        ("  with: delegate call / sub-agents / combined answer", f"{t_delegate:.2f}s / {t_workers:.2f}s / {t_final:.2f}s", "-"),
        ("  without: 8 reads / the answer", f"{alone.at(a_final['started_at']):.2f}s / {t_alone_final:.2f}s", "-"),
        ("  answer tokens without / with", f"{a_final['output_tokens']} / {main[-1]['output_tokens']}", "-"),
        (f"with {TTFT:g}s to first token per call: wall time without / with", f"{slow_alone.wall:.2f}s / {slow_with.wall:.2f}s", "-"),
        ("  its wall-time ratio with / without", f"{slow_with.wall / slow_alone.wall:.3f}", "<= 0.5"),
        ("both answers name all 8 files", "yes" if names_all else "no", "yes"),
        ("tiers: orchestrator balanced, 8 sub-agents fast, baseline balanced", "yes" if tiers else "no", "yes"),
    ]  # fmt: skip
