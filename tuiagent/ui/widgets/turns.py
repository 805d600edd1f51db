"""The turns table: a row per model call, what it took and what it cost. The costliest stands out."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from tuiagent.ui.format import money, tokens

COLUMNS = ("#", "tier/model", "in", "out", "c.read", "c.write", "cost", "total", "latency")


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
            f"{_who(record)}/{model.removeprefix('claude-')}",
            tokens(record.get("input_tokens")),
            tokens(record.get("output_tokens")),
            tokens(record.get("cache_read_input_tokens")),
            tokens(record.get("cache_creation_input_tokens")),
            money(cost, 5),
            money(Decimal(str(record.get("cumulative_cost_usd", 0))), 4),
            late,
        ]
        if key in self._costs:
            for column, value in zip(COLUMNS, cells, strict=True):
                self.update_cell(key, column, value)
        else:
            self.add_row(*cells, key=key)
        self._costs[key] = cost
        self._mark_costliest()
        self.move_cursor(row=self.row_count - 1)

    def _mark_costliest(self) -> None:
        top = max(self._costs, key=lambda k: self._costs[k])
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
            key, "cost", Text(f"▲ {cost}", style="bold reverse") if costliest else cost
        )

    def clear_turns(self) -> None:
        self.clear()
        self._costs.clear()
        self._costliest = None


def _who(record: dict[str, Any]) -> str:
    """The tier that chose the model; for a proxied call, the client that did."""
    if record.get("tier"):
        return str(record["tier"])
    return str(record.get("client", "")).split("/")[0]
