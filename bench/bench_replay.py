"""Tier experiments: how many turns a cheaper tier does as well, and what the rules learnt
from them save on tasks they were not made from.

The router benchmark's 30 tasks (bench/bench_router.py) run on auto routing, one session
each; every agent turn not already on fast is replayed on fast and judged (`replay --all
--tier fast --judge`). The rules `--suggest` makes from that experiment are then put in the
config of a second set of 15 tasks (other files and wording), run on auto without and
with them: the saving is what the rules bring on work they never saw, and an experiment on
that second set says how many of the turns the rules moved held on fast.

The offline model answers the same on every tier, so here every replayed turn holds: the
figures measure the machinery (replay, judge, totals, rules, routing), not Claude's quality.
"""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path

from bench.bench_router import LOOKUPS, REASONING, SUMMARIES, _workspace
from tuiagent.agent.experiment import (
    Experiment,
    _fits,
    load_turns,
    run_experiment,
    suggest_rules,
)
from tuiagent.config import RouterRule, Settings
from tuiagent.session import connect, open_session

HELD_OUT = [
    "Show me notes.txt",
    "Which files are in src? List them.",
    "Search for payments",
    "Find gave up in the sources",
    "What is in data.csv?",
    "Summarize CHANGELOG.md in one line",
    "Give me a summary of src/db.py",
    "Summarize docs/design.md for a manager",
    "tl;dr of notes.txt",
    "Summarize README.md and CHANGELOG.md",
    "Explain why src/db.py doubles the delay: read it first.",
    "Read docs/design.md and evaluate option B against option A.",
    "Investigate why src/app.py is unfinished; read it and plan the work.",
    "Read data.csv and analyse how the values grow.",
    "Review CHANGELOG.md and explain which releases changed the API.",
]


async def _runs(tasks: list[str], ws: Path, logs: Path, rules: list[RouterRule]) -> Decimal:
    total = Decimal(0)
    for task in tasks:
        settings = Settings().with_changes(
            log_dir=logs, max_turns=50, max_cost_usd=Decimal(100), router_rules=tuple(rules)
        )
        agent = open_session(settings, workspace=ws, offline=True).agent
        agent.start()
        async for _ in agent.send(task):
            pass
        agent.finish()
        total += agent.spending.spent
    return total


async def _experiment(logs: Path) -> Experiment:
    settings = Settings().with_changes(log_dir=logs, max_cost_usd=Decimal(100))
    runs = sorted(p.stem for p in logs.glob("*.jsonl"))
    turns, skipped = load_turns(settings, logs, runs, settings.router.model_for("fast"))
    return await run_experiment(
        settings,
        logs,
        turns,
        skipped,
        tier="fast",
        model=settings.router.model_for("fast"),
        judge=True,
        connect=lambda: connect(settings, offline=True),
    )


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "0/0"


async def _measure(root: Path) -> list[tuple[str, str, str]]:
    ws = _workspace(root)
    train, held, held_rules = root / "train", root / "held", root / "held-rules"
    tasks = [t for trio in zip(LOOKUPS, SUMMARIES, REASONING, strict=True) for t in trio]
    await _runs(tasks, ws, train, [])
    exp = await _experiment(train)
    kept = sum(r.kept for r in exp.results)
    by_kind = []
    for name, kind in (("lookups", LOOKUPS), ("summaries", SUMMARIES), ("reasoning", REASONING)):
        rs = [r for r in exp.results if r.source.prompt in kind]
        by_kind.append(f"{name} {_share(sum(r.kept for r in rs), len(rs))}")
    suggestion = suggest_rules(exp)
    without = await _runs(HELD_OUT, ws, held, [])
    with_rules = await _runs(HELD_OUT, ws, held_rules, suggestion.rules)
    # How the turns the rules move on the held-out set fare on fast.
    check = await _experiment(held)
    moved = [r for r in check.results if any(_fits(rule, r.source) for rule in suggestion.rules)]
    words = sum(len(rule.when_words) for rule in suggestion.rules)
    return [
        (
            "30 tasks: turns judged same/acceptable on fast",
            f"{_share(kept, len(exp.results))} of the turns not already on fast",
            "-",
        ),
        ("30 tasks: by kind", "; ".join(by_kind), "-"),
        ("30 tasks: already on fast (not replayed)", str(len(exp.skipped)), "-"),
        (
            "30 tasks: as run / with kept turns on fast",
            f"${exp.original_cost:.4f} / ${exp.would_have_cost:.4f} (saving ${exp.saving:.4f})",
            "-",
        ),
        (
            "30 tasks: experiment cost (replays + judge)",
            f"${exp.spent:.4f} (judge ${exp.judge_cost:.4f})",
            "-",
        ),
        ("suggested rules", f"{len(suggestion.rules)} rule(s), {words} words", "-"),
        (
            "15 held-out tasks: auto / auto + rules",
            f"${without:.4f} / ${with_rules:.4f} (saving {1 - with_rules / without:.0%})",
            "-",
        ),
        (
            "15 held-out tasks: moved turns judged same/acceptable on fast",
            _share(sum(r.kept for r in moved), len(moved)),
            "-",
        ),
    ]


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_measure(Path(tmp)))
