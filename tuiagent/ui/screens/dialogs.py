"""Modal screens: approve a command, view a tool result in full."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TabbedContent, TabPane, TextArea

from tuiagent.agent.edits import EditPreview
from tuiagent.terminal import printable
from tuiagent.ui.widgets.tools import ToolResult

_MODAL_CSS = """
ViewerScreen { align: center middle; }
/* The approval sits at the top, under the gauge: the latest of the conversation (the
   request and the pending call, just above the input) stays in view. A margin, not the
   screen's padding: that would shift the whole screen beneath it down too. */
ApproveScreen { align: center top; }
#dialog {
    width: 80%;
    max-width: 100;
    height: auto;
    max-height: 90%;
    border: thick $primary;
    background: $surface;
    padding: 1 2;
}
ApproveScreen #dialog {
    width: 100%;
    max-width: 110;
    margin-top: 2;
    padding: 0 1;
    border: thick $warning;
}
ApproveScreen #command {
    background: $background;
    color: $text;
    padding: 0 1;
    margin: 1 0 0 0;
    max-height: 8;
}
ApproveScreen #diff { height: auto; max-height: 16; margin: 1 0 0 0; }
ApproveScreen #reason { display: none; margin-top: 1; }
ApproveScreen.-asking-why #reason { display: block; }
ApproveScreen.-asking-why #choices { display: none; }
ViewerScreen #dialog { height: 90%; }
ViewerScreen TabbedContent { height: 1fr; }
#dialog Horizontal { height: auto; margin-top: 1; }
#dialog Button { margin-right: 1; min-width: 8; }
#dialog TextArea { height: 1fr; }
#dialog .hint { color: $text-muted; margin-top: 1; width: 100%; }
"""


@dataclass(frozen=True)
class Approval:
    """The user's answer: run it (and maybe always, for this exact command), or not (and
    maybe why: the reason goes back to the model as the tool's error)."""

    run: bool
    always: bool = False
    reason: str = ""


def describe(name: str, arguments: dict[str, Any]) -> tuple[str, str]:
    """What the agent asks, in words, and the thing itself as the user would type it."""
    if name == "run_command" and isinstance(arguments.get("command"), str):
        return "The agent wants to run a command in the workspace:", f"$ {arguments['command']}"
    lines = [f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in arguments.items()]
    return f"The agent wants to use {name}:", "\n".join(lines) or "(no arguments)"


class ApproveScreen(ModalScreen[Approval]):
    """Run this tool? y yes, a always (this command), n no, w no and say why. Escape: no."""

    DEFAULT_CSS = _MODAL_CSS
    BINDINGS = [  # noqa: RUF012
        Binding("y", "answer('yes')", "Yes", id="approve_yes", tooltip="run it"),
        Binding(
            "a",
            "answer('always')",
            "Always",
            id="approve_always",
            tooltip="run it, and this same command from now on without asking",
        ),
        Binding("n,escape", "answer('no')", "No", id="approve_no", tooltip="do not run it"),
        Binding(
            "w",
            "answer('why')",
            "No, say why",
            id="approve_why",
            tooltip="decline and tell the agent why",
        ),
    ]

    def __init__(
        self, name: str, arguments: dict[str, Any], preview: EditPreview | None = None
    ) -> None:
        super().__init__()
        self.tool_name = name
        self.arguments = arguments
        self.preview = preview  # an edit: shown as a diff

    def compose(self) -> ComposeResult:
        asks, thing = describe(self.tool_name, self.arguments)
        with Vertical(id="dialog"):
            if self.preview is not None:
                from textual_diff_view import DiffView

                p = self.preview
                new = "a new file" if p.before is None else "a change to"
                yield Label(f"The agent wants to write {new} {printable(p.path)}:", markup=False)
                with VerticalScroll(id="diff"):
                    yield DiffView(
                        p.path,
                        p.path,
                        printable(p.before or ""),
                        printable(p.after),
                        split=False,
                        auto_split=True,
                    )
            else:
                yield Label(asks, markup=False)
                yield Static(thing, id="command", markup=False)
            with Horizontal(id="choices"):
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("Always allow (a)", id="always")
                yield Button("No (n)", variant="primary", id="no")
                yield Button("No, say why (w)", id="why")
            yield Label(
                f"a: always allow this {'file' if self.preview else 'command'} in this session"
                " · w: no, and tell the agent why (it reads your reason) · Esc: no",
                classes="hint",
            )
            yield Input(
                placeholder="Why not? Enter sends it to the agent; Esc: no reason", id="reason"
            )

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_answer(str(event.button.id))

    def action_answer(self, answer: str) -> None:
        if self.has_class("-asking-why"):
            return  # typing the reason: the letters are text
        if answer == "why":
            self.add_class("-asking-why")
            self.query_one("#reason", Input).focus()
            return
        self.dismiss(Approval(run=answer in ("yes", "always"), always=answer == "always"))

    @on(Input.Submitted, "#reason")
    def _reason(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(Approval(run=False, reason=event.value.strip()))

    def key_escape(self) -> None:
        if self.has_class("-asking-why"):
            self.dismiss(Approval(run=False))


@dataclass
class Approvals:
    """The agent's approval hook (agent/protocol.py `Approver`): a dialog, and the tool
    waits for the answer. True runs it; False or the user's reason declines. A command
    allowed "always" runs again without asking in this session."""

    app: App[Any]
    always_allowed: set[str] = field(default_factory=set)

    async def ask(self, name: str, arguments: dict[str, Any]) -> bool | str:
        agent = getattr(self.app, "agent", None)
        preview = agent.preview_edit(name, arguments) if agent is not None else None
        # An edit allowed "always" is allowed for that file; anything else for that call.
        asked = (
            f"file:{preview.path}"
            if preview is not None
            else json.dumps([name, arguments], sort_keys=True)
        )
        if asked in self.always_allowed:
            return True
        answer: asyncio.Future[Approval] = asyncio.get_running_loop().create_future()

        def settle(result: Approval | None) -> None:
            if not answer.done():
                answer.set_result(result or Approval(run=False))

        self.app.push_screen(ApproveScreen(name, arguments, preview), callback=settle)
        approval = await answer
        if approval.always:
            self.always_allowed.add(asked)
        return True if approval.run else (approval.reason or False)


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
            yield Label(
                "Esc or q closes · the tabs switch between what the model saw and the original",
                classes="hint",
            )

    def action_close(self) -> None:
        self.dismiss(None)
