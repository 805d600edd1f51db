"""The CLI's output streams: redacted, made printable, and quiet when the reader goes away."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, TextIO, cast

from tuiagent.redact import redact
from tuiagent.terminal import printable


class _GuardedStream:
    """The CLI's stdout or stderr: every write redacted and made printable (no control byte
    from a file, a model or a server reaches the terminal; `--json` is escaped already), and
    a reader that went away (`| head`, or a terminal that closed: EIO) ends the output
    quietly instead of raising."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(printable(redact(text)))
            except OSError:  # EPIPE, EIO: no one reads any more
                self._go_quiet()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except OSError:
                self._go_quiet()

    def _go_quiet(self) -> None:
        self.broken = True
        # What is still buffered, and Python's flush at exit, go to /dev/null: no
        # "Exception ignored ... BrokenPipeError" after the run.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def output_closed() -> bool:
    """Whether the reader of stdout or stderr went away (a `| head` that has read enough)."""
    return any(isinstance(s, _GuardedStream) and s.broken for s in (sys.stdout, sys.stderr))


@contextlib.contextmanager
def guarded_output() -> Any:
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, _GuardedStream):
        sys.stdout = cast(TextIO, _GuardedStream(sys.stdout))
        sys.stderr = cast(TextIO, _GuardedStream(sys.stderr))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
