"""The tool results panel: per result its original and compressed size, the method, and a
way to open what the model saw and the original in a viewer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tuiagent.ui.format import tokens

if TYPE_CHECKING:
    from tuiagent.agent.events import ToolFinished
    from tuiagent.runs.records import ToolCall


@dataclass(frozen=True)
class ToolResult:
    record: ToolCall
    output: str
    original: str

    @property
    def original_tokens(self) -> int:
        return self.record.original_tokens

    @property
    def seen_tokens(self) -> int:
        return self.record.result_tokens

    @property
    def method(self) -> str:
        if self.record.method:
            return self.record.method
        return "as is" if self.output == self.original else "compressed"

    def summary(self) -> str:
        """One line: the id the chat names (`r1`, for `expand r1`) or the turn, and sizes."""
        r = self.record
        mark = "ok" if r.ok else "error"
        label = r.result_id or f"t{r.turn}"
        method = "" if self.method == "none" else f"  {self.method}"  # sent whole: no method
        return (
            f"{label} {r.name or '?'} {mark}  "
            f"{tokens(self.original_tokens)} -> {tokens(self.seen_tokens)} tok{method}"
        )


PLACEHOLDER = "Each tool result shows here: its size before and after compression; Enter opens it."


class ToolResultsPanel(OptionList):
    """Enter on a result opens it in the viewer. The newest is kept in view."""

    @dataclass
    class OpenResult(Message):
        """The user asked to see a tool result in full."""

        result: ToolResult

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Option(Text(PLACEHOLDER), disabled=True), id=id)
        self.border_title = "Tool results"
        self.border_subtitle = "Enter opens"
        self.results: list[ToolResult] = []

    def when_tool_finished(self, event: ToolFinished) -> None:
        self.add_result(ToolResult(event.record, event.output, event.original or event.output))

    def add_result(self, result: ToolResult) -> None:
        if not self.results:
            self.clear_options()  # the placeholder goes
        self.results.append(result)
        line = Text(result.summary(), no_wrap=True, overflow="ellipsis")  # one row each
        self.add_option(Option(line, id=str(len(self.results) - 1)))
        self.highlighted = len(self.results) - 1
        self.scroll_to_highlight()

    def clear_results(self) -> None:
        self.results.clear()
        self.clear_options()

    @on(OptionList.OptionSelected)
    def _open(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.OpenResult(self.results[int(event.option.id)]))
