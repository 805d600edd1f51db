"""The proxy's run log and transcript, which never lose a record of money.

When the disk is full or failing (ENOSPC, EIO), a record that cannot be written is kept in
memory, in order, and written first thing once the log can be written again. While any is
kept the log is `failing`: the proxy admits no new request (it cannot record one), while
the calls already in flight go on and are settled (their records kept). Each new request
tries the disk again, so the proxy recovers by itself when room is made. Records still kept
when the proxy stops are printed to stderr, whole, so that what was billed is never lost.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuiagent.redact import redact
from tuiagent.runs.layout import transcript_path
from tuiagent.runs.log import RunLog, Transcript
from tuiagent.runs.records import Record, RefusedCall

# Refusals are not money: while the disk is full, a refusal is kept only while fewer than this
# many records are (the billed ones are bounded by the calls in flight: no new one is admitted).
MAX_KEPT_REFUSALS = 1000

Notice = Callable[[str], None]


class KeptLog(RunLog):
    """A RunLog (which keeps, in `unwritten`, the records a failing disk refused and writes
    them first once it takes one again) that says when it fails and recovers, and tries the
    disk again before each new request."""

    def __init__(self, log_dir: Path, run_id: str) -> None:
        super().__init__(log_dir, run_id)
        self._refusals_dropped = 0
        self._guard = threading.RLock()
        self.problem: str | None = None  # why the log cannot be written, while it cannot
        self.notices: list[Notice] = []  # told when the log fails and when it recovers
        self.transcript = KeptTranscript(self)

    @property
    def failing(self) -> bool:
        return self.problem is not None

    def append(self, record: Record) -> None:
        with self._guard:
            if isinstance(record, RefusedCall) and len(self.unwritten) >= MAX_KEPT_REFUSALS:
                self._refusals_dropped += 1  # not money; the calls in flight are few
                return
            try:
                super().append(record)  # kept in `unwritten` when the disk refuses it
            except OSError as exc:
                self._failed(exc)
                return
            self._flush()

    def writable(self) -> bool:
        """Whether a new request may be admitted: what is kept is written first."""
        with self._guard:
            if self.failing:
                self._flush()
            return not self.failing

    def _flush(self) -> None:
        try:
            with self._writing:
                self._write_kept()
            self.transcript.flush()
        except OSError as exc:
            self._failed(exc)
            return
        if self.problem is not None:
            self.problem = None
            self._tell("tuiagent proxy: the run log can be written again: taking requests")

    def _failed(self, exc: OSError) -> None:
        if self.problem is None:
            self.problem = str(exc)
            self._tell(
                f"tuiagent proxy: {exc}: refusing new requests until the run log can be "
                "written; calls in flight go on, their records kept"
            )

    def _tell(self, line: str) -> None:
        for notice in list(self.notices):
            notice(line)

    def close(self) -> None:
        with self._guard:
            with contextlib.suppress(OSError):
                self.transcript.flush()
            super().close()  # one more try at what is kept
            if self.unwritten or self._refusals_dropped or self.transcript.kept:
                _print_unwritten(
                    self.path, list(self.unwritten), self._refusals_dropped, self.transcript.kept
                )
                self.unwritten.clear()
            self.transcript.close()


class KeptTranscript(Transcript):
    """The transcript beside a KeptLog: a request that cannot be written is kept with the
    log's records (the log's record is what bills; this is what `replay` resends)."""

    def __init__(self, log: KeptLog) -> None:
        super().__init__(transcript_path(log.path))
        self.log = log
        self._kept: deque[tuple[int, str, dict[str, Any], list[dict[str, Any]] | None]] = deque()

    def request(
        self,
        turn: int,
        purpose: str,
        request: dict[str, Any],
        answer: list[dict[str, Any]] | None = None,
    ) -> None:
        with self.log._guard:
            self._kept.append((turn, purpose, request, answer))
            try:
                self.flush()
            except OSError:
                self.log._flush()  # says the log is failing; retried with the log

    @property
    def kept(self) -> int:
        return len(self._kept)

    def flush(self) -> None:
        while self._kept:
            super().request(*self._kept[0])
            self._kept.popleft()


def _print_unwritten(path: Path, records: list[Record], dropped: int, requests: int) -> None:
    """What never reached the disk, on stderr: the records whole, as the log's own lines."""
    lines = []
    if records:
        lines.append(
            f"tuiagent proxy: {len(records)} record(s) could not be written to {path}; here "
            "they are, one JSON line each:"
        )
        lines += [
            redact(json.dumps(r.to_json(), separators=(",", ":"), default=str)) for r in records
        ]
    if dropped:
        lines.append(f"tuiagent proxy: {dropped} refusal(s) made while the disk was full not kept")
    if requests:  # not money: what `replay` would resend
        lines.append(f"tuiagent proxy: {requests} request(s) could not be kept in the transcript")
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    except OSError:
        pass


def writable(log: RunLog) -> bool:
    """Whether a new request can be recorded (a plain RunLog says so by raising)."""
    return log.writable() if isinstance(log, KeptLog) else True
