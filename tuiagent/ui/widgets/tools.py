"""The tool results panel: per result its original and compressed size, the method, and a
way to open what the model saw and the original in a viewer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tuiagent.llm.tokens import estimate_tokens
from tuiagent.ui.format import tokens
from tuiagent.ui.messages import OpenToolResult


@dataclass(frozen=True)
class ToolResult:
    record: dict[str, Any]
    output: str
    original: str

    @property
    def original_tokens(self) -> int:
        value = self.record.get("original_tokens")
        return int(value) if value is not None else estimate_tokens(self.original)

    @property
    def seen_tokens(self) -> int:
        value = self.record.get("result_tokens")
        return int(value) if value is not None else estimate_tokens(self.output)

    @property
    def method(self) -> str:
        method = self.record.get("compression") or self.record.get("method")
        if method:
            return str(method)
        return "as is" if self.output == self.original else "compressed"

    def summary(self) -> str:
        r = self.record
        mark = "ok" if r.get("ok", True) else "error"
        return (
            f"{r.get('turn', '?')} {r.get('name', '?')} {mark}  "
            f"{tokens(self.original_tokens)} -> {tokens(self.seen_tokens)} tok  {self.method}"
        )


class ToolResultsPanel(OptionList):
    """Enter on a result opens it in the viewer."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Tool results"
        self.results: list[ToolResult] = []

    def add_result(self, result: ToolResult) -> None:
        self.results.append(result)
        self.add_option(Option(result.summary(), id=str(len(self.results) - 1)))
        self.highlighted = len(self.results) - 1

    def clear_results(self) -> None:
        self.results.clear()
        self.clear_options()

    @on(OptionList.OptionSelected)
    def _open(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.post_message(OpenToolResult(event.option_index))
