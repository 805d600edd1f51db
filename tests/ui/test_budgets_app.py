"""The app's gauge shows the session's cap and the tightest `[[budgets]]` budget beside it."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from tests.support.app import idle, ready, send
from tuiagent.ledger import BudgetSpec, Window
from tuiagent.ui.app import TuiagentApp

MakeApp = Callable[..., TuiagentApp]


async def test_the_gauge_shows_the_tightest_budget_beside_the_cap(make_app: MakeApp) -> None:
    budgets = (
        BudgetSpec("global", Window.parse("day"), Decimal("0.50")),
        BudgetSpec("session", Window.parse("run"), Decimal("5")),
    )
    app = make_app(budgets=budgets)
    async with app.run_test(size=(160, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "List the files here.")
        await idle(pilot)
        spent = agent.spending.spent
        assert spent > 0
        text = app.main.gauge.text()
        assert f"today ${spent:.4f} / $0.50" in text, text
        assert text.index("cap $1.00") < text.index("today")
