"""The run log: JSONL, one object per line, appended and flushed per record.

Each record is written with a single `write` on a file opened for appending, then flushed
and synced, so a process killed at any moment leaves every completed record readable.

While a run is being written its process holds an exclusive `flock` on the log; the lock goes
when the log is closed or the process dies. So a log with no `run_end` whose lock is held is
live (its run is still going); one whose lock is free was cut off.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuiagent.errors import UsageError


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunLog:
    def __init__(self, log_dir: Path, run_id: str) -> None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create log dir {log_dir}: {exc.strerror}") from None
        self.path = log_dir / f"{run_id}.jsonl"
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot write run log {self.path}: {exc.strerror}") from None
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # "being written": see is_live()

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        os.write(self._fd, line)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def is_live(path: Path) -> bool:
    """The run of this log is still being written: its writer (this process or another) holds
    the log's lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # readers do not block each other
    except BlockingIOError:
        return True
    except OSError:
        return False  # a file system without locks: nothing says it is live
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Every record that parses, and how many lines did not (a cut last line, say)."""
    records: list[dict[str, Any]] = []
    bad = 0
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(value, dict) and "type" in value:
                records.append(value)
            else:
                bad += 1
    return records, bad
