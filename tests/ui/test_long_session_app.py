"""Pilot tests of long sessions in the app (issue 14): many messages, the context meter,
/turns, /compact and the resume picker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.app import idle, ready, send, until
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.screens.resume import ResumeScreen

MakeApp = Callable[..., TuiagentApp]
ROUND = (
    "What does README.md say?",
    "What does notes.txt say?",
    "Search for TODO",
    "List the files here.",
    "What is in data.csv?",
)


def records(app: TuiagentApp, kind: str) -> list[dict[str, Any]]:
    assert app.agent is not None
    lines = app.agent.log.path.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def last_answer(app: TuiagentApp) -> str:
    answers = app.main.chat.answers
    return answers[-1].text if answers else ""


async def test_sixty_messages_in_one_session_and_the_sixtieth_is_answered(
    make_app: MakeApp,
) -> None:
    app = make_app(max_turns=4)
    async with app.run_test(size=(80, 24)) as pilot:  # narrow: the side panels are off
        await ready(pilot)
        await pilot.press("f5")  # and the turns table: the test is about the agent's session
        for i in range(59):
            await send(pilot, ROUND[i % len(ROUND)])
            await idle(pilot)
        await send(pilot, "What did README.md say about Demo?")
        await idle(pilot)
        assert "README.md said about Demo: # Demo project" in last_answer(app)
        assert len(records(app, "user")) == 60
        assert app.agent is not None and app.agent.state.halt_reason is None
        # A history this small (a few thousand tokens) is never compacted: the summary
        # would save fractions of a cent and lose detail (issue 28).
        assert not [r for r in records(app, "context") if r["action"] == "compact"]
        meter = str(app.main.input.border_subtitle)
        assert meter.startswith("context ") and "/ 1,000,000 tok" in meter


async def test_turns_n_goes_on_with_a_request_halted_at_max_turns(make_app: MakeApp) -> None:
    app = make_app(max_turns=2)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "Read README.md and notes.txt")
        await idle(pilot)
        assert app.agent is not None and app.agent.state.halt_reason == "max_turns"
        assert "/turns N" in str(app.main.gauge.halted)
        await send(pilot, "/turns 6")
        await idle(pilot)
        assert app.agent.state.halt_reason is None and app.main.gauge.halted is None
        assert "notes.txt" in last_answer(app) and "README.md" in last_answer(app)


async def test_slash_compact_summarises_with_a_priced_call(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "What does README.md say?")
        await idle(pilot)
        await send(pilot, "/compact")
        await idle(pilot)
        (compact,) = records(app, "context")
        assert compact["action"] == "compact" and compact["cost_usd"] > 0
        assert app.agent is not None and len(app.agent.state.history) == 1


async def test_resume_without_an_id_opens_the_picker(
    make_app: MakeApp, log_dir: Path, tmp_path: Path
) -> None:
    first = make_app()
    async with first.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "What does notes.txt say?")
        await idle(pilot)
        assert first.agent is not None
        run_id = first.agent.state.run_id
    first.finish_run()
    second = make_app()
    second.pick_resume = True
    async with second.run_test() as pilot:
        await until(pilot, lambda: isinstance(second.screen, ResumeScreen), "the picker opened")
        assert isinstance(second.screen, ResumeScreen)
        (row,) = second.screen.sessions
        assert row.run_id == run_id and row.title == "What does notes.txt say?"
        assert row.turns == 2 and row.cost_usd > 0
        await pilot.press("enter")
        await ready(pilot)
        assert second.agent is not None and len(second.agent.state.history) == 4
