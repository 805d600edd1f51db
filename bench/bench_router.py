"""What auto routing saves: a mixed workload of 30 offline tasks (lookups, summaries,
multi-step reasoning) run always on deep, always on balanced, and auto.

Run two ways: each task in a session of its own (nothing cached between tasks), and as 6
conversations of 5 tasks, so the prompt cache carries from one task to the next as it does
for a user and the router's cache rule has something to weigh. Every call is priced as the
tier's real model (genai-prices). The offline model answers the same on every tier, so the
figures compare what the same work costs, not answer quality.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from decimal import Decimal
from pathlib import Path

from tuiagent.agent.events import Notice, TurnFinished
from tuiagent.config import Settings
from tuiagent.session import open_session

LOOKUPS = [
    "List the files here.",
    "Which file here is largest?",
    "What is in notes.txt?",
    "Find TODO in the sources",
    "Show me CHANGELOG.md",
    "Which file is smallest?",
    "Search for retry",
    "Read src/db.py",
    "Where is main defined? Search for def main",
    "How many files are in the workspace? List them.",
]
SUMMARIES = [
    "Summarize README.md",
    "Summarize docs/design.md in two sentences.",
    "Give a short summary of CHANGELOG.md",
    "Summarize notes.txt",
    "Summarize src/app.py",
    "tl;dr of docs/design.md",
    "Summarize data.csv",
    "Summarize src/db.py for a newcomer",
    "Summarize the project",
    "Summary of README.md and notes.txt",
]
REASONING = [
    "Read docs/design.md and src/db.py, then design a migration plan for the schema change "
    "and explain its trade-offs.",
    "Why does src/app.py return a TODO string? Read it and plan a fix.",
    "Debug the retry logic: read src/db.py and explain why it may loop forever.",
    "Refactor src/app.py: read it, then propose a design that separates I/O from logic.",
    "Compare the approaches in docs/design.md and evaluate which one scales better.",
    "Read CHANGELOG.md and docs/design.md and explain why the 2.0 release broke the API.",
    "Plan the next release: read notes.txt and CHANGELOG.md and prioritise the work.",
    "Prove that the backoff in src/db.py terminates, reading it first.",
    "Review src/db.py for race conditions and explain each one.",
    "Analyse data.csv: read it and explain why the values grow so fast.",
]


def _tasks() -> list[list[str]]:
    """6 conversations of 5 tasks, each kind spread over all of them."""
    mixed = [t for trio in zip(LOOKUPS, SUMMARIES, REASONING, strict=True) for t in trio]
    return [mixed[i : i + 5] for i in range(0, 30, 5)]


def _workspace(root: Path) -> Path:
    ws = root / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "docs").mkdir()
    (ws / "README.md").write_text("# Ledgerly\nA small service that records payments.\n" * 5)
    (ws / "notes.txt").write_text("TODO: retry budget\nTODO: schema v3\nship 2.1 on Friday\n")
    (ws / "CHANGELOG.md").write_text(
        "".join(f"## 2.{i}\n- changed the payments API, retry tweaks\n" for i in range(12))
    )
    design = (
        "Option A keeps one table per tenant; option B shares tables with a tenant column. "
        "Migrations run online with a shadow table and a backfill. "
    )
    (ws / "docs" / "design.md").write_text("# Design\n" + design * 40)
    (ws / "src" / "app.py").write_text("def main():\n    return 'TODO: ship it'\n")
    (ws / "src" / "db.py").write_text(
        "import time\n\n\ndef retry(call, attempts=5):\n"
        "    delay = 0.1\n    for _ in range(attempts):\n        try:\n"
        "            return call()\n        except OSError:\n"
        "            time.sleep(delay)\n            delay *= 2\n    raise RuntimeError('gave up')\n"
    )
    (ws / "data.csv").write_text("id,value\n" + "".join(f"{i},{i * i}\n" for i in range(300)))
    return ws


async def _run_mode(
    tier: str, ws: Path, logs: Path, per_conversation: int
) -> tuple[Decimal, Counter[str], int, int]:
    total, tiers, escalations, cache_stays = Decimal(0), Counter[str](), 0, 0
    tasks = [t for conversation in _tasks() for t in conversation]
    for start in range(0, len(tasks), per_conversation):
        settings = Settings().with_changes(
            log_dir=logs, tier=tier, max_turns=200, max_cost_usd=Decimal(100)
        )
        agent = open_session(settings, workspace=ws, offline=True).agent
        agent.start()
        for task in tasks[start : start + per_conversation]:
            async for event in agent.send(task):
                if isinstance(event, TurnFinished):
                    tiers[event.record.tier] += 1
                    escalations += event.record.escalated_from_turn is not None
                    cache_stays += "cache: stays" in event.record.route_reason
                elif isinstance(event, Notice) and event.level == "error":
                    raise RuntimeError(event.text)
        agent.finish()
        total += agent.spending.spent
    return total, tiers, escalations, cache_stays


def _rows(label: str, ws: Path, logs: Path, per_conversation: int) -> list[tuple[str, str, str]]:
    deep, _, _, _ = asyncio.run(_run_mode("deep", ws, logs, per_conversation))
    balanced, _, _, _ = asyncio.run(_run_mode("balanced", ws, logs, per_conversation))
    auto, tiers, escalations, stays = asyncio.run(_run_mode("auto", ws, logs, per_conversation))
    calls = sum(tiers.values())
    by_tier = "/".join(str(tiers[t]) for t in ("fast", "balanced", "deep"))
    return [
        (f"{label}: deep / balanced / auto", f"${deep:.4f} / ${balanced:.4f} / ${auto:.4f}", "-"),
        (f"{label}: auto / always deep", f"{auto / deep:.3f}", "<= 0.4"),
        (f"{label}: auto / always balanced", f"{auto / balanced:.3f}", "<= 0.7"),
        (f"{label}: auto calls fast/balanced/deep", f"{by_tier} of {calls}", "-"),
        (f"{label}: auto escalations", str(escalations), "-"),
        (f"{label}: auto calls kept on a warm model", str(stays), "-"),
    ]


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        ws, logs = _workspace(Path(tmp)), Path(tmp) / "logs"
        return _rows("1 task per session", ws, logs, 1) + _rows("5 tasks per session", ws, logs, 5)
