"""How runs lie on disk, in one place.

A log dir holds one JSONL run log per run, `<run_id>.jsonl`, and a `transcripts/` folder
beside them: `transcripts/<run_id>.jsonl` is the run's conversation and requests, and
`transcripts/<run_id>/<agent>.jsonl` a sub-agent's own (out of the way of the run
transcripts, which --resume and the report list).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tuiagent.errors import TuiagentError, UsageError
from tuiagent.runs.log import read_records
from tuiagent.runs.records import Call, End, Record, Start, Unknown, read

TRANSCRIPTS = "transcripts"


def transcript_file(log_path: Path, agent: str = "main") -> Path:
    """Where the transcript of the run logged at `log_path` is (or a sub-agent's), without
    touching the disk: a report only reads."""
    folder = log_path.parent / TRANSCRIPTS
    return folder / log_path.name if agent == "main" else folder / log_path.stem / f"{agent}.jsonl"


def transcript_path(log_path: Path, agent: str = "main") -> Path:
    """The transcript file to write for a run (or a sub-agent), its folder made."""
    path = transcript_file(log_path, agent)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class RunFile:
    run_id: str
    path: Path
    records: list[dict[str, Any]]
    unreadable_lines: int

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("type") == kind), None)

    @cached_property
    def typed(self) -> list[Record | Unknown]:
        """The records, typed (runs/records.py): read once, when first asked for."""
        return [r for r in map(read, self.records) if r is not None]

    @property
    def start(self) -> Start | None:
        return next((r for r in self.typed if isinstance(r, Start)), None)

    @property
    def end(self) -> End | None:
        return next((r for r in self.typed if isinstance(r, End)), None)

    @property
    def calls(self) -> list[Call]:
        """Its model calls, answered or failed, in order."""
        return [r for r in self.typed if isinstance(r, Call)]

    @property
    def has_calls(self) -> bool:
        """It called a model (a turn, an attempt that failed, or a call held when the run
        died): a session opened and quit with no message did not."""
        return any(r.get("type") in ("turn", "attempt", "hold") for r in self.records)

    @property
    def started_at(self) -> str:
        start = self.first("run_start")
        return str(start.get("started_at") or "") if start else ""

    @property
    def transcript(self) -> Path:
        return transcript_file(self.path)

    def subagent_transcript(self, agent: str) -> Path:
        return transcript_file(self.path, agent)


def list_runs(log_dir: Path) -> list[RunFile]:
    """Every run log in the dir, oldest first. A missing or empty dir is a UsageError."""
    if not log_dir.is_dir():
        raise UsageError(f"no log dir at {log_dir} (run `tuiagent run` first, or pass --log-dir)")
    runs = []
    for path in sorted(log_dir.glob("*.jsonl")):
        try:
            records, bad = read_records(path)
        except OSError as exc:
            raise TuiagentError(f"cannot read run log {path}: {exc.strerror}") from None
        # The file name is the run id (and names the transcript), even for a copied log.
        runs.append(RunFile(path.stem, path, records, bad))
    if not runs:
        raise UsageError(f"no run logs in {log_dir} (run `tuiagent run` first, or pass --log-dir)")
    runs.sort(key=lambda r: (r.started_at, r.run_id))
    return runs


def select_runs(
    runs: list[RunFile], *, last: int | None = None, run_ids: Iterable[str] = ()
) -> list[RunFile]:
    """The runs asked for: by id (a unique prefix will do), else the last N, else all."""
    wanted = list(run_ids)
    if wanted:
        chosen = []
        for wanted_id in wanted:
            exact = [r for r in runs if r.run_id == wanted_id]
            matches = exact or [r for r in runs if r.run_id.startswith(wanted_id)]
            if len(matches) != 1:
                what = "no run" if not matches else f"{len(matches)} runs match"
                raise UsageError(
                    f"{what} {wanted_id!r} in {runs[0].path.parent} "
                    f"({len(runs)} runs there; `tuiagent report` lists them)"
                )
            chosen.append(matches[0])
        return chosen
    return runs[-last:] if last else runs


def find_run(log_dir: Path, run_id: str) -> RunFile:
    (run,) = select_runs(list_runs(log_dir), run_ids=[run_id])
    return run
