"""The budget gauge: spent / cap, what is left, the burn per turn, and why it halted. It shows
its app's budget state (ui/budget.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import ProgressBar, Sparkline, Static

from tuiagent.cost.display import budget_short
from tuiagent.ui.agent_events import every_agent
from tuiagent.ui.budget import BudgetState, MeteredApp
from tuiagent.ui.commands import key_hint
from tuiagent.ui.format import cap as fmt_cap
from tuiagent.ui.format import money

if TYPE_CHECKING:
    from tuiagent.agent.events import TurnFinished


class BudgetGauge(Horizontal):
    """Spent against the cap. Its class says the level: -ok, -warn, -danger, -halted."""

    DEFAULT_CSS = """
    BudgetGauge { height: 1; }
    BudgetGauge #gauge-bar { width: 14; }
    BudgetGauge #gauge-bar Bar { width: 12; }
    BudgetGauge #gauge-text { width: 1fr; height: 1; }
    BudgetGauge #gauge-spark { width: 16; }
    BudgetGauge.-ok #gauge-bar Bar > .bar--bar { color: $success; }
    BudgetGauge.-warn #gauge-bar Bar > .bar--bar { color: $warning; }
    BudgetGauge.-danger #gauge-bar Bar > .bar--bar,
    BudgetGauge.-halted #gauge-bar Bar > .bar--bar,
    BudgetGauge.-halted #gauge-bar Bar > .bar--complete { color: $error; }
    BudgetGauge.-halted #gauge-text { color: $error; text-style: bold; }
    BudgetGauge #gauge-spark > .sparkline--max-color { color: $warning; }
    BudgetGauge #gauge-spark > .sparkline--min-color { color: $success; }
    /* The empty track in a colour of its own (Bar draws it in the component's background). */
    BudgetGauge #gauge-bar Bar > .bar--bar,
    BudgetGauge #gauge-bar Bar > .bar--complete { background: $foreground 30%; }
    """

    state: reactive[BudgetState] = reactive(BudgetState(Decimal("1.00")), init=False)
    """The budget shown: the app's `budget` (ui/budget.py), bound when mounted."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.turn_costs: list[Decimal] = []

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=100, show_eta=False, show_percentage=False, id="gauge-bar")
        yield Static(id="gauge-text")
        yield Sparkline([], id="gauge-spark")

    def on_mount(self) -> None:
        app = self.app
        if isinstance(app, MeteredApp):
            self.watch(app, "budget", self._bound, init=True)
        self._refresh()

    def _bound(self, state: BudgetState) -> None:
        self.state = state

    def on_resize(self) -> None:
        self._refresh()

    @every_agent
    def when_turn_finished(self, event: TurnFinished) -> None:
        self.add_turn_cost(event.record.cost_usd)

    def add_turn_cost(self, cost: Decimal) -> None:
        self.turn_costs.append(cost)
        self.query_one(Sparkline).data = [float(c) for c in self.turn_costs[-40:]]
        self._refresh()

    def watch_state(self) -> None:
        self._refresh()

    @property
    def halted(self) -> str | None:
        """Why the session stopped at a limit, with what goes on, or None."""
        halt = self.state.halt
        if halt is None:
            return None
        app = self.app
        key = app.key if isinstance(app, MeteredApp) else key_hint
        if halt == "max_cost":
            return f"{key('cap_up')} or /budget to go on"
        if halt == "max_turns":
            return f"max_turns: {key('go_on')} or /turns N goes on"
        return halt

    def _refresh(self) -> None:
        # Drawn from compose on (not only once mounted): the first screen shows the budget
        # at whatever cap it starts with, the default one included.
        if not self.children:
            return
        s = self.state
        fraction = s.settled / s.cap if s.cap > 0 else Decimal(1)
        self.query_one(ProgressBar).update(progress=float(min(fraction, Decimal(1))) * 100)
        level = (
            "-ok"
            if fraction < Decimal("0.6")
            else "-warn"
            if fraction < Decimal("0.9")
            else "-danger"
        )
        if s.halt:
            level = "-halted"
        for name in ("-ok", "-warn", "-danger", "-halted"):
            self.set_class(name == level, name)
        # Its size is set (the rest of one line): a new text needs no layout.
        text = self.query_one("#gauge-text", Static)
        text.update(self.text(self._text_width()), layout=False)

    def _text_width(self) -> int:
        width = self.query_one("#gauge-text", Static).size.width
        return width if width > 0 else 10_000

    def text(self, width: int = 10_000) -> str:
        """The gauge's line, as many of its parts as fit `width`, most important first."""
        s, halted = self.state, self.halted
        percent = (s.remaining / s.cap * 100) if s.cap > 0 else Decimal(0)
        parts = []
        if halted:
            parts.append(f"HALTED: {halted}")
        parts += [
            f"spent {money(s.settled)} / cap {fmt_cap(s.cap)}",
            f"left {money(s.remaining)} ({percent:.0f}%)",
        ]
        if s.in_flight > 0:
            parts.insert(1, f"in flight {money(s.in_flight)}")
        tightest = s.tightest
        if tightest is not None:  # e.g. "today $3.12 / $20.00", beside the cap
            parts.insert(1, budget_short(tightest))
        if self.turn_costs:
            burn = sum(self.turn_costs, Decimal(0)) / len(self.turn_costs)
            parts.append(f"{money(burn)}/turn")
            if burn > 0:
                left = int(s.remaining / burn)
                parts.append(f"~{left:,} turn{'' if left == 1 else 's'} left")
        shown = parts[0]
        for part in parts[1:]:
            if len(shown) + 3 + len(part) > width:
                break
            shown += f" · {part}"
        return shown
