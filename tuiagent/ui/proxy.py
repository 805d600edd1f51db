"""The proxy's live dashboard: the app's gauge; the calls grouped by client, session and agent
(sub-agents under their parent: the core's `SessionBook`, as `report` groups them), each
with its spend, its budget in the ledger, its cache hit rate and its last call; a row per
call saying why it cost what it did; each key's rate limits; the cache panel (wide).

The proxy serves in its own thread; its call records and the budget's changes arrive here
as messages (posting is thread-safe). Its budget state, gauge and F2/F3 steps are the
app's (ui/budget.py): the keys change the proxy's cap live, never below what is settled
plus in flight. The dashboard holds no proxy logic.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, RichLog, Static

from tuiagent.config import Settings
from tuiagent.cost.display import resets
from tuiagent.ledger import BudgetLine
from tuiagent.proxy.keptlog import KeptLog
from tuiagent.proxy.lines import call_line
from tuiagent.proxy.ratelimits import limits_line
from tuiagent.report.sessions import SessionBook
from tuiagent.runs.records import ProxyTurn, Record, RefusedCall
from tuiagent.ui.budget import BudgetState, MeteredApp
from tuiagent.ui.commands import bindings
from tuiagent.ui.format import cap as fmt_cap
from tuiagent.ui.format import money
from tuiagent.ui.widgets.cache import CachePanel
from tuiagent.ui.widgets.gauge import BudgetGauge
from tuiagent.ui.widgets.sessions import CallsTable, GroupsTable

if TYPE_CHECKING:
    from tuiagent.proxy.meter import Meter
    from tuiagent.proxy.server import ProxyServer


@dataclass
class CallRecorded(Message):
    """The proxy wrote one record (a call, an attempt, a refusal)."""

    record: Record


@dataclass
class LogNotice(Message):
    """The proxy's run log failed or recovered (a full disk)."""

    line: str


class ProxyDashboard(MeteredApp):
    TITLE = "tuiagent proxy"
    CSS = """
    #proxy-head { height: 2; padding: 0 1; color: $text-muted; }
    #proxy-gauge { margin: 0 1; }
    #proxy-budgets { height: auto; max-height: 7; padding: 0 1; display: none; }
    #proxy-budgets.-shown { display: block; }
    #proxy-groups { height: 1fr; min-height: 4; border-top: solid $primary; }
    #proxy-body { height: 1fr; min-height: 4; }
    #proxy-calls { width: 1fr; height: 1fr; border-top: solid $primary; }
    #proxy-cache { width: 34; border: round $primary; padding: 0 1; height: auto; }
    #proxy-limits { height: auto; max-height: 3; padding: 0 1; display: none; }
    #proxy-limits.-shown { display: block; }
    #proxy-log { height: 6; border-top: solid $primary; }
    .-narrow #proxy-cache { display: none; }
    .-narrow #proxy-log { height: 3; }
    """
    # Narrow, the cache panel goes (each group's row has its hit rate) and the log shrinks.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012
    BINDINGS = bindings("cap_down", "cap_up", "quit")  # the app's keys

    def __init__(self, server: ProxyServer, meter: Meter, settings: Settings) -> None:
        super().__init__(step=settings.ui.budget_step_usd, keymap=settings.ui.keymap)
        self.server = server
        self.meter = meter
        self.book = SessionBook()  # the calls grouped, as they come
        self.set_reactive(ProxyDashboard.budget, self.read_budget())

    def compose(self) -> ComposeResult:
        yield Static(id="proxy-head")
        yield BudgetGauge(id="proxy-gauge")
        yield Static(id="proxy-budgets")
        yield GroupsTable(id="proxy-groups")
        with Horizontal(id="proxy-body"):
            yield CallsTable(id="proxy-calls")
            yield CachePanel(id="proxy-cache")
        yield Static(id="proxy-limits")
        yield RichLog(id="proxy-log", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        self.meter.listeners.append(self._from_proxy)
        self.meter.budget.subscribe(self.budget_changed)
        self.show_budget()
        self.watch_budget(self.budget)  # the head, whether or not the budget moved
        if isinstance(self.meter.log, KeptLog):
            self.meter.log.notices.append(self._from_log)
        # SIGTERM or SIGHUP (ProxyServer.stopped_by_signals) ends the app as `q` does.
        loop = asyncio.get_running_loop()

        def stop() -> None:
            loop.call_soon_threadsafe(self.exit)

        self.server.on_stop.append(stop)
        self.server.start()
        self.query_one(RichLog).write(f"point a client here: ANTHROPIC_BASE_URL={self.server.url}")
        self.set_interval(1.0, self.show_limits)  # their "full in" counts down

    # Called in the proxy's thread: posting a message is the thread-safe way in.
    def _from_proxy(self, record: Record) -> None:
        self.post_message(CallRecorded(record))

    def _from_log(self, line: str) -> None:
        self.post_message(LogNotice(line))

    @on(CallRecorded)
    def _call(self, message: CallRecorded) -> None:
        record = message.record
        if not isinstance(record, ProxyTurn | RefusedCall):
            return
        self.book.add(self.meter.run_id, record)
        self.query_one(RichLog).write(call_line(record))
        self.query_one(CallsTable).add_call(record)
        self.show_groups()
        self.show_limits()
        if isinstance(record, ProxyTurn):
            self.query_one(BudgetGauge).add_turn_cost(record.cost_usd)
            if record.type == "turn":
                self.query_one(CachePanel).add_turn(record)

    def show_groups(self) -> None:
        self.query_one(GroupsTable).show(self.book.tree(), self.budget.budgets)

    def show_limits(self) -> None:
        seen = self.meter.rate_limits.snapshot()
        shown = self.query_one("#proxy-limits", Static)
        shown.set_class(bool(seen), "-shown")
        now, width = time.time(), max(self.size.width - 2, 40)
        shown.update("\n".join(limits_line(s, now, width=width) for s in seen[:LIMIT_ROWS]))

    @on(LogNotice)
    def _log_notice(self, message: LogNotice) -> None:
        self.query_one(RichLog).write(message.line)
        self.notify(message.line, title="Run log", severity="error")

    # --- the budget (ui/budget.py): the proxy's own ----------------------------------

    def read_budget(self) -> BudgetState:
        return BudgetState.of(self.meter.budget.snapshot())

    def put_cap(self, amount: Decimal) -> Decimal:
        return self.meter.budget.set_cap(amount)

    def watch_budget(self, state: BudgetState) -> None:
        self.query_one("#proxy-head", Static).update(
            f"listening on {self.server.url} · log {self.meter.log.path.name}\n"
            f"{state.holds} call(s) in flight holding {money(state.in_flight)} · "
            f"cap {fmt_cap(state.cap)}"
            f"{' · offline model (simulated)' if self.meter.simulated else ''}"
        )
        rows = self.query_one("#proxy-budgets", Static)
        rows.set_class(bool(state.budgets), "-shown")
        rows.update(budget_rows(state.budgets, time.time()))
        self.show_groups()  # each group's budget


BUDGET_ROWS = 6  # the budgets in use the dashboard lists, the most recently used
LIMIT_ROWS = 3  # the keys whose rate limits it shows, the most recently used


def budget_rows(lines: tuple[BudgetLine, ...], now: float) -> str:
    """A row per `[[budgets]]` budget in use: spent, held, left of its cap, its reset."""
    shown = lines[-BUDGET_ROWS:][::-1]
    rows = []
    for line in shown:
        of = "" if line.spec.scope == "global" else f" {line.spec.scope} {line.value}"
        rows.append(
            f"{line.title}{of}: {money(line.spent)} spent, {money(line.held)} held, "
            f"{money(line.left)} left of {fmt_cap(line.cap)} · {resets(line, now)}"
        )
    if len(lines) > len(shown):
        rows.append(f"… {len(lines) - len(shown)} more (tuiagent budgets lists them)")
    return "\n".join(rows)


def run_dashboard(server: ProxyServer, meter: Meter, settings: Settings) -> int:
    ProxyDashboard(server, meter, settings).run()
    return 0
