"""The turns table: a row per model call, what it took and what it cost. The costliest stands out."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import DataTable

from tuiagent.runs.records import Attempt, Call, Turn
from tuiagent.ui.agent_events import every_agent
from tuiagent.ui.format import money, tokens

if TYPE_CHECKING:
    from tuiagent.agent.events import AttemptFailed, TurnFinished

# The model names its tier (the Router panel and the status line say it too): the table fits
# 80 columns. "in" is every input token (uncached + cache read + cache write), as in the report.
COLUMNS = ("#", "model", "in", "out", "c.read", "c.write", "cost", "total", "latency")


class TurnsTable(DataTable[Any]):
    DEFAULT_CSS = """
    TurnsTable { height: auto; max-height: 9; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._costs: dict[str, Decimal] = {}
        self._costliest: str | None = None

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    @every_agent
    def when_turn_finished(self, event: TurnFinished) -> None:
        self.add_turn(event.record)

    @every_agent
    def when_attempt_failed(self, event: AttemptFailed) -> None:
        self.add_turn(event.record)

    def add_turn(self, record: Call) -> None:
        """A row per call (a retried call's row is updated in place)."""
        agent = record.agent or "main"
        sub = agent != "main"
        key = f"{agent}-{record.purpose or 'agent'}-{record.turn}"
        cost, u = record.cost_usd, record.usage
        if isinstance(record, Attempt):
            late = "-"
        elif isinstance(record, Turn) and record.stop_reason == "interrupted":
            late = "stopped"
        else:
            late = f"{record.latency_s:.2f}s"
        cells = [
            f"  {agent}·{record.turn}" if sub else str(record.turn),
            record.model.removeprefix("claude-"),
            tokens(u.total_input_tokens),
            tokens(u.output_tokens),
            tokens(u.cache_read_input_tokens),
            tokens(u.cache_creation_input_tokens),
            money(cost, 5),
            money(record.cumulative_cost_usd, 4),
            late,
        ]
        if key in self._costs:
            for column, value in zip(COLUMNS, cells, strict=True):
                self.update_cell(key, column, value, update_width=True)
        else:
            self.add_row(*cells, key=key)
        self._costs[key] = cost
        self._mark_costliest()
        self.move_cursor(row=self.row_count - 1)

    def on_resize(self) -> None:
        """Shorter (the window shrank, the layout changed): the newest rows stay in view,
        when the cursor is on the newest."""
        if self.row_count and self.cursor_row == self.row_count - 1:
            self.call_after_refresh(self.scroll_end, animate=False)

    def _mark_costliest(self) -> None:
        top: str | None = max(self._costs, key=lambda k: self._costs[k])
        if top is not None and self._costs[top] <= 0:
            top = None  # nothing cost anything (a failed call billed $0): nothing to mark
        if top is None:
            if self._costliest is not None:
                self._restyle(self._costliest, False)
            self._costliest = None
            return
        if top == self._costliest:
            self._restyle(top, True)
            return
        if self._costliest is not None:
            self._restyle(self._costliest, False)
        self._costliest = top
        self._restyle(top, True)

    def _restyle(self, key: str, costliest: bool) -> None:
        cost = money(self._costs[key], 5)
        self.update_cell(
            key,
            "cost",
            Text(f"▲ {cost}", style="bold reverse") if costliest else cost,
            update_width=True,
        )

    def clear_turns(self) -> None:
        self.clear()
        self._costs.clear()
        self._costliest = None
