"""The --resume picker under a fast typist: what is typed while it is open is the user's
message (shown there, then waiting unsent in the chosen session's input), never a picker
command (n started a new session, j/k moved)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.events import Key
from textual.pilot import Pilot
from textual.widgets import DataTable, Label

from tests.support.app import ready, screen_text, until
from tests.support.session import collect, offline_session
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.screens.resume import ResumeScreen

MakeApp = Callable[..., TuiagentApp]
TYPED = "now just rerun the tests, keep [b]going[/b]"  # n, j, k: the old picker's keys


@pytest.fixture
def earlier(workspace: Path, log_dir: Path) -> list[str]:
    """Two finished sessions, by their first messages."""
    firsts = ["What does notes.txt say?", "What does README.md say?"]
    for first in firsts:
        session = offline_session(workspace, log_dir)
        asyncio.run(collect(session, first))
        session.agent.finish()
    return firsts


async def _picker(app: TuiagentApp, pilot: Pilot[Any]) -> ResumeScreen:
    await until(pilot, lambda: isinstance(app.screen, ResumeScreen), "the picker opened")
    assert isinstance(app.screen, ResumeScreen)
    return app.screen


def _users(app: TuiagentApp) -> list[str]:
    assert app.agent is not None
    lines = app.agent.log.path.read_text().splitlines()
    return [r["text"] for r in map(json.loads, lines) if r["type"] == "user"]


async def test_typing_at_the_picker_is_the_message_and_enter_reopens_the_highlighted_one(
    make_app: MakeApp, earlier: list[str]
) -> None:
    app = make_app()
    app.pick_resume = True
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await _picker(app, pilot)
        newest = picker.sessions[0]
        await pilot.press(*TYPED, "x", "backspace")
        assert app.screen is picker  # no key of the message chose a session
        assert picker.query_one(DataTable).cursor_row == 0  # nor moved the cursor
        assert picker.draft == TYPED
        draft = picker.query_one("#draft", Label)
        assert draft.display and "your message: now just rerun the tests" in screen_text(app)
        assert "keep [b]going[/b]" in screen_text(app)  # shown as typed, not as markup
        await pilot.press("enter")
        await ready(pilot)
        assert app.resume == newest.transcript
        assert app.main.input.text == TYPED  # waiting, unsent
        assert app.main.input.cursor_location == app.main.input.document.end
        assert _users(app) == []  # nothing was sent in the reopened session
        assert app.agent is not None and app.agent.resumed_from == newest.run_id


async def test_escape_starts_a_new_session_with_the_message_in_its_input(
    make_app: MakeApp, earlier: list[str]
) -> None:
    app = make_app()
    app.pick_resume = True
    async with app.run_test() as pilot:
        picker = await _picker(app, pilot)
        await pilot.press("down")  # the arrows still move
        assert picker.query_one(DataTable).cursor_row == 1
        await pilot.press("n", "o", "space", "j", "k")
        assert app.screen is picker
        await pilot.press("escape")
        await ready(pilot)
        assert app.resume is None and app.agent is not None and app.agent.resumed_from is None
        assert app.main.input.text == "no jk"


async def test_text_in_the_input_when_the_picker_opens_is_kept_and_the_arrows_choose(
    make_app: MakeApp, earlier: list[str]
) -> None:
    app = make_app()
    app.pick_resume = True
    shown = app._screen_ready

    def typed_first() -> None:  # keys that reached the input before the picker showed
        app.main.input.load_text("typed before it showed, ")
        shown()

    app.main.on_ready = typed_first
    async with app.run_test() as pilot:
        picker = await _picker(app, pilot)
        assert picker.draft == "typed before it showed, " and app.main.input.text == ""
        await pilot.press("y", "e", "s", "down", "enter")
        await ready(pilot)
        assert app.resume == picker.sessions[1].transcript
        assert app.main.input.text == "typed before it showed, yes"
        assert app.agent is not None and app.agent.resumed_from == picker.sessions[1].run_id


async def test_keys_typed_before_the_input_had_the_focus_start_the_message(
    make_app: MakeApp,
) -> None:
    """Textual gives a key that comes with nothing focused (as the app starts) to the screen;
    there it was dropped: `tuiagent` typed and then a message at once lost its first letters."""
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        for c in "hi there":
            # What Textual does with a key when nothing has the focus (App.on_event).
            app.main._forward_event(Key(c if c != " " else "space", c))
        await pilot.press("!")
        assert app.main.input.text == "hi there!"
        await pilot.press("shift+tab")  # the chat log: keys there stay its own
        assert app.focused is not app.main.input
        app.main._forward_event(Key("x", "x"))
        await pilot.pause()
        assert app.main.input.text == "hi there!"
