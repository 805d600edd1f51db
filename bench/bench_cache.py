"""Prompt caching on a 20-turn offline session with a ~10K-token system prompt and tool
results, with and without caching: the input cost ratio (target <= 0.25) and the cache hit
rate from turn 3 on (target >= 0.85)."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.agent.events import TurnFinished
from tuiagent.config import Settings
from tuiagent.llm.tokens import estimate_tokens
from tuiagent.session import open_session

SYSTEM = " ".join(
    f"Rule {i}: check the workspace before answering, cite files by name." for i in range(560)
)
FILES = 19  # 19 reads + the answer = 20 turns


async def _session(ws: Path, logs: Path, cache: bool) -> list[dict[str, Any]]:
    settings = Settings().with_changes(
        log_dir=logs, tier="balanced", system_prompt=SYSTEM, cache=cache, max_turns=40
    )
    session = open_session(settings, workspace=ws, offline=True)
    session.agent.start()
    prompt = "What do " + ", ".join(f"doc{i}.txt" for i in range(FILES)) + " say?"
    turns = [
        e.record.to_json()
        async for e in session.agent.send(prompt)
        if isinstance(e, TurnFinished) and e.record.purpose == "agent"
    ]
    session.agent.finish()
    return turns


def _input_cost(turns: list[dict[str, Any]]) -> Decimal:
    return sum(
        (
            Decimal(str(t["cost_breakdown_usd"][k]))
            for t in turns
            for k in ("input", "cache_write", "cache_read")
        ),
        Decimal(0),
    )


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        for i in range(FILES):
            (ws / f"doc{i}.txt").write_text(f"Document {i}.\n" + f"line of notes number {i}\n" * 60)
        cached = asyncio.run(_session(ws, Path(tmp) / "logs", True))
        plain = asyncio.run(_session(ws, Path(tmp) / "logs", False))
    later = cached[2:]
    read = sum(t["cache_read_input_tokens"] for t in later)
    total = sum(
        t["input_tokens"] + t["cache_read_input_tokens"] + t["cache_creation_input_tokens"]
        for t in later
    )
    ratio = _input_cost(cached) / _input_cost(plain)
    return [
        ("turns (cached / uncached)", f"{len(cached)} / {len(plain)}", "20"),
        ("system prompt", f"{estimate_tokens(SYSTEM):,} tokens", "~10K"),
        (
            "input cost cached / uncached",
            f"${_input_cost(cached):.4f} / ${_input_cost(plain):.4f}",
            "-",
        ),
        ("input cost ratio", f"{ratio:.3f}", "<= 0.25"),
        ("cache hit rate from turn 3", f"{read / total:.3f}", ">= 0.85"),
    ]
