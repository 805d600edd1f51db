"""The sessions to come back to (`tuiagent --resume`): read from the run logs, newest first;
replays and proxy logs left out (their run_start has `replay_of` or `source`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from tuiagent.errors import UsageError
from tuiagent.runs.layout import TRANSCRIPTS, transcript_file
from tuiagent.runs.log import read_run
from tuiagent.runs.records import (
    Attempt,
    ProxyRunStart,
    Record,
    RunStart,
    Turn,
    Unknown,
    UserMessage,
)

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
    out: list[RecentSession] = []
    logs = sorted(log_dir.glob("*.jsonl"), reverse=True) if log_dir.is_dir() else []
    for log in logs:
        transcript = transcript_file(log)
        if not transcript.is_file():
            continue
        try:
            records, _ = read_run(log)
        except OSError:
            continue
        start = _chat_start(records)
        first = next((r for r in records if isinstance(r, UserMessage)), None)
        if start is None or first is None:
            continue
        calls = [r for r in records if isinstance(r, Turn | Attempt)]
        cost = sum((r.cost_usd for r in calls), Decimal(0))
        text = " ".join(first.text.split())
        title = text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"
        turns = sum(1 for r in calls if isinstance(r, Turn))
        out.append(RecentSession(log.stem, title, start.started_at, cost, turns, transcript))
        if len(out) >= limit:
            break
    return out


def find_resume(log_dir: Path, run_id: str) -> Path:
    """The transcript of the run to reopen: the named one, or the user's last chat with one
    (never a replay nor a proxy's log: their transcripts are not a conversation to go on)."""
    folder = log_dir / TRANSCRIPTS
    if run_id:
        return _named(log_dir, run_id)
    runs = (
        sorted(p for p in folder.glob("*.jsonl") if p.stat().st_size > 0) if folder.is_dir() else []
    )
    for path in reversed(runs):
        if is_chat(log_dir / path.name):
            return path
    raise UsageError(f"--resume: no earlier chat in {log_dir}")


def _named(log_dir: Path, run_id: str) -> Path:
    """The transcript of the run named by its id or a unique prefix of it."""
    exact = transcript_file(log_dir / f"{run_id}.jsonl")
    if exact.is_file() and "/" not in run_id:
        return exact
    folder = log_dir / TRANSCRIPTS
    found = sorted(
        p
        for p in (folder.glob("*.jsonl") if folder.is_dir() else [])
        if p.stem.startswith(run_id) and (log_dir / p.name).is_file()
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"--resume: no run {run_id!r} in {log_dir}")
    names = ", ".join(p.stem for p in found[:3]) + (", ..." if len(found) > 3 else "")
    raise UsageError(
        f"--resume: {len(found)} runs in {log_dir} begin with {run_id!r} ({names}); "
        "give more of the id"
    )


def is_chat(log: Path) -> bool:
    """A run the user chatted in: its run_start notes neither `replay_of` nor a `source`."""
    try:
        records, _ = read_run(log)
    except OSError:
        return False
    return _chat_start(records) is not None


def _chat_start(records: Iterable[Record | Unknown]) -> RunStart | None:
    """The run_start of a run the user chatted in: not a replay, not an eval's run, not a
    proxy's log."""
    start = next((r for r in records if isinstance(r, RunStart | ProxyRunStart)), None)
    if isinstance(start, RunStart) and not start.replay_of and not start.eval:
        return start
    return None
