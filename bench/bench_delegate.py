"""Sub-agents: a multi-file offline task done with delegation and without.

Eight files to summarise. With delegation the orchestrator runs on balanced and hands one
task per file to sub-agents on fast, 4 at a time; without, one agent on balanced reads them
all itself. The offline model streams at a simulated speed (BENCH_DELEGATE_TPS tokens per
second, default 40), so wall time follows the calls that must wait for each other.
Figures: cost ratio (goal <= 0.5), wall-time ratio (goal <= 0.5), and whether each answer
names every file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from tuiagent.config import Settings
from tuiagent.llm.offline import OfflineModel
from tuiagent.session import open_session

FILES = [f"part{i}.md" for i in range(1, 9)]
PROMPT = f"Summarize {', '.join(FILES[:-1])} and {FILES[-1]}"
TPS = float(os.environ.get("BENCH_DELEGATE_TPS", "40"))
PARALLEL = 4
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


async def _run(ws: Path, logs: Path, *, delegate: bool) -> tuple[Decimal, float, str]:
    settings = Settings(
        log_dir=logs,
        tier="balanced",  # the orchestrator's tier; its workers take fast
        subagents=delegate,
        max_parallel_agents=PARALLEL,
        max_turns=40,
    )
    model = OfflineModel(tokens_per_second=TPS)
    session = open_session(settings, workspace=ws, offline=True, offline_model=model)
    agent = session.agent
    prompt = PROMPT + (" in parallel" if delegate else "")
    agent.start()
    began = time.perf_counter()
    async for _ in agent.send(prompt):
        pass
    wall = time.perf_counter() - began
    agent.finish("completed", agent.state.halt_reason)
    last = agent.state.history[-1]
    answer = "".join(b.get("text", "") for b in last["content"] if b.get("type") == "text")
    return agent.ledger.spent, wall, answer


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = _workspace(Path(tmp))
        alone_cost, alone_wall, alone_answer = asyncio.run(
            _run(ws, Path(tmp) / "logs", delegate=False)
        )
        with_cost, with_wall, with_answer = asyncio.run(_run(ws, Path(tmp) / "logs", delegate=True))
    names_all = all(name in with_answer for name in FILES) and all(
        name in alone_answer for name in FILES
    )
    return [
        ("without delegation (all balanced): cost", f"${alone_cost:.6f}", "-"),
        ("with delegation (balanced + 8 fast workers): cost", f"${with_cost:.6f}", "-"),
        ("cost ratio with / without", f"{with_cost / alone_cost:.3f}", "<= 0.5"),
        (f"wall time without / with ({TPS:g} tok/s)", f"{alone_wall:.2f}s / {with_wall:.2f}s", "-"),
        (f"wall-time ratio with / without ({PARALLEL} in parallel)", f"{with_wall / alone_wall:.3f}", "<= 0.5"),
        ("both answers name all 8 files", "yes" if names_all else "no", "yes"),
    ]  # fmt: skip
