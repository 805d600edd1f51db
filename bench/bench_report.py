"""How long `tuiagent report` takes over many real offline runs (logs and transcripts)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tuiagent.config import Settings
from tuiagent.report.build import build_report
from tuiagent.report.otel import otel_traces
from tuiagent.session import open_session

PROMPTS = ("Which file here is largest?", "What do notes.txt and big.txt say?", "Read notes.txt")


async def _runs(workspace: Path, log_dir: Path, n: int) -> None:
    for i in range(n):
        session = open_session(
            Settings().with_changes(log_dir=log_dir), workspace=workspace, offline=True
        )
        session.agent.start()
        async for _ in session.agent.send(PROMPTS[i % len(PROMPTS)]):
            pass
        session.agent.finish()


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        ws, logs = Path(tmp) / "ws", Path(tmp) / "logs"
        ws.mkdir()
        (ws / "notes.txt").write_text("TODO: one\n" * 50)
        (ws / "big.txt").write_text("lorem ipsum dolor sit amet " * 800)
        runs = 100
        asyncio.run(_runs(ws, logs, runs))
        times, otel = [], []
        for _ in range(5):
            t = time.perf_counter()
            report = build_report(logs, top=5)
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
            otel_traces(report)
            otel.append(time.perf_counter() - t)
        turns = len(report.turns)
    per_turn = statistics.median(times) / turns * 1000
    return [
        (
            f"report over {runs} runs / {turns} turns (median)",
            f"{statistics.median(times):.3f} s",
            "-",
        ),
        ("report time per turn (log + transcript + split)", f"{per_turn:.2f} ms", "-"),
        ("OTLP export of those turns (median)", f"{statistics.median(otel) * 1000:.1f} ms", "-"),
    ]
