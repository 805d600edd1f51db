"""Tool-result compression: tokens before and after on a fixed set of large results, and
what a 10-turn offline session that reads large files costs with and without it.

Token counts are the one local estimate (tuiagent.llm.tokens); costs are genai-prices
prices of the balanced tier's model, as the offline model bills its simulated turns.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from bench.large_results import (
    JSON_ITEMS,
    json_api_response,
    search_result,
    service_log,
    source_file,
)
from tuiagent.agent.compress import Compressor
from tuiagent.agent.events import AnswerDelta, TurnFinished
from tuiagent.config import Settings
from tuiagent.session import open_session

BOUND = 1000


def _fixed_set(tmp: Path) -> list[tuple[str, str, str]]:
    return [
        ("50 KB JSON API response", "read_file", json_api_response()),
        ("5,000-line log", "read_file", service_log(5000)),
        ("3,000-line source file", "read_file", source_file(3000)),
        ("2,000-match search", "search_files", asyncio.run(search_result(tmp / "search"))),
    ]


def _session_workspace(root: Path) -> list[str]:
    """Nine large files of the kinds agents read; the prompt names all of them."""
    root.mkdir()
    names = []
    for i in range(3):
        (root / f"api_{i}.json").write_text(json_api_response())
        (root / f"worker_{i}.log").write_text(service_log(600 + 100 * i))
        lines = source_file(3000).splitlines()
        (root / f"module_{i}.py").write_text("\n".join(lines[i * 1000 : i * 1000 + 1000]))
        names += [f"api_{i}.json", f"worker_{i}.log", f"module_{i}.py"]
    return names


async def _session(root: Path, names: list[str], compress: bool) -> tuple[int, int, Decimal, str]:
    settings = Settings().with_changes(
        log_dir=root.parent / "logs",
        compress=compress,
        compress_over_tokens=BOUND,
        max_cost_usd=Decimal("100"),
        max_turns=20,
        tier="balanced",
    )
    session = open_session(settings, workspace=root, offline=True)
    agent = session.agent
    agent.start()
    answer: list[str] = []
    turns = 0
    input_tokens = 0
    async for event in agent.send("Read " + ", ".join(names) + " and tell me what they hold."):
        if isinstance(event, TurnFinished):
            turns += 1
            input_tokens += event.record.usage.total_input_tokens
        elif isinstance(event, AnswerDelta):
            answer.append(event.text)
    agent.finish()
    return turns, input_tokens, agent.spending.spent, "".join(answer)


def run() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, tool, text in _fixed_set(tmp):
            started = time.perf_counter()
            out = Compressor(BOUND).compress(tool, text)
            ms = (time.perf_counter() - started) * 1000
            ratio = out.original_tokens / out.compressed_tokens
            rows.append(
                (
                    f"{name}: tokens before -> after ({out.method})",
                    f"{out.original_tokens:,} -> {out.compressed_tokens:,}",
                    f"after <= {BOUND:,}",
                )
            )
            rows.append((f"{name}: smaller by", f"{ratio:.1f}x", ">= 5x"))
            rows.append((f"{name}: time to compress", f"{ms:.0f} ms", "-"))
        root = tmp / "ws"
        names = _session_workspace(root)
        on = asyncio.run(_session(root, names, compress=True))
        off = asyncio.run(_session(root, names, compress=False))
    for label, (turns, tokens, cost, _) in (("with", on), ("without", off)):
        rows.append(
            (
                f"{turns}-turn offline session reading 9 large files, {label} compression",
                f"${cost:.4f}, {tokens:,} input tokens",
                "-",
            )
        )
    rows.append(("session cost saved by compression", f"{off[2] / on[2]:.1f}x cheaper", "-"))
    facts = f"data has {JSON_ITEMS} items" in on[3] and "ERROR" in on[3]
    rows.append(("compressed session's answer keeps item and error counts", str(facts), "True"))
    return rows
