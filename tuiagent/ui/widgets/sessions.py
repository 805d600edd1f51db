"""The proxy dashboard's tables: its calls grouped by client, session and agent (the core's
`SessionBook` does the grouping), and a row per call with why it cost what it did."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from tuiagent.ledger import BudgetLine
from tuiagent.report.sessions import GroupLine, call_cause, group_budget
from tuiagent.runs.records import ProxyTurn, RefusedCall
from tuiagent.ui.format import cap, money, tokens

GROUP_COLUMNS = ("group", "calls", "spend", "budget", "hit", "last call")
CALL_COLUMNS = ("#", "agent", "model", "in", "out", "cost", "why")
NAME_CHARS = 14  # of a name shown in a column (a session's UUID: its first 8 digits)


def short(name: str, chars: int = NAME_CHARS) -> str:
    return name if len(name) <= chars else name[: chars - 1] + "…"


class GroupsTable(DataTable[Any]):
    """Client, then session, then agent (each sub-agent under its parent): calls, spend,
    the ledger's budget for that group, cache hit rate, the last call and its cause."""

    DEFAULT_CSS = "GroupsTable { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="none", zebra_stripes=True)
        self.lines: list[GroupLine] = []

    def on_mount(self) -> None:
        for name in GROUP_COLUMNS:
            self.add_column(name, key=name)

    def show(self, lines: list[GroupLine], budgets: Iterable[BudgetLine]) -> None:
        budgets = tuple(budgets)
        self.lines = lines
        scroll = self.scroll_offset
        self.clear()
        for line in lines:
            self.add_row(*_group_cells(line, group_budget(budgets, line)))
        self.scroll_to(scroll.x, scroll.y, animate=False)


def _group_cells(line: GroupLine, budget: BudgetLine | None) -> list[Any]:
    r = line.row
    indent = "  " * line.depth
    label = {"client": line.name, "session": f"session {short(line.name, 9)}"}.get(
        line.kind, "main" if line.name == "main" else f"└ {short(line.name)}"
    )
    style = {"client": "bold", "session": "bold"}.get(line.kind, "")
    rate = r.cache_hit_rate
    calls = str(r.calls) + (f" ({r.refused} ref.)" if r.refused else "")
    left = "-" if budget is None else f"{money(budget.left)} of {cap(budget.cap)}"
    last = f"#{r.last_turn} {money(r.last_cost)}" + (f" {r.last_cause}" if r.last_cause else "")
    return [
        Text(indent + label, style=style),
        calls,
        money(r.cost),
        left,
        "-" if rate is None else f"{rate:.0%}",
        Text(last),
    ]


class CallsTable(DataTable[Any]):
    """A row per proxied call, the newest in view: its agent, tokens, cost and why."""

    DEFAULT_CSS = "CallsTable { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for name in CALL_COLUMNS:
            self.add_column(name, key=name)

    def add_call(self, record: ProxyTurn | RefusedCall) -> None:
        who = short(record.session, 9) if record.session else short(record.client.split("/")[0])
        if record.agent_id:  # a sub-agent's
            who += f"/{short(record.agent_id, 9)}"
        model = (record.model or "?").removeprefix("claude-")
        why = call_cause(record) or "-"
        if isinstance(record, RefusedCall):
            cells: list[Any] = [str(record.turn), who, model, "-", "-", money(Decimal(0), 5)]
            cells.append(Text(why, style="bold"))
        else:
            u = record.usage
            cells = [
                str(record.turn),
                who,
                model,
                tokens(u.total_input_tokens),
                tokens(u.output_tokens),
                money(record.cost_usd, 5),
                Text(why),
            ]
        at_end = self.row_count == 0 or self.cursor_row == self.row_count - 1
        self.add_row(*cells)
        if at_end:
            self.move_cursor(row=self.row_count - 1)
