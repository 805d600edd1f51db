"""The budget as an app shows it: one state, read from the `Budget` whenever it changes, bound
to the gauge; F2/F3 step the cap from it.

The cap lives in the `Budget` (cost/budget.py). An app keeps a copy of what it shows as
`budget`, a `BudgetState`, and replaces it with what the Budget holds after each change:
the Budget calls back (the agent's through `AgentControl.watch_budget`, the proxy's
directly) in whichever thread changed it, so the callback only posts `BudgetMoved`, and the
app reads the Budget again when it handles it. The gauge watches `budget`; F2/F3 step from
`budget.cap` and set the cap where it lives (`put_cap`). The app and the proxy's dashboard
(ui/proxy.py) are both a `MeteredApp`: the same state, the same gauge, the same steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from textual import on
from textual.app import App
from textual.reactive import var

from tuiagent.ui.commands import key_hint
from tuiagent.ui.format import cap as fmt_cap
from tuiagent.ui.messages import BudgetMoved

if TYPE_CHECKING:
    from tuiagent.cost.budget import BudgetSnapshot
    from tuiagent.ledger import BudgetLine

ZERO = Decimal(0)
# The limits a request halts at (the agent's Halted events): the gauge says which until the
# agent goes on. An error or Escape is not a limit: it stops only the request it ended.
LIMITS = ("max_cost", "max_turns", "max_retries", "context")
TOAST_S = 3.0  # how long a toast about a key's effect stays (the gauge shows it for good)


@dataclass(frozen=True)
class BudgetState:
    """The budget as the gauge shows it: the cap in force, what is settled and what calls
    in flight may still bill, and the limit that halted the last request while it holds
    (`needed_usd`: halted at the cap, the most the next call may cost)."""

    cap: Decimal
    settled: Decimal = ZERO
    in_flight: Decimal = ZERO
    holds: int = 0  # calls in flight
    halt: str | None = None  # one of LIMITS (a HaltReason)
    needed_usd: Decimal | None = None
    # The `[[budgets]]` the calls fall under, as the ledger last showed them.
    budgets: tuple[BudgetLine, ...] = ()

    @classmethod
    def of(
        cls,
        budget: BudgetSnapshot,
        halt: str | None = None,
        needed_usd: Decimal | None = None,
    ) -> BudgetState:
        halt = halt if halt in LIMITS else None
        needed = needed_usd if halt == "max_cost" else None
        return cls(
            budget.cap,
            budget.settled,
            budget.in_flight,
            budget.holds,
            halt,
            needed,
            budget.budgets,
        )

    @property
    def tightest(self) -> BudgetLine | None:
        """The `[[budgets]]` budget with least left (the gauge shows it beside the cap)."""
        return min(self.budgets, key=lambda line: line.left, default=None)

    @property
    def remaining(self) -> Decimal:
        return max(self.cap - self.settled - self.in_flight, ZERO)

    @property
    def at_cap(self) -> bool:
        """Halted by the cap: nothing is sent until it is raised."""
        return self.halt == "max_cost"


# --- F2 / F3: the cap's steps ----------------------------------------------------

LOWEST_STEPPED_CAP = Decimal("0.0001")  # F2 stops here; /budget sets any cap


def stepped_cap(cap: Decimal, configured: Decimal, *, down: bool) -> Decimal | None:
    """The cap one F2 (down) or F3 (up) press away, on a grid of the step: the configured
    step while the cap stays above it, else the power of ten below the cap (from $0.10 down
    goes $0.09, from $0.019 up goes $0.02). None: no step down is left above
    LOWEST_STEPPED_CAP."""
    if cap <= 0:
        return None if down else configured
    if (cap - configured if down else cap) >= configured:
        step = configured
    else:
        below = cap - cap.scaleb(-6) if down else cap  # going down, the step is below the cap
        step = Decimal(1).scaleb(below.adjusted())
    grid = cap / step
    if down:
        new = (grid.to_integral_value(rounding=ROUND_CEILING) - 1) * step
        return new.normalize() if new >= LOWEST_STEPPED_CAP else None
    return ((grid.to_integral_value(rounding=ROUND_FLOOR) + 1) * step).normalize()


NEEDED_PLACES = Decimal("0.0001")  # F3 at a halt: what is needed, rounded up to money's places


def cap_up(state: BudgetState, step: Decimal) -> Decimal:
    """F3: one step up; halted at the cap, up to what the halted request needs (spent, in
    flight and what its next call may cost, rounded up to money's places), not the grid step
    past it ($0.05 went to $0.20 when $0.1526 was needed)."""
    if state.at_cap and state.needed_usd is not None:
        enough = state.settled + state.in_flight + state.needed_usd
        enough = enough.quantize(NEEDED_PLACES, rounding=ROUND_CEILING)
        if enough > state.cap:
            return enough.normalize()
    higher = stepped_cap(state.cap, step, down=False)
    assert higher is not None  # up always has a next step
    return higher


class MeteredApp(App[int]):
    """An app that shows a Budget and steers its cap: `budget` is what it shows, F2/F3 step
    it by `step`. A subclass says where the cap lives (`read_budget`, `put_cap`)."""

    budget: var[BudgetState] = var(BudgetState(Decimal("1.00")), init=False)
    """The budget as the Budget last held it (set by `show_budget`, never by hand)."""

    def __init__(self, *, step: Decimal, keymap: Mapping[str, str]) -> None:
        super().__init__()
        self.step = step  # what F2/F3 move the cap by (budget_step_usd)
        self.keymap = keymap  # the user's [keymap]: the keys the hints on screen name

    def read_budget(self) -> BudgetState:
        """The budget as it stands now, where it lives."""
        raise NotImplementedError

    def put_cap(self, amount: Decimal) -> Decimal:
        """Set the cap where it lives; returns the cap in force (never below what is spent
        and in flight)."""
        raise NotImplementedError

    def key(self, command_id: str) -> str:
        """The key of a command as the user has it, for the hints on screen."""
        return key_hint(command_id, self.keymap)

    def show_budget(self) -> None:
        self.budget = self.read_budget()

    def budget_changed(self, _change: BudgetSnapshot) -> None:
        """The Budget's listener: called in the thread that changed it, so it only posts."""
        self.post_message(BudgetMoved())

    @on(BudgetMoved)
    def _budget_moved(self) -> None:
        self.show_budget()

    def set_cap(self, amount: Decimal) -> None:
        before = self.budget.cap
        in_force = self.put_cap(amount)
        self.show_budget()
        if in_force != amount:  # the gauge shows the cap; a toast says why it is not as asked
            stays = "stays" if in_force == before else "is"
            self.notify(
                f"the cap {stays} {fmt_cap(in_force)}: it cannot go below what is spent "
                "and in flight",
                title="Budget",
                severity="warning",
                timeout=TOAST_S,
            )

    def action_cap_down(self) -> None:
        lower = stepped_cap(self.budget.cap, self.step, down=True)
        if lower is None:
            self.notify(
                f"{self.key('cap_down')} goes no lower than {fmt_cap(LOWEST_STEPPED_CAP)}; "
                "/budget sets any cap",
                title="Budget",
                severity="warning",
                timeout=TOAST_S,
            )
            return
        self.set_cap(lower)

    def action_cap_up(self) -> None:
        self.set_cap(cap_up(self.budget, self.step))
