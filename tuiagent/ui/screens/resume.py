"""The resume picker: recent sessions (title, when, cost, turns), chosen by keyboard.

Up/down (or j/k) move, Enter reopens the session, n or Escape starts a new one."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from tuiagent.runs.recent import RecentSession
from tuiagent.ui.format import money


class ResumeScreen(ModalScreen[Path | None]):
    """Dismissed with the chosen session's transcript, or None for a new session."""

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
    """
    BINDINGS = [  # noqa: RUF012
        Binding("escape,n", "new", "New session", id="resume_new", tooltip="start a new session"),
        Binding("j", "move(1)", show=False, id="resume_down"),
        Binding("k", "move(-1)", show=False, id="resume_up"),
    ]

    def __init__(self, sessions: list[RecentSession]) -> None:
        super().__init__()
        self.sessions = sessions

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
                "Enter reopens it · up/down or j/k move · n or Esc: a new session", classes="hint"
            )

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        chosen = next(s for s in self.sessions if s.run_id == event.row_key.value)
        self.dismiss(chosen.transcript)

    def action_move(self, step: int) -> None:
        table = self.query_one(DataTable)
        table.move_cursor(row=table.cursor_row + step)

    def action_new(self) -> None:
        self.dismiss(None)
