"""The resume picker: recent sessions (title, when, cost, turns), chosen by keyboard.

Up/down (page up/down, home/end) move, Enter reopens the session, Escape starts a new one.
No letter is a picker key: what a user types while it is open (often before it showed) is
their message. The picker shows it and hands it back; it waits, unsent, in the chat input
of the session chosen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from tuiagent.runs.recent import RecentSession
from tuiagent.ui.format import money


@dataclass(frozen=True)
class Picked:
    """The chosen session's transcript (None: a new session) and the message typed meanwhile."""

    transcript: Path | None
    draft: str


class ResumeScreen(ModalScreen[Picked]):
    """Dismissed with what was picked and what was typed."""

    DEFAULT_CSS = """
    ResumeScreen { align: center middle; }
    ResumeScreen #picker {
        width: 100%;
        max-width: 110;
        height: auto;
        max-height: 90%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    ResumeScreen DataTable { height: auto; max-height: 20; }
    ResumeScreen .hint { color: $text-muted; }
    ResumeScreen #draft { height: auto; max-height: 4; }
    """
    BINDINGS = [  # noqa: RUF012
        Binding("escape", "new", "New session", id="resume_new", tooltip="start a new session"),
    ]

    def __init__(self, sessions: list[RecentSession], draft: str = "") -> None:
        super().__init__()
        self.sessions = sessions
        self.draft = draft  # the user's message so far: typed here, or before it opened

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Label("[b]Resume a session[/b]")
            table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True)
            # The other columns take about 40 cells; the title gets what is left.
            room = max(
                16,
                min(len(max((s.title for s in self.sessions), key=len)), self.app.size.width - 44),
            )
            table.add_column("first message", width=room)
            table.add_columns("when (UTC)", "cost", "turns")
            for s in self.sessions:
                when = s.started_at.replace("T", " ")[:16]
                title = s.title if len(s.title) <= room else s.title[: room - 1] + "…"
                table.add_row(title, when, money(s.cost_usd, 4), str(s.turns), key=s.run_id)
            yield table
            yield Label(
                "Enter reopens it · up/down move · Esc: a new session · type your message",
                classes="hint",
            )
            yield Label(id="draft")

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._show_draft()

    def _show_draft(self) -> None:
        label = self.query_one("#draft", Label)
        label.display = bool(self.draft)
        # Text, not markup: what the user typed is shown as typed ("[b]" stays "[b]").
        label.update(Text.assemble(("your message: ", "bold"), self.draft))

    def on_key(self, event: events.Key) -> None:
        """Typing is the user's message, never a command to the picker."""
        if event.key == "backspace":
            self.draft = self.draft[:-1]
        elif event.is_printable and event.character is not None:
            self.draft += event.character
        else:
            return
        event.stop()
        event.prevent_default()
        self._show_draft()

    def on_paste(self, event: events.Paste) -> None:
        event.stop()
        self.draft += event.text
        self._show_draft()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        chosen = next(s for s in self.sessions if s.run_id == event.row_key.value)
        self.dismiss(Picked(chosen.transcript, self.draft))

    def action_new(self) -> None:
        self.dismiss(Picked(None, self.draft))
