"""The turns table: a row per model call, what it took and what it cost. The costliest stands out."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from tuiagent.ui.format import money, tokens

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

    def add_turn(self, record: dict[str, Any]) -> None:
        agent = str(record.get("agent", "main"))
        sub = agent != "main"
        key = f"{agent}-{record.get('purpose', 'agent')}-{record.get('turn')}"
        cost = Decimal(str(record.get("cost_usd", 0)))
        latency = record.get("latency_s")
        late = (
            "stopped"
            if record.get("stop_reason") == "interrupted"
            else (f"{latency:.2f}s" if isinstance(latency, int | float) else "-")
        )
        model = str(record.get("model", ""))
        cells = [
            f"  {agent}·{record.get('turn', '')}" if sub else str(record.get("turn", "")),
            _who(record) + model.removeprefix("claude-"),
            tokens(_all_input(record)),
            tokens(record.get("output_tokens")),
            tokens(record.get("cache_read_input_tokens")),
            tokens(record.get("cache_creation_input_tokens")),
            money(cost, 5),
            money(Decimal(str(record.get("cumulative_cost_usd", 0))), 4),
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


def _who(record: dict[str, Any]) -> str:
    """For a proxied call, the client that made it (`claude-cli/`); an agent call's model
    names its tier."""
    if record.get("tier"):
        return ""
    client = str(record.get("client", "")).split("/")[0]
    return f"{client}/" if client else ""


def _all_input(record: dict[str, Any]) -> int:
    return sum(
        int(record.get(k) or 0)
        for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )
