"""Modal screens: approve a command, view a tool result in full."""

from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, TabbedContent, TabPane, TextArea

from tuiagent.ui.widgets.tools import ToolResult

_MODAL_CSS = """
ApproveScreen, ViewerScreen { align: center middle; }
#dialog {
    width: 80%;
    max-width: 100;
    height: auto;
    max-height: 90%;
    border: thick $primary;
    background: $surface;
    padding: 1 2;
}
ViewerScreen #dialog { height: 90%; }
#dialog Horizontal { height: auto; margin-top: 1; }
#dialog Button { margin-right: 2; }
#dialog TextArea { height: 1fr; }
"""


class ApproveScreen(ModalScreen[bool]):
    """Run this tool? y / n. Escape says no."""

    DEFAULT_CSS = _MODAL_CSS
    BINDINGS = [  # noqa: RUF012
        Binding("y", "answer(True)", "Yes", id="approve_yes", tooltip="run it"),
        Binding("n,escape", "answer(False)", "No", id="approve_no", tooltip="do not run it"),
    ]

    def __init__(self, name: str, arguments: dict[str, Any]) -> None:
        super().__init__()
        self.tool_name = name
        self.arguments = arguments

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"The agent wants to run [b]{self.tool_name}[/b]:")
            yield Label(json.dumps(self.arguments, ensure_ascii=False, indent=1), markup=False)
            with Horizontal():
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ViewerScreen(ModalScreen[None]):
    """A tool result: what the model saw, and the original."""

    DEFAULT_CSS = _MODAL_CSS
    BINDINGS = [Binding("escape,q", "close", "Close", id="viewer_close")]  # noqa: RUF012

    def __init__(self, result: ToolResult) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.result.summary(), markup=False)
            with TabbedContent():
                with TabPane("What the model saw", id="seen"):
                    yield TextArea(self.result.output, read_only=True)
                with TabPane("Original", id="original"):
                    yield TextArea(self.result.original, read_only=True)

    def action_close(self) -> None:
        self.dismiss(None)
