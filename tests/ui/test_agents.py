"""The app with sub-agents: the agents panel live, their turns in the table, the gauge the
whole session's, Escape stops them all."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from textual.widgets import Static

from tests.support.app import idle, ready, send, until
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.widgets.agents import AgentsPanel
from tuiagent.ui.widgets.turns import TurnsTable

MakeApp = Callable[..., TuiagentApp]
PROMPT = "Summarize README.md, notes.txt and data.csv in parallel"


def _records(app: TuiagentApp) -> list[dict[str, Any]]:
    assert app.agent is not None
    return [json.loads(line) for line in app.agent.log.path.read_text().splitlines()]


def _states(app: TuiagentApp) -> dict[str, str]:
    panels = app.main.query(AgentsPanel)
    return {a: e.state for a, e in panels.first().agents.items()} if panels else {}


async def test_sub_agents_show_live_and_their_turns_join_the_table(make_app: MakeApp) -> None:
    app = make_app(offline_tokens_per_second=30.0)
    async with app.run_test(size=(160, 48)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, PROMPT)
        seen_running: set[str] = set()

        def live() -> bool:
            seen_running.update(a for a, s in _states(app).items() if s == "running")
            return len(seen_running) == 3

        await until(pilot, live, "each of the three sub-agents shown running")
        await idle(pilot)
        assert _states(app) == {"a1": "completed", "a2": "completed", "a3": "completed"}
        panel = app.main.query_one(AgentsPanel)
        shown = str(panel.render())
        assert "Summarize notes.txt" in shown and "fast" in shown
        assert shown.count(" 2 turns") == 3  # each read a file and answered
        table = app.main.query_one(TurnsTable)
        turns = [r for r in _records(app) if r["type"] == "turn"]
        assert table.row_count == len(turns) == agent.state.turns + 6
        labels = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert "  a2·1" in labels and "  a3·2" in labels
        # The gauge is the whole session's: the orchestrator and every sub-agent.
        assert app.main.gauge.state.settled == agent.spending.spent == agent.budget.settled


async def test_escape_stops_every_sub_agent(make_app: MakeApp) -> None:
    app = make_app(offline_tokens_per_second=30.0)
    async with app.run_test(size=(160, 48)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, PROMPT)
        await until(
            pilot,
            lambda: list(_states(app).values()).count("running") == 3,
            "three sub-agents running",
        )
        await pilot.press("escape")
        await idle(pilot)
        ended = {r["agent"]: r["status"] for r in _records(app) if r["type"] == "agent"}
        assert ended == {"a1": "interrupted", "a2": "interrupted", "a3": "interrupted"}
        assert set(_states(app).values()) == {"interrupted"}
        assert agent.budget.in_flight == 0
        assert app.main.gauge.state.settled == agent.spending.spent > 0


async def test_the_narrow_layout_says_how_many_sub_agents_run(make_app: MakeApp) -> None:
    """At 80x24 the panels are hidden: the status line counts the running sub-agents."""
    app = make_app(offline_tokens_per_second=30.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, PROMPT)

        def line() -> str:
            return str(app.main.query_one("#statusline", Static).render())

        await until(pilot, lambda: "3 sub-agents running" in line(), "the count on the line")
        await idle(pilot)
        assert "running" not in line() and "fast haiku-5-5" in line()


async def test_below_120_columns_f5_reaches_the_agents_panel(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await send(pilot, PROMPT)
        await idle(pilot)
        seen = []
        for _ in range(6):  # panels, router, cache, tools, agents, chat
            await pilot.press("f5")
            seen.append(app.main.view)
        assert seen == ["router", "cache", "tools", "agents", "chat", "panels"]
        await pilot.press("f5", "f5", "f5", "f5")
        panel = app.main.query_one(AgentsPanel)
        assert app.main.view == "agents" and panel.region.height > 2
        shown = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert "Summarize notes.txt" in shown
