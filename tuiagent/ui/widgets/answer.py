"""Answers: streamed as Markdown, and the finished pieces of long ones as plain widgets.

Imported with the first answer: Markdown and markdown-it are not needed for the first frame.
"""

from __future__ import annotations

from rich.markdown import Markdown as RichMarkdown
from textual.app import RenderResult
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widgets import Markdown, Static

# A streaming answer continues in a new part past this many characters (at a paragraph
# break outside a code fence): the finished part becomes one plain widget (FrozenAnswer), so
# the live Markdown widget, whose blocks the layout pass walks, stays small however long the
# answer grows.
SPLIT_AT_CHARS = 3_000


def _fences_closed(text: str) -> bool:
    return text.count("```") % 2 == 0 and text.count("~~~") % 2 == 0


def _pieces(text: str) -> list[str]:
    """Text cut at paragraph breaks outside code fences into pieces of about SPLIT_AT_CHARS."""
    pieces: list[str] = []
    start = 0
    while len(text) - start > SPLIT_AT_CHARS:
        at = text.find("\n\n", start + SPLIT_AT_CHARS)
        while at >= 0 and not _fences_closed(text[start : at + 2]):
            at = text.find("\n\n", at + 2)
        if at < 0:
            break
        pieces.append(text[start : at + 2])
        start = at + 2
    if start < len(text):
        pieces.append(text[start:])
    return pieces


class AnswerView(Markdown):
    """One answer (or the live part of a long one), appended to as it streams."""

    def __init__(self, text: str = "", *, continued: bool = False) -> None:
        super().__init__(text, classes="-continued" if continued else None)
        self._written: list[str] = []
        self._length = 0

    async def write(self, fragment: str) -> None:
        """Append a fragment: what gathered since the last frame (the screen coalesces the
        deltas). Markdown.append parses only from the last block on; awaiting it keeps the
        appends in order (MarkdownStream.stop would let a last append race one in flight)."""
        self._written.append(fragment)
        self._length += len(fragment)
        await self.append(fragment)

    @property
    def text(self) -> str:
        return "".join(self._written)

    def cut(self, more: str) -> int | None:
        """Where to end this part if `more` came next: the number of characters of `more`
        that still belong to it (up to the last paragraph break outside a code fence), or
        None while the part is short enough or `more` holds no clean place to cut."""
        if self._length + len(more) < SPLIT_AT_CHARS:
            return None
        text = self.text
        at = more.rfind("\n\n")
        while at >= 0:
            if _fences_closed(text + more[: at + 2]):
                return at + 2
            at = more.rfind("\n\n", 0, at)
        return None

    async def close(self) -> None:
        """Wait for the last append to be on screen."""
        async with self.lock:
            pass


class FrozenAnswer(Static):
    """A finished piece of a long answer, rendered as Markdown when it first comes into view.

    Until then its height is estimated from its text (no parse, no render), so freezing a
    long answer costs the pieces in view, not all of them. The first time the compositor
    draws it (it scrolled into view, or was `measured` on freezing), the Markdown is parsed
    and the height measured exactly, once per width: Textual drops its own measure on every
    layout refresh, and measuring means rendering the whole piece.
    """

    def __init__(self, text: str, *, measured: bool = False) -> None:
        super().__init__()
        self.text = text
        self.measured = measured  # exact height (the Markdown rendered) rather than estimated
        self._markdown: RichMarkdown | None = None
        self._height = (-1, 0)

    def render(self) -> RenderResult:
        if self._markdown is None:
            self._markdown = RichMarkdown(self.text)
        return self._markdown

    def render_lines(self, crop: Region) -> list[Strip]:
        if not self.measured:  # in view for the first time: measure it from now on
            self.measured = True
            self._height = (-1, 0)
            self.call_later(self.refresh, layout=True)
        return super().render_lines(crop)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if self._height[0] != width:
            height = (
                super().get_content_height(container, viewport, width)
                if self.measured
                else estimate_height(self.text, width)
            )
            self._height = (width, height)
        return self._height[1]


def estimate_height(text: str, width: int) -> int:
    """Lines the Markdown `text` takes at `width`, without parsing or rendering it: each line
    of source word-wrapped (list items indented by their bullet), blocks a blank line apart."""
    width = max(width, 1)
    lines = 0
    fenced = False
    for line in text.strip().splitlines():
        if line.startswith(("```", "~~~")):
            fenced = not fenced
            lines += 1
            continue
        if fenced:
            lines += 1
            continue
        if not line.strip():
            lines += 1
            continue
        indent = 3 if line.lstrip().startswith(("- ", "* ", "+ ")) else 0
        lines += _wrapped(line.lstrip("-*+# "), width - indent)
    return lines


def _wrapped(line: str, width: int) -> int:
    width = max(width, 1)
    rows, used = 1, 0
    for word in line.split():
        size = len(word)
        if used and used + 1 + size > width:
            rows, used = rows + 1, size
        else:
            used += size + (1 if used else 0)
    return rows


def frozen_pieces(text: str) -> list[FrozenAnswer]:
    return [FrozenAnswer(piece) for piece in _pieces(text)]
