"""The run's files as they are written: the run log (what each call cost) and, beside it, the
transcript (`Transcript`: what each call sent, read back by runs/transcript.py).

The run log: JSONL, one object per line, appended and flushed per record.

Each record is written whole or not at all: one `write` on a file opened for appending (a
process killed at any moment leaves every completed record readable: the kernel has it), a
short write is carried on, and a write that fails (ENOSPC, EIO) is cut back to where the
record began and raised as `LogWriteError`. A tail torn anyway (the process killed mid-write,
a cut that failed too) is cut at the next open of the log (`append_whole`, `cut_torn_tail`). Syncing
to the disk (against a power cut) is done by one background thread as records come, at
most every SYNC_INTERVAL_S, and once more on close: the agent never waits for the disk.

While a run is being written its process holds an exclusive `flock` on the log; the lock goes
when the log is closed or the process dies. So a log with no `run_end` whose lock is held is
live (its run is still going); one whose lock is free was cut off.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from tuiagent.errors import UsageError
from tuiagent.redact import redact
from tuiagent.runs.records import Record, Unknown, parse_line, read

R = TypeVar("R", bound=Record)


class LogWriteError(OSError):
    """A record of the run's files could not be written whole (ENOSPC, EIO, a short write
    that could not be finished). Nothing of it was left in the file (unless cutting it back
    failed too: then the next open cuts it). Its text is one line naming the directory."""

    def __init__(self, code: int | None, why: str, path: Path) -> None:
        super().__init__(code, why, str(path))
        self.path = path

    def __str__(self) -> str:
        return f"cannot write {self.path.name} in {self.path.parent}: {self.strerror}"


def append_whole(fd: int, data: bytes, path: Path) -> None:
    """`data` at the end of the file open for appending at `fd`, whole or not at all: a short
    write goes on with the rest; a write that fails is cut back and raises LogWriteError."""
    start = os.lseek(fd, 0, os.SEEK_END)
    done = 0
    try:
        while done < len(data):
            wrote = os.write(fd, data[done:])
            if wrote <= 0:
                raise OSError(errno.EIO, "the write made no progress")
            done += wrote
    except OSError as exc:
        if done:
            with contextlib.suppress(OSError):  # else the next open cuts it (cut_torn_tail)
                os.ftruncate(fd, start)
        raise LogWriteError(exc.errno, exc.strerror or str(exc), path) from None


def cut_torn_tail(fd: int) -> int:
    """Cut a last line with no newline (a record torn by a kill or a failed disk) from the
    file at `fd`; how many bytes were cut."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    keep = size
    while keep > 0:
        chunk = os.pread(fd, min(keep, 65_536), max(0, keep - 65_536))
        at = chunk.rfind(b"\n")
        if at >= 0:
            keep = keep - len(chunk) + at + 1
            break
        keep -= len(chunk)
    os.ftruncate(fd, keep)
    return size - keep


def has_torn_tail(path: Path) -> bool:
    """The file ends in a line with no newline: a record torn by a kill or a full disk."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:
        return False


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


SYNC_INTERVAL_S = 0.2


class _Syncer:
    """One daemon thread that fsyncs the logs written to since it last looked, at most every
    SYNC_INTERVAL_S: a sync per record would make the next record's write wait for the disk
    (the write is what a killed process needs; the sync is against a power cut)."""

    def __init__(self) -> None:
        self._dirty: set[RunLog] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def mark(self, log: RunLog) -> None:
        with self._wake:
            if log in self._dirty:
                return  # already waiting for its sync
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
            time.sleep(SYNC_INTERVAL_S)


_SYNCER = _Syncer()


class RunLog:
    def __init__(self, log_dir: Path, run_id: str) -> None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create log dir {log_dir}: {exc.strerror}") from None
        self.path = log_dir / f"{run_id}.jsonl"
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot write run log {self.path}: {exc.strerror}") from None
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # "being written": see is_live()
        self._lock = threading.Lock()  # the fd is never closed while it is being synced
        self._writing = threading.Lock()  # one record at a time: each is cut back alone
        self.unwritten: list[Record] = []  # refused by a failing disk, oldest first
        try:
            # A resumed run's log may end in a record torn by a kill or a full disk.
            self.cut_bytes = cut_torn_tail(self._fd)
        except OSError as exc:
            os.close(self._fd)
            raise UsageError(f"cannot write run log {self.path}: {exc.strerror}") from None

    def append(self, record: Record) -> None:
        """Write the record whole, or keep it and raise LogWriteError having written nothing
        of it. A record kept so is written first by the next append the disk takes (what was
        billed is recorded once space returns); `unwritten` holds those still waiting."""
        with self._writing:
            self.unwritten.append(record)
            self._write_kept()
        _SYNCER.mark(self)

    def _write_kept(self) -> None:
        while self.unwritten:
            record = self.unwritten[0]
            line = redact(json.dumps(record.to_json(), separators=(",", ":"), default=str))
            append_whole(self._fd, (line + "\n").encode(), self.path)
            self.unwritten.pop(0)

    def sync(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            # A failing disk shows on the next append (LogWriteError); the sync is only
            # against a power cut, and its thread has no one to tell.
            if self._fd >= 0:
                os.fsync(self._fd)

    def close(self) -> None:
        """Close the log, after one more try at the records a failing disk refused (those it
        still refuses stay in `unwritten`, for the end-of-run summary)."""
        with self._writing, contextlib.suppress(LogWriteError):
            if self._fd >= 0:
                self._write_kept()
        with self._lock:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
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
    """Every record that can be trusted, and how many lines were skipped (a cut last line)."""
    records: list[dict[str, Any]] = []
    bad = 0
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            record = parse_line(line)
            if record is None:
                bad += 1
            else:
                records.append(record)
    return records, bad


def read_run(path: Path) -> tuple[list[Record | Unknown], int]:
    """Every record of a log, typed (records.read), and how many lines were skipped."""
    raw, bad = read_records(path)
    records = [r for r in map(read, raw) if r is not None]
    return records, bad


# --- the transcript, beside the log: what each call sent (read back by runs/transcript.py)


class Transcript:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        cut_torn_tail(self._fd)  # a resumed run's transcript may end in a torn record
        self._messages_written = 0

    def _append(self, *records: dict[str, Any], written: int | None = None) -> None:
        """The records in one write (a call's new messages and its request go together),
        whole or not at all (LogWriteError); once written, `written` messages are."""
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        if lines:
            append_whole(self._fd, redact(lines).encode(), self.path)
        if written is not None:
            self._messages_written = written

    def request(
        self,
        turn: int,
        purpose: str,
        request: dict[str, Any],
        answer: list[dict[str, Any]] | None = None,
    ) -> None:
        """The exact request of one call (after cache markers and budget clamps). A call
        whose answer is not in the history (a proxied one) keeps its `answer` with it."""
        if purpose != "agent":
            # A helper call (a summary) or a proxied one has messages of its own, not the
            # history: kept whole.
            rec = {"kind": "request", "turn": turn, "purpose": purpose, "request": request}
            self._append({**rec, "answer": answer} if answer is not None else rec)
            return
        messages = request.get("messages", [])
        new, written = self._new_messages(messages)
        marks = []
        for mi, message in enumerate(messages):
            content = message.get("content")
            if isinstance(content, list):
                for bi, block in enumerate(content):
                    if isinstance(block, dict) and "cache_control" in block:
                        marks.append([mi, bi, block["cache_control"]])
        fields = {k: v for k, v in request.items() if k != "messages"}
        self._append(
            *new,
            {
                "kind": "request",
                "turn": turn,
                "purpose": purpose,
                "request": fields,
                "messages": len(messages),
                "marks": marks,
            },
            written=written,
        )

    def result(self, result_id: str, text: str) -> None:
        """The original of a tool result kept for expand_result, so that a resumed run still
        has it under its id."""
        self._append({"kind": "result", "id": result_id, "text": text})

    def messages(self, messages: list[dict[str, Any]]) -> None:
        """Write the messages not yet written (also at the end, so a resume sees the answer)."""
        new, written = self._new_messages(messages)
        self._append(*new, written=written)

    def _new_messages(
        self, messages: list[dict[str, Any]], start: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The messages from `start` (by default the first not yet written) as records, and
        how many are written once they are (not before: a write can fail)."""
        start = self._messages_written if start is None else start
        new = [
            {"kind": "message", "index": i, "message": _without_marks(messages[i])}
            for i in range(start, len(messages))
        ]
        return new, max(start, len(messages))

    def rewrite(self, messages: list[dict[str, Any]], first_changed: int) -> None:
        """The history was edited from `first_changed` on (results cleared, a compaction,
        /clear): what follows supersedes the messages from there, so each request written
        before still rebuilds as it was sent."""
        new, written = self._new_messages(messages, first_changed)
        self._append({"kind": "messages_from", "index": first_changed}, *new, written=written)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _without_marks(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, list):
        return message
    return {
        **message,
        "content": [
            {k: v for k, v in b.items() if k != "cache_control"} if isinstance(b, dict) else b
            for b in content
        ],
    }
