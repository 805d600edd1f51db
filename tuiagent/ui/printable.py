"""The terminal filter in the app: no byte of an answer, a tool result, a file name, a server
error or a notice reaches the terminal as a control character.

Textual and Rich already pass every text they are given through one table of control codes
(`strip_control_codes`: they drop BEL, BS, VT, FF and CR, but pass ESC, the rest of C0, C1
and the bidi controls). `install()` adds tuiagent.terminal's stand-ins to those two tables, so
an ESC is laid out as the one cell `␛` it is shown as. Behind that, every strip of the screen
is made printable as it becomes terminal output (`Strip.render`, the one place the
compositor turns text into bytes), for any text that reached a segment another way.
"""

from __future__ import annotations

from rich import control as rich_control
from rich.console import Console
from rich.segment import Segment
from textual import content as textual_content
from textual.strip import Strip

from tuiagent.terminal import STAND_INS, is_printable, printable

_render = Strip.render


def _printable_render(self: Strip, console: Console) -> str:
    if self._render_cache is None:
        segments = self._segments
        if not is_printable("".join([text for text, _, _ in segments])):
            clean = Strip([Segment(printable(text), style) for text, style, _ in segments])
            self._render_cache = _render(clean, console)
    return _render(self, console)


def install() -> None:
    """Make every text the app shows printable (once; later calls do nothing)."""
    tables: list[dict[int, str | None]] = [
        rich_control._CONTROL_STRIP_TRANSLATE,  # type: ignore[list-item]
        textual_content._CONTROL_STRIP_TRANSLATE,  # type: ignore[list-item]
    ]
    for table in tables:
        for code, stand_in in STAND_INS.items():
            table.setdefault(code, stand_in)  # those it drops (BEL, CR, ...) stay dropped
    Strip.render = _printable_render  # type: ignore[method-assign]
