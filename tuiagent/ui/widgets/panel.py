"""A side panel of text whose height follows its lines."""

from __future__ import annotations

from textual.widgets import Static


class Panel(Static):
    """Text that grows and shrinks with its lines. A new text that takes as many lines as
    the last one is only drawn again: the screen is laid out again only when the panel's
    height changes (the cache panel's countdown changes its text every second)."""

    def show(self, text: str) -> None:
        if text == self.content:
            return
        width = self.content_size.width
        if not width:  # not laid out yet
            self.update(text)
            return
        size = self.size
        before = self.get_content_height(size, size, width)
        self.update(text, layout=False)
        if self.get_content_height(size, size, width) != before:
            self.refresh(layout=True)
