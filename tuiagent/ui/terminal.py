"""What the app writes to the terminal: printable text, through a writer that never blocks.

The terminal filter in the app: no byte of an answer, a tool result, a file name, a server
error or a notice reaches the terminal as a control character. Textual and Rich already
pass every text they are given through one table of control codes (`strip_control_codes`:
they drop BEL, BS, VT, FF and CR, but pass ESC, the rest of C0, C1 and the bidi controls).
`install()` puts tuiagent.terminal's stand-ins in those two tables (CR aside, still dropped),
so an ESC is laid out as the one cell `␛` it is shown as, and a BEL as `␇`. Behind that, every strip of the screen is made printable as
it becomes terminal output (`Strip.render`, the one place the compositor turns text into
bytes), for any text that reached a segment another way.

A terminal that is gone never blocks the app's end. Textual writes through a thread fed by
a bounded queue: once the terminal is gone its writes fail (EIO), the thread dies, the
queue fills and the next write blocks the event loop for good; and a signal handler that
writes (Textual's own, on SIGTSTP or SIGCONT) while the main thread is inside a write
waits on a lock the main thread holds. `SafeWriter` takes its place: a write appends to a
deque and wakes the thread through a pipe (no lock, no wait), a terminal that fails ends
the writing (what follows is dropped), and `stop` waits a bounded time.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import threading
from typing import IO

from rich import control as rich_control
from rich.console import Console
from rich.segment import Segment
from textual import content as textual_content
from textual.drivers import linux_driver
from textual.strip import Strip

from tuiagent.terminal import is_printable, printable, stand_ins

STOP_S = 1.0  # how long the app's end waits for the terminal to take what is queued
MAX_PENDING = 10_000  # writes held for a terminal that takes nothing (then dropped)

_render = Strip.render


def _printable_render(self: Strip, console: Console) -> str:
    if self._render_cache is None:
        segments = self._segments
        if not is_printable("".join([text for text, _, _ in segments])):
            clean = Strip([Segment(printable(text), style) for text, style, _ in segments])
            self._render_cache = _render(clean, console)
    return _render(self, console)


class SafeWriter(threading.Thread):
    """Textual's writer thread (same interface) for a terminal that may go away."""

    def __init__(self, file: IO[str]) -> None:
        super().__init__(daemon=True, name="textual-output")
        self._file = file
        self._pending: collections.deque[str | None] = collections.deque()
        self._wake_in, self._wake_out = os.pipe()
        os.set_blocking(self._wake_out, False)
        self.gone = False  # the terminal failed a write: nothing more is written
        self._stopped = False  # stop() was called: the pipe may be closed

    def write(self, text: str) -> None:
        if not (self.gone or self._stopped) and len(self._pending) < MAX_PENDING:
            self._pending.append(text)  # a deque's append takes no lock a handler could hold
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: the thread is awake already
            os.write(self._wake_out, b"\0")

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._file.fileno()

    def flush(self) -> None:
        return  # done by the thread when the queue runs dry

    def run(self) -> None:
        while True:
            select.select([self._wake_in], [], [])
            os.read(self._wake_in, 4096)
            while self._pending:
                text = self._pending.popleft()
                self._write_through(text)
                if text is None:
                    return
            self._write_through(None)  # flush when the queue runs dry

    def _write_through(self, text: str | None) -> None:
        """Write (None: flush), unless the terminal is gone; a failure means it is."""
        if self.gone:
            return
        try:
            if text is None:
                self._file.flush()
            else:
                self._file.write(text)
        except (OSError, ValueError):  # EIO: the terminal closed; ValueError: the file did
            self.gone = True
            self._pending.clear()

    def stop(self) -> None:
        """End the thread once what is queued is written; wait at most STOP_S for it."""
        if self._stopped:
            return
        self._stopped = True
        self._pending.append(None)
        self._wake()
        self.join(STOP_S)
        if not self.is_alive():  # else it may still read the pipe: leave it open
            os.close(self._wake_in)
            os.close(self._wake_out)


def install() -> None:
    """Make every text the app shows printable, and its terminal writer safe (once)."""
    tables: list[dict[int, str | None]] = [
        rich_control._CONTROL_STRIP_TRANSLATE,  # type: ignore[list-item]
        textual_content._CONTROL_STRIP_TRANSLATE,  # type: ignore[list-item]
    ]
    table_of_stand_ins = stand_ins()
    for table in tables:
        for code, stand_in in table_of_stand_ins.items():
            # Those it drops are shown too (a bell is ␇, as in the CLI), but CR: a file's
            # CRLF line ends would show ␍ on every line.
            if code != ord("\r"):
                table[code] = stand_in
    Strip.render = _printable_render  # type: ignore[method-assign]
    linux_driver.WriterThread = SafeWriter  # type: ignore[attr-defined,misc,assignment]
