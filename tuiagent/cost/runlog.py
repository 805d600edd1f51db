"""The run log: JSONL, one object per line, appended and flushed per record.

Each record is written with a single `write` on a file opened for appending, so a process
killed at any moment leaves every completed record readable (the kernel has it). Syncing
to the disk (against a power cut) is done by one background thread as records come, and
once more on close: the agent never waits for the disk.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuiagent.errors import UsageError


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Syncer:
    """One daemon thread that fsyncs the logs written to since it last looked."""

    def __init__(self) -> None:
        self._dirty: set[RunLog] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def mark(self, log: RunLog) -> None:
        with self._wake:
            self._dirty.add(log)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="runlog-sync", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._dirty:
                    self._wake.wait()
                logs, self._dirty = self._dirty, set()
            for log in logs:
                log.sync()


_SYNCER = _Syncer()


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
        self._lock = threading.Lock()  # the fd is never closed while it is being synced

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        os.write(self._fd, line)
        _SYNCER.mark(self)

    def sync(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


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
