"""Long sessions: a scripted 100-message offline session (20 notes read first, then large
logs and modules, searches and listings, then a question about each note), run with
context management (clearing old tool results, compaction) and without.

Prints the session's cost both ways, the peak context, halts and errors (a 400 would be
one), how many context steps were taken, and how many of the 20 questions about the notes
read first were answered right. The fast tier answers (the offline model, priced as
genai-prices prices claude-haiku-5-5); a second pair of runs holds the window to 6,000
tokens (config `context_window`) so compaction near the window is exercised too. At the
default window (1,000,000 tokens) no compaction fires: the history never reaches a quarter
of it (`compact_early_at`), so what context management saves here is clearing's.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.long_session import SessionFigures, make_workspace, run_session

MESSAGES = 100
FACTS = 20
SMALL_WINDOW = 6_000


def _pair(root: Path, logs: Path, **overrides: object) -> tuple[SessionFigures, SessionFigures]:
    on = asyncio.run(run_session(root, logs / "on", context_management=True, **overrides))
    off = asyncio.run(run_session(root, logs / "off", context_management=False, **overrides))
    return on, off


def run() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "ws"
        make_workspace(root, facts=FACTS)
        on, off = _pair(root, tmp / "logs")
        small_on, small_off = _pair(root, tmp / "small", context_window=SMALL_WINDOW)
    for label, f in (("with", on), ("without", off)):
        rows.append(
            (
                f"{MESSAGES}-message session {label} context management",
                f"${f.cost:.4f}, {f.turns} calls, peak context {f.peak_context_tokens:,} tokens",
                "-",
            )
        )
    rows.append(("session cost with / without", f"{on.cost / off.cost:.3f}", "<= 0.6"))
    rows.append(
        (
            "peak context tokens with / without",
            f"{on.peak_context_tokens:,} / {off.peak_context_tokens:,}",
            "-",
        )
    )
    steps = [str(r["action"]) for r in on.context_records]
    rows.append(
        (
            "context steps (with)",
            f"{steps.count('clear_tool_results')} clearings, {steps.count('compact')} compactions "
            f"({steps.count('compact') * 50 / MESSAGES:g} per 50 messages)",
            "<= 1 compaction per 50 messages",
        )
    )
    rows.append(("halts / errors (with)", f"{on.halts or 'none'} / {on.errors or 'none'}", "none"))
    right_on, right_off = on.facts_right(FACTS), off.facts_right(FACTS)
    rows.append(
        (
            "facts kept: early notes asked about at the end, right with / without",
            f"{right_on}/{FACTS} / {right_off}/{FACTS}",
            f"{FACTS}/{FACTS} with",
        )
    )
    small_steps = [str(r["action"]) for r in small_on.context_records]
    rows.append(
        (
            f"window held to {SMALL_WINDOW:,}: with context management",
            f"${small_on.cost:.4f}, peak {small_on.peak_context_tokens:,}, "
            f"{small_steps.count('compact')} compactions "
            f"({sum(1 for r in small_on.context_records if 'window' in str(r['reason']))} near the "
            f"window), halts {small_on.halts or 'none'}, "
            f"errors {len(small_on.errors)}, facts {small_on.facts_right(FACTS)}/{FACTS}",
            "no halt, no 400",
        )
    )
    first_error = small_off.errors[0][:60] if small_off.errors else "none"
    rows.append(
        (
            f"window held to {SMALL_WINDOW:,}: without",
            f"{len(small_off.halts)} requests halted ({sorted(set(small_off.halts))}: not sent "
            f"over the window), errors {len(small_off.errors)} (first: {first_error})",
            "-",
        )
    )
    return rows
