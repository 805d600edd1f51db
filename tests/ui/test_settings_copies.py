"""The app changes its settings by copies (issue 13): what the user sets while the session is
still opening (the agent is built off the UI thread from the settings as they were) is what
the agent then runs with."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

import tuiagent.session
from tests.support.app import until
from tuiagent.ui.app import TuiagentApp


async def test_a_cap_tier_and_turns_set_while_the_session_opens_reach_the_agent(
    make_app: Callable[..., TuiagentApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    called, opened = threading.Event(), threading.Event()
    real_open = tuiagent.session.open_session

    def open_late(*args: Any, **kwargs: Any) -> tuiagent.session.Session:
        called.set()  # with the settings as they are now
        opened.wait(10)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(tuiagent.session, "open_session", open_late)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, called.is_set, "the worker opening the session")
        assert app.agent is None
        before = app.settings
        app.set_cap(Decimal("2.50"))
        app.set_tier("deep")
        app.action_turns("7")
        assert before.run.max_cost_usd == Decimal("1.00")  # a copy, not the same object changed
        opened.set()
        await until(pilot, lambda: app.agent is not None, "the session")
        agent = app.agent
        assert agent is not None
        assert agent.budget.cap == Decimal("2.50")
        now = agent.snapshot()
        assert (now.tier, now.max_turns) == ("deep", 7)
