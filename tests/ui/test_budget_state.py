"""One budget state (issue 27): read from the Budget whenever it changes, bound to the gauge,
stepped by F2/F3; the agent's events shown by the widgets that show their kind."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from decimal import Decimal

from textual import events
from textual.case import camel_to_snake

import tuiagent.ui
from tests.support.app import idle, ready, send, until
from tuiagent.agent import events as agent_events
from tuiagent.cost.budget import BudgetSnapshot
from tuiagent.ui.agent_events import PREFIX
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.budget import BudgetState, cap_up
from tuiagent.ui.format import cap as fmt_cap

MakeApp = Callable[..., TuiagentApp]


def test_every_when_method_names_an_agent_event() -> None:
    """A handler is found by its name (`when_turn_finished` shows TurnFinished): a name that
    names no event would never be called."""
    kinds = {
        PREFIX + camel_to_snake(name)
        for name, cls in vars(agent_events).items()
        if isinstance(cls, type) and issubclass(cls, agent_events.Event)
    }
    found = []
    for info in pkgutil.walk_packages(tuiagent.ui.__path__, "tuiagent.ui."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for name in vars(cls):
                if name.startswith(PREFIX):
                    found.append(name)
                    assert name in kinds, f"{cls.__name__}.{name} names no agent event"
    assert "when_turn_finished" in found and "when_answer_delta" in found


def test_the_state_shows_only_limits_and_what_the_cap_needs() -> None:
    budget = BudgetSnapshot("session", Decimal("1"), Decimal("0.4"), Decimal("0.1"), 1)
    state = BudgetState.of(budget, "max_cost", Decimal("0.7"))
    assert (state.cap, state.remaining, state.holds) == (Decimal(1), Decimal("0.5"), 1)
    assert state.at_cap and state.needed_usd == Decimal("0.7")
    assert BudgetState.of(budget, "max_turns", Decimal("0.7")).needed_usd is None
    for not_a_limit in ("interrupted", "error", None):  # Escape and errors end one request
        assert BudgetState.of(budget, not_a_limit).halt is None
    # Halted at the cap, F3 goes up to what the next call needs (with what is in flight),
    # rounded up to money's places; not halted, one step.
    assert cap_up(state, Decimal("0.10")) == Decimal("1.2")  # 0.4 + 0.1 + 0.7
    assert cap_up(BudgetState.of(budget), Decimal("0.10")) == Decimal("1.1")
    far = BudgetState.of(budget, "max_cost", Decimal("2.05"))
    assert cap_up(far, Decimal("0.10")) == Decimal("2.55")  # 0.4 + 0.1 + 2.05
    odd = BudgetState.of(budget, "max_cost", Decimal("0.7000001"))
    assert cap_up(odd, Decimal("0.10")) == Decimal("1.2001")  # never below what is needed


async def test_the_gauge_follows_the_budget_however_it_changes(make_app: MakeApp) -> None:
    """The agent's Budget changed by something other than the app's keys (a sub-agent, the
    agent itself) shows on the gauge: the state is read from the Budget on each change."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await until(pilot, lambda: app.main.ready, "the panels")
        agent.budget.set_cap(Decimal("3.25"))  # not through the app
        await until(pilot, lambda: app.main.gauge.state.cap == Decimal("3.25"), "the gauge")
        assert "cap $3.25" in app.main.gauge.text()
        hold = agent.budget.reserve(Decimal("0.5"), "held elsewhere")
        assert hold is not None
        await until(pilot, lambda: app.budget.in_flight == Decimal("0.5"), "the hold")
        assert "in flight $0.5000" in app.main.gauge.text()
        hold.release()
        await until(pilot, lambda: app.budget.in_flight == 0, "the release")


async def test_keys_faster_than_the_screen_each_move_the_cap(make_app: MakeApp) -> None:
    """Three F2 in the queue at once are three steps: each steps from the cap in force."""
    app = make_app()
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        for _ in range(3):
            app.post_message(events.Key("f2", None))
        await until(pilot, lambda: agent.budget.cap == Decimal("0.7"), "three steps down")
        await pilot.pause()
        assert app.budget.cap == app.main.gauge.state.cap == Decimal("0.7")


async def test_a_halt_at_the_cap_holds_until_the_cap_is_raised(make_app: MakeApp) -> None:
    """The halt is the agent's: lowering the cap keeps it, raising it ends it, and the gauge
    and the app's refusal to send follow the agent. F3 at a halt raises the cap to what the
    next call needs (the walk: halted at $0.05 with $0.1026 needed, F3 went to $0.20, the
    next step of the grid past it)."""
    app = make_app(max_cost_usd=Decimal("0.002"), budget_step_usd=Decimal("0.05"), tier="deep")
    async with app.run_test(size=(120, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "List the files here.")
        await idle(pilot)
        assert app.budget.at_cap and app.budget.needed_usd is not None
        await send(pilot, "/budget 0.0019")  # lower: still halted
        assert agent.snapshot().halt_reason == "max_cost" and app.budget.at_cap
        assert app.main.gauge.has_class("-halted")
        await send(pilot, "/budget 0.0021")  # raised, even if not enough: it may try again
        assert agent.snapshot().halt_reason is None
        assert not app.budget.at_cap and app.main.gauge.halted is None
        await send(pilot, "List the files here.")  # not enough: halted again
        await idle(pilot)
        needed = app.budget.needed_usd
        assert app.budget.at_cap and needed is not None
        enough = app.budget.settled + needed
        await pilot.press("f3")
        await pilot.pause()
        assert enough <= app.budget.cap < enough + Decimal("0.0001"), (enough, app.budget.cap)
        assert f"cap {fmt_cap(app.budget.cap)}" in app.main.gauge.text()
        assert not app.budget.at_cap
