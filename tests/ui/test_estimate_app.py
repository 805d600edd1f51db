"""The estimate under the input: shown after a pause in typing, from the core's figures,
and nothing is sent or billed for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.widgets import Static

from tests.support.app import ready, until
from tuiagent.ui.app import TuiagentApp


def shown(app: TuiagentApp) -> str:
    return str(app.main.query_one("#estimate", Static).render())


async def test_typing_shows_the_estimate_and_sends_nothing(
    make_app: Callable[..., TuiagentApp],
) -> None:
    app = make_app(tier="fast")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        agent: Any = app.agent
        app.main.input.focus()
        await pilot.press(*"List the files here.")
        await until(pilot, lambda: "first call $" in shown(app), "the estimate shown")
        line = shown(app)
        expected = (await agent.estimate("List the files here.")).short()
        assert line == expected
        assert "no earlier messages here" in line  # the first message of a new workspace
        assert agent.spending.spent == 0 and agent.state.turns == 0
        assert agent.budget.in_flight == 0
        # After one message, the range is drawn from it.
        await pilot.press("enter")
        await until(pilot, lambda: agent.state.turns >= 2 and not app.busy, "answered")
        assert shown(app) == ""
        await pilot.press(*"List the files here.")
        await until(pilot, lambda: "p50-p90 of 1)" in shown(app), "a range from 1 message")
        spent = agent.spending.spent
        await pilot.pause(0.5)
        assert agent.spending.spent == spent  # the estimate bills nothing
