"""Defects found by using the app in a real terminal (tmux, 160x48 and 80x24) for a while:
each test fails without its fix."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Tab

from tests.support.app import idle, ready, screen_text, send, until
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.screens.dialogs import ApproveScreen
from tuiagent.ui.screens.report import ReportScreen
from tuiagent.ui.widgets.entries import ChatNotice
from tuiagent.ui.widgets.tools import ToolResultsPanel

MakeApp = Callable[..., TuiagentApp]


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
async def test_the_approval_dialog_leaves_the_screen_beneath_where_it_was(
    make_app: MakeApp, size: tuple[int, int]
) -> None:
    """The gauge stays on the top rows and the footer on the last while the agent asks to
    write a file (the screen's own padding shifted everything beneath the dialog two rows
    down: a blank top, no footer); and the hint's last words are not cut off."""
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await send(pilot, "write todo.md: # Todo")
        await until(pilot, lambda: isinstance(app.screen, ApproveScreen), "the dialog")
        await pilot.pause()
        rows = screen_text(app).splitlines()
        assert "OFFLINE - simulated model" in rows[0]
        assert "spent $" in rows[1]
        assert "^p" in rows[-1]  # the footer, with the palette's key
        assert "Esc: no" in screen_text(app)


async def test_a_tool_line_at_80_columns_cuts_its_arguments_not_its_outcome(
    make_app: MakeApp, workspace: Path
) -> None:
    """At 80x24 a call with long arguments showed `... 83 -> 83 to`: the sizes and `ok`
    fell off the edge. The arguments give way instead."""
    folder = workspace / "a_rather_long_folder_name"
    folder.mkdir()
    (folder / "with_a_long_file_name_too.txt").write_text("hello\n")
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "read a_rather_long_folder_name/with_a_long_file_name_too.txt")
        await idle(pilot)
        (line,) = (row for row in screen_text(app).splitlines() if "read_file" in row)
        assert line.rstrip().endswith(" tok  ok"), line
        assert "…" in line


async def test_each_tool_result_is_one_row_of_its_panel(make_app: MakeApp) -> None:
    """`t13 expand_result ok  370 -> 370 tok` wrapped its method, `none`, onto a row of its
    own: a result sent whole names no method, and a row too long ends in `…`."""
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        await send(pilot, "Read data.csv")
        await idle(pilot)
        await send(pilot, "expand r1 lines 100-300")
        await idle(pilot)
        panel = app.main.query_one(ToolResultsPanel)
        assert len(panel.results) == 2
        assert panel.virtual_size.height == 2  # a row each
        assert not panel.results[1].summary().endswith("none")


@pytest.mark.parametrize("cleared", [False, True], ids=["goes-on", "after-clear"])
async def test_a_request_the_cap_halts_midway_goes_on_once_the_cap_is_raised(
    make_app: MakeApp, workspace: Path, cleared: bool
) -> None:
    """Halted after its first call ("Raise the cap (F3 or /budget) to go on"), F3 raised the
    cap and nothing went on: the request's tool result never reached the model, and no key
    was left to go on with (F6 is for max_turns). Raised, it goes on now. After /clear the
    request is gone with its conversation: F3 only raises the cap (it went on with an empty
    conversation, and that failed: an error)."""
    app = make_app(budget_step_usd=Decimal("0.05"))
    async with app.run_test(size=(120, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "write todo.md: # Todo")
        await until(pilot, lambda: isinstance(app.screen, ApproveScreen), "the dialog")
        agent.set_cap(agent.spending.spent + Decimal("0.0001"))  # the next call cannot fit
        await pilot.press("y")
        await idle(pilot)
        assert agent.state.halt_reason == "max_cost" and app.main.input.text == ""
        assert (workspace / "todo.md").read_text() == "# Todo"
        if cleared:
            await send(pilot, "/clear")
            await idle(pilot)
        turns = agent.state.turns
        await pilot.press("f3")
        await idle(pilot)
        if cleared:
            assert agent.state.turns == turns and agent.state.halt_reason != "error"
        else:
            assert agent.state.turns > turns and agent.state.halt_reason is None
            assert "wrote todo.md" in app.main.chat.answers[-1].text


async def halt_at_max_turns(pilot: Pilot[None]) -> None:
    """A request halted after its one allowed model call (/turns 1)."""
    await ready(pilot)
    await send(pilot, "/turns 1")
    await send(pilot, "What do notes.txt and README.md say?")
    await idle(pilot)


async def test_a_halt_at_max_turns_names_both_ways_on_in_words(make_app: MakeApp) -> None:
    """It said `used its 1 model calls` and only `/turns N`, while the gauge said F6."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await halt_at_max_turns(pilot)
        notice = "\n".join(e.text for e in app.main.chat.entries if isinstance(e, ChatNotice))
        assert "this request used its 1 model call (max_turns)" in notice, notice
        assert "F6 goes on with as many calls again" in notice, notice
        await pilot.press("f6")
        await idle(pilot)
        assert "README.md" in app.main.chat.answers[-1].text


async def test_a_bell_in_a_file_shows_as_its_stand_in(make_app: MakeApp, workspace: Path) -> None:
    """Rich and Textual drop BEL, BS, VT and FF: `␛]52;c;...␇` showed as `␛]52;c;...`,
    the file's bytes hidden (docs/security.md says ␇, as the CLI shows it)."""
    (workspace / "bell.txt").write_text("ring\x07bell \x1b]0;TITLE\x07 back\x08space\n")
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        await send(pilot, "read bell.txt")
        await idle(pilot)
        shown = screen_text(app)
    assert "ring␇bell ␛]0;TITLE␇ back␈space" in shown


async def test_the_80_column_footer_holds_every_key_while_f6_shows(make_app: MakeApp) -> None:
    """Halted at max_turns, F6 joined the footer and pushed "Report" off it ("f8 Repor")."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await halt_at_max_turns(pilot)
        await pilot.pause()
        footer = screen_text(app).splitlines()[-1]
        assert "f6 Go on" in footer and "f8 Report" in footer and "^p palette" in footer
        await send(pilot, "/turns 20")  # goes on, to the answer
        await idle(pilot)
        await pilot.pause()
        footer = screen_text(app).splitlines()[-1]
        assert "esc Stop" in footer and "f6" not in footer


async def test_the_keys_panel_lists_no_key_of_the_input_that_the_app_takes(
    make_app: MakeApp,
) -> None:
    """ctrl+p, "Keys": the list had the input's own `f6 Select line` beside the app's F6
    (Go on at max_turns), one key with two meanings by turns. F6 is the app's alone: listed
    as Go on while a request waits at max_turns, else not at all."""
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"keys", "enter")
        await until(pilot, lambda: "Select all" in screen_text(app), "the Keys panel")
        shown = screen_text(app)
        # (a word of its own: the run id on the title bar may hold "f6", as in "-f6e249")
        assert "Select line" not in shown and not re.search(r"\bf6\b", shown), shown
        await halt_at_max_turns(pilot)
        await pilot.pause()
        shown = screen_text(app)
        assert "Select line" not in shown and "Go on" in shown, shown
        assert app.screen.active_bindings["f6"].binding.action == "go_on"


async def test_the_report_at_80_columns_shows_every_tab_and_no_key_that_does_nothing(
    make_app: MakeApp,
) -> None:
    """F8 at 80x24: the last tab read "Experimen", and the footer offered F5 (the main
    screen's panels: nothing happens on the report) and F8 (a second report over it)."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "List the files here.")
        await idle(pilot)
        await pilot.press("f8")
        await until(pilot, lambda: isinstance(app.screen, ReportScreen), "the report")
        await pilot.pause()
        lines = screen_text(app).splitlines()
        tabs = next(line for line in lines if "Chart" in line and "Runs" in line)
        labels = [str(tab.label) for tab in app.screen.query(Tab)]
        assert all(label in tabs for label in labels), (labels, tabs)
        assert "f5" not in lines[-1] and "f8" not in lines[-1], lines[-1]
        assert "esc Close" in lines[-1], lines[-1]
        await pilot.press("f5", "f8")  # nothing, and nothing changes beneath
        await pilot.pause()
        assert len(app.screen_stack) == 2
        await pilot.press("ctrl+p", *"report")  # nor in the palette over it
        await pilot.pause()
        assert "Cost report" not in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ReportScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main and app.main.ready
