"""A side panel of text whose height follows its lines."""

from __future__ import annotations

from textual.widgets import Static


class Panel(Static):
    """Text that grows and shrinks with its lines, down to its `min-height`. A new text that
    leaves the panel as tall as it was is only drawn again: the screen is laid out again
    only when the panel's height changes (the cache panel's countdown changes its text every
    second; a tall screen keeps room for the router's and the cache's first answers, so the
    first call lays nothing out, main.tcss)."""

    def show(self, text: str) -> None:
        if text == self.content:
            return
        width = self.content_size.width
        if not width:  # not laid out yet
            self.update(text)
            return
        before = self._height(width)
        self.update(text, layout=False)
        if self._height(width) != before:
            self.refresh(layout=True)

    def _height(self, width: int) -> int:
        size = self.size
        lines = self.get_content_height(size, size, width) + self.styles.gutter.height
        low = self.styles.min_height
        return max(lines, low.cells or 0) if low is not None else lines
