"""The proxy's live dashboard: the app's gauge, turns table and cache panel, fed by the proxy.

The proxy serves in its own thread; its call records and the budget's changes arrive here
as messages (posting is thread-safe). F2/F3 change the proxy's cap live: the budget floors
it at what is settled plus in flight. The dashboard holds no proxy logic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from textual import on
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, RichLog, Static

from tuiagent.config import Settings
from tuiagent.cost.budget import BudgetChanged
from tuiagent.proxy.keptlog import KeptLog
from tuiagent.proxy.lines import call_line
from tuiagent.runs.records import ProxyTurn, Record, Refused
from tuiagent.ui.commands import bindings
from tuiagent.ui.format import cap as fmt_cap
from tuiagent.ui.format import money
from tuiagent.ui.widgets.cache import CachePanel
from tuiagent.ui.widgets.gauge import BudgetGauge
from tuiagent.ui.widgets.turns import TurnsTable

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


@dataclass
class BudgetMoved(Message):
    """The proxy's budget after a change."""

    budget: BudgetChanged


class ProxyDashboard(App[int]):
    TITLE = "tuiagent proxy"
    CSS = """
    #proxy-head { height: 2; padding: 0 1; color: $text-muted; }
    #proxy-gauge { margin: 0 1; }
    #proxy-body { height: 1fr; }
    #proxy-turns { width: 1fr; height: 1fr; max-height: 100%; }
    #proxy-cache { width: 34; border: round $primary; padding: 0 1; height: auto; }
    #proxy-log { height: 8; border-top: solid $primary; }
    .-narrow #proxy-body { layout: vertical; }
    .-narrow #proxy-cache { width: 1fr; }
    """
    # Narrow, the cache panel goes under the table: beside it, it hides the cost columns.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012
    BINDINGS = bindings("cap_down", "cap_up", "quit")  # the app's keys

    def __init__(self, server: ProxyServer, meter: Meter, settings: Settings) -> None:
        super().__init__()
        self.server = server
        self.meter = meter
        self.step = settings.ui.budget_step_usd
        self.keymap = settings.ui.keymap

    def compose(self) -> ComposeResult:
        yield Static(id="proxy-head")
        yield BudgetGauge(id="proxy-gauge")
        with Horizontal(id="proxy-body"):
            yield TurnsTable(id="proxy-turns")
            yield CachePanel(id="proxy-cache")
        yield RichLog(id="proxy-log", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        self.meter.listeners.append(self._from_proxy)
        self.meter.budget.subscribe(self._from_budget)
        if isinstance(self.meter.log, KeptLog):
            self.meter.log.notices.append(self._from_log)
        # SIGTERM or SIGHUP (ProxyServer.stopped_by_signals) ends the app as `q` does.
        loop = asyncio.get_running_loop()

        def stop() -> None:
            loop.call_soon_threadsafe(self.exit)

        self.server.on_stop.append(stop)
        self._show_budget(self.meter.budget.snapshot())
        self.server.start()
        self.query_one(RichLog).write(f"point a client here: ANTHROPIC_BASE_URL={self.server.url}")

    # Called in the proxy's thread: posting a message is the thread-safe way in.
    def _from_proxy(self, record: Record) -> None:
        self.post_message(CallRecorded(record))

    def _from_log(self, line: str) -> None:
        self.post_message(LogNotice(line))

    def _from_budget(self, snapshot: BudgetChanged) -> None:
        self.post_message(BudgetMoved(snapshot))

    @on(CallRecorded)
    def _call(self, message: CallRecorded) -> None:
        record = message.record
        if isinstance(record, Refused):
            self.query_one(RichLog).write(call_line(record))
            self.query_one(TurnsTable).add_refusal(record)
            self.notify(record.error, title="Refused", severity="warning")
            return
        if not isinstance(record, ProxyTurn):
            return
        self.query_one(RichLog).write(call_line(record))
        self.query_one(BudgetGauge).add_turn_cost(record.cost_usd)
        self.query_one(TurnsTable).add_turn(record)
        if record.type == "turn":
            self.query_one(CachePanel).add_turn(record)

    @on(LogNotice)
    def _log_notice(self, message: LogNotice) -> None:
        self.query_one(RichLog).write(message.line)
        self.notify(message.line, title="Run log", severity="error")

    @on(BudgetMoved)
    def _budget(self, message: BudgetMoved) -> None:
        self._show_budget(message.budget)

    def _show_budget(self, b: BudgetChanged) -> None:
        self.query_one(BudgetGauge).show(b)
        self.query_one("#proxy-head", Static).update(
            f"listening on {self.server.url} · log {self.meter.log.path.name}\n"
            f"{b.holds} call(s) in flight holding {money(b.in_flight)} · cap {fmt_cap(b.cap)}"
        )

    def action_cap_up(self) -> None:
        self._set_cap(self.meter.budget.cap + self.step)

    def action_cap_down(self) -> None:
        self._set_cap(max(self.meter.budget.cap - self.step, self.step))

    def _set_cap(self, wanted: Decimal) -> None:
        in_force = self.meter.budget.set_cap(wanted)
        note = "" if in_force == wanted else " (not below what is spent and in flight)"
        self.notify(f"cap {fmt_cap(in_force)}{note}", title="Budget")


def run_dashboard(server: ProxyServer, meter: Meter, settings: Settings) -> int:
    ProxyDashboard(server, meter, settings).run()
    return 0
