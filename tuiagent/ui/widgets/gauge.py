"""The budget gauge: spent / cap, what is left, the burn per turn, and why it halted."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import ProgressBar, Sparkline, Static

from tuiagent.cost.display import budget_short
from tuiagent.ui.format import cap as fmt_cap
from tuiagent.ui.format import money

if TYPE_CHECKING:
    from tuiagent.cost.budget import BudgetChanged


class BudgetGauge(Horizontal):
    """Spent against the cap. Its class says the level: -ok, -warn, -danger, -halted."""

    DEFAULT_CSS = """
    BudgetGauge { height: 1; }
    BudgetGauge #gauge-bar { width: 14; }
    BudgetGauge #gauge-bar Bar { width: 12; }
    BudgetGauge #gauge-text { width: 1fr; }
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

    spent: reactive[Decimal] = reactive(Decimal(0), init=False)
    """What the run has spent so far."""
    cap: reactive[Decimal] = reactive(Decimal("1.00"), init=False)
    """The spending cap in force."""
    in_flight: reactive[Decimal] = reactive(Decimal(0), init=False)
    """What calls under way may still bill at most (held against the cap)."""
    halted: reactive[str | None] = reactive(None, init=False)
    """Why the session stopped at a limit, or None."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.turn_costs: list[Decimal] = []
        self.stacked: str | None = None  # the tightest [[budgets]] budget, in a few words

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=100, show_eta=False, show_percentage=False, id="gauge-bar")
        yield Static(id="gauge-text")
        yield Sparkline([], id="gauge-spark")

    def on_mount(self) -> None:
        self._refresh()

    def on_resize(self) -> None:
        self._refresh()

    def show(self, budget: BudgetChanged) -> None:
        """The budget as an agent event reports it."""
        tightest = budget.tightest
        self.stacked = budget_short(tightest) if tightest is not None else None
        self.cap, self.spent, self.in_flight = budget.cap, budget.settled, budget.in_flight

    def add_turn_cost(self, cost: Decimal) -> None:
        self.turn_costs.append(cost)
        self.query_one(Sparkline).data = [float(c) for c in self.turn_costs[-40:]]
        self._refresh()

    def watch_spent(self) -> None:
        self._refresh()

    def watch_cap(self) -> None:
        self._refresh()

    def watch_halted(self) -> None:
        self._refresh()

    def watch_in_flight(self) -> None:
        self._refresh()

    @property
    def remaining(self) -> Decimal:
        return max(self.cap - self.spent - self.in_flight, Decimal(0))

    def _refresh(self) -> None:
        # Drawn from compose on (not only once mounted): the first screen shows the budget
        # at whatever cap it starts with, the default one included.
        if not self.children:
            return
        fraction = self.spent / self.cap if self.cap > 0 else Decimal(1)
        self.query_one(ProgressBar).update(progress=float(min(fraction, Decimal(1))) * 100)
        level = (
            "-ok"
            if fraction < Decimal("0.6")
            else "-warn"
            if fraction < Decimal("0.9")
            else "-danger"
        )
        if self.halted:
            level = "-halted"
        for name in ("-ok", "-warn", "-danger", "-halted"):
            self.set_class(name == level, name)
        self.query_one("#gauge-text", Static).update(self.text(self._text_width()))

    def _text_width(self) -> int:
        width = self.query_one("#gauge-text", Static).size.width
        return width if width > 0 else 10_000

    def text(self, width: int = 10_000) -> str:
        """The gauge's line, as many of its parts as fit `width`, most important first."""
        percent = (self.remaining / self.cap * 100) if self.cap > 0 else Decimal(0)
        parts = []
        if self.halted:
            parts.append(f"HALTED: {self.halted}")
        parts += [
            f"spent {money(self.spent)} / cap {fmt_cap(self.cap)}",
            f"left {money(self.remaining)} ({percent:.0f}%)",
        ]
        if self.in_flight > 0:
            parts.insert(1, f"in flight {money(self.in_flight)}")
        if self.stacked is not None:
            parts.insert(1, self.stacked)
        if self.turn_costs:
            burn = sum(self.turn_costs, Decimal(0)) / len(self.turn_costs)
            parts.append(f"{money(burn)}/turn")
            if burn > 0:
                left = int(self.remaining / burn)
                parts.append(f"~{left:,} turn{'' if left == 1 else 's'} left")
        shown = parts[0]
        for part in parts[1:]:
            if len(shown) + 3 + len(part) > width:
                break
            shown += f" · {part}"
        return shown
