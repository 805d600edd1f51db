"""Recent sessions to come back to (`tuiagent --resume` without an id): read from the run
logs, newest first, replays and proxy logs left out (their run_start has `replay_of` or `source`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from tuiagent.cost.runlog import read_records

TITLE_CHARS = 60


@dataclass(frozen=True)
class RecentSession:
    run_id: str
    title: str  # the first message, cut to TITLE_CHARS
    started_at: str  # ISO-8601 UTC, as run_start wrote it
    cost_usd: Decimal
    turns: int
    transcript: Path


def recent_sessions(log_dir: Path, limit: int = 30) -> list[RecentSession]:
    """Runs with a transcript and at least one message, newest first."""
    folder = log_dir / "transcripts"
    out: list[RecentSession] = []
    logs = sorted(log_dir.glob("*.jsonl"), reverse=True) if log_dir.is_dir() else []
    for log in logs:
        transcript = folder / log.name
        if not transcript.is_file():
            continue
        try:
            records, _ = read_records(log)
        except OSError:
            continue
        start = next((r for r in records if r["type"] == "run_start"), None)
        first = next((r for r in records if r["type"] == "user"), None)
        if start is None or first is None or start.get("replay_of") or start.get("source"):
            continue
        cost = sum(
            (
                Decimal(str(r.get("cost_usd", 0)))
                for r in records
                if r["type"] in ("turn", "attempt")
            ),
            Decimal(0),
        )
        text = " ".join(str(first.get("text", "")).split())
        title = text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"
        turns = sum(1 for r in records if r["type"] == "turn")
        out.append(
            RecentSession(
                log.stem, title, str(start.get("started_at", "")), cost, turns, transcript
            )
        )
        if len(out) >= limit:
            break
    return out
