"""Pilot tests: every key, every slash command, the halt at the cap, approval, themes, resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.app import idle, ready, send, until
from tuiagent.config import load_settings
from tuiagent.errors import ConfigError
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.commands import check_keymap
from tuiagent.ui.screens.dialogs import ApproveScreen, ViewerScreen
from tuiagent.ui.widgets.entries import AnswerBlock, ChatNotice, Said, ToolBlock
from tuiagent.ui.widgets.tools import ToolResultsPanel
from tuiagent.ui.widgets.turns import TurnsTable

MakeApp = Callable[..., TuiagentApp]


def log_records(app: TuiagentApp) -> list[dict[str, Any]]:
    assert app.agent is not None
    return [json.loads(line) for line in app.agent.log.path.read_text().splitlines()]


def answers(app: TuiagentApp) -> str:
    return "\n".join(a.text for a in app.main.chat.answers)


def notices(app: TuiagentApp) -> str:
    return "\n".join(e.text for e in app.main.chat.entries if isinstance(e, ChatNotice))


def said(app: TuiagentApp) -> list[str]:
    return [e.text for e in app.main.chat.entries if isinstance(e, Said)]


def toasts(app: TuiagentApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


async def test_a_message_streams_and_the_panels_show_its_cost(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app.main.has_class("-offline")
        await send(pilot, "List the files here.")
        await idle(pilot)
        agent = app.agent
        assert agent is not None
        assert "README.md" in answers(app) and "notes.txt" in answers(app)
        assert said(app) == ["List the files here."]
        (tool,) = (e for e in app.main.chat.entries if isinstance(e, ToolBlock))
        assert "list_dir" in tool.title and "ok" in tool.title
        table = app.main.query_one(TurnsTable)
        assert table.row_count == agent.state.turns == 2
        assert app.main.gauge.state.settled == agent.spending.spent > 0
        assert len(app.main.query_one(ToolResultsPanel).results) == 1
        kinds = [r["type"] for r in log_records(app)]
        assert kinds[:2] == ["run_start", "user"] and kinds.count("turn") == 2


async def test_f3_raises_and_f2_lowers_the_cap_by_the_step(make_app: MakeApp) -> None:
    app = make_app(budget_step_usd=Decimal("0.25"))
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await pilot.press("f3")
        assert agent.budget.cap == app.main.gauge.state.cap == Decimal("1.25")
        await pilot.press("f2", "f2")
        assert agent.budget.cap == Decimal("0.75")
        caps = []
        for _ in range(6):  # below the step, F2 goes on in steps of the cap's own size
            await pilot.press("f2")
            caps.append(agent.budget.cap)
        assert caps == [Decimal(c) for c in ("0.5", "0.25", "0.2", "0.1", "0.09", "0.08")]
        assert "cap $0.08" in app.main.gauge.text()


async def test_f3_after_a_small_budget_steps_by_the_caps_size(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "/budget 0.019")
        await pilot.press("f3")
        assert agent.budget.cap == Decimal("0.02")
        await pilot.press("f2", "f2")
        assert agent.budget.cap == Decimal("0.009")
        await send(pilot, "/budget 0.0001")
        app.clear_notifications()
        await pilot.press("f2")
        assert agent.budget.cap == Decimal("0.0001")
        assert "F2 goes no lower than $0.0001" in toasts(app)


async def test_f2_never_lowers_the_cap_below_what_is_spent(make_app: MakeApp) -> None:
    app = make_app(budget_step_usd=Decimal("0.00005"), max_cost_usd=Decimal("0.0004"))
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "List the files here.")
        await idle(pilot)
        spent = agent.spending.spent
        assert spent > Decimal("0.00005")  # more than one step: the floor is what is spent
        await pilot.press(*["f2"] * 12)
        assert agent.budget.cap == spent
        assert "cannot go below what is spent" in toasts(app)  # it says why


async def test_f4_cycles_the_tier(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        seen = []
        for _ in range(4):
            await pilot.press("f4")
            seen.append(agent.steering.tier)
            assert str(app.main.query_one("#tier-label").content) == f"tier {agent.steering.tier}"
        assert seen == ["fast", "balanced", "deep", "auto"]
        await pilot.press("f4")
        await send(pilot, "List the files here.")
        await idle(pilot)
        assert {r["tier"] for r in log_records(app) if r["type"] == "turn"} == {"fast"}


async def test_escape_stops_a_streaming_answer_and_its_cost_counts(make_app: MakeApp) -> None:
    app = make_app(offline_tokens_per_second=40.0)
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "List the files here.")
        await until(pilot, lambda: bool(answers(app).strip()), "some text streamed")
        await pilot.press("escape")
        await idle(pilot)
        assert agent.state.halt_reason == "interrupted"
        stopped = [r for r in log_records(app) if r.get("stop_reason") == "interrupted"]
        assert len(stopped) == 1 and stopped[0]["output_tokens"] > 0
        assert agent.spending.spent > 0 and app.main.gauge.state.settled == agent.spending.spent
        assert answers(app).strip()  # what streamed stays
        await pilot.pause(0.1)
        chat = app.main.chat.entries  # the notice comes under what streamed
        last_answer = max(i for i, e in enumerate(chat) if isinstance(e, AnswerBlock) and e.text)
        stop = next(
            i for i, e in enumerate(chat) if isinstance(e, ChatNotice) and "interrupted" in e.text
        )
        assert stop > last_answer
        table = app.main.query_one(TurnsTable)
        assert table.get_row_at(table.row_count - 1)[-1] == "stopped"


async def test_ctrl_q_quits_and_ends_the_run(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        path = app.agent.log.path if app.agent else None
        await pilot.press("ctrl+q")
    assert path is not None
    end = json.loads(path.read_text().splitlines()[-1])
    assert end["type"] == "run_end" and end["status"] == "completed"


async def test_f5_hides_and_shows_the_side_panels(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        side = app.main.query_one("#side")
        assert side.display
        await pilot.press("f5")
        assert not side.display and not app.main.query_one("#turns").display
        await pilot.press("f5")
        assert side.display


async def test_the_side_panels_leave_a_narrow_terminal(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(80, 30)) as pilot:
        await ready(pilot)
        assert not app.main.query_one("#side").display


async def test_keys_are_remapped_by_the_keymap(make_app: MakeApp) -> None:
    app = make_app(keymap={"cap_up": "f9", "cycle_tier": "f10"})
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await pilot.press("f3", "f4")
        assert agent.budget.cap == Decimal("1.00") and agent.steering.tier == "auto"
        await pilot.press("f9", "f10")
        assert agent.budget.cap == Decimal("1.10") and agent.steering.tier == "fast"


async def test_the_hints_on_screen_name_the_remapped_keys(make_app: MakeApp) -> None:
    app = make_app(
        keymap={"cap_up": "f9", "interrupt": "ctrl+x"}, max_cost_usd=Decimal("0.002"), tier="deep"
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert "Enter sends · F9/F2 cap up/down" in notices(app)
        assert "ctrl+x stops" in notices(app)
        await send(pilot, "List the files here.")
        await idle(pilot)  # halted at the cap: the hint names F9, not F3
        assert "Raise the cap (F9 or /budget)" in notices(app) and "F3" not in notices(app)
        assert app.main.gauge.halted == "F9 or /budget to go on"


def test_a_bad_keymap_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[keymap]\nraise_cap = "f9"\n')
    keymap = load_settings(config).ui.keymap  # the ids are the app's commands: it checks them
    with pytest.raises(ConfigError, match=r"'keymap\.raise_cap' \(known: cap_down, cap_up,"):
        check_keymap(keymap)
    config.write_text("[keymap]\ncap_up = 3\n")
    with pytest.raises(ConfigError, match=r"keymap\.cap_up"):
        load_settings(config)


async def test_actions_are_in_the_command_palette(make_app: MakeApp) -> None:
    from textual.command import CommandPalette
    from textual.widgets import OptionList

    app = make_app()
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        palette = app.screen
        options = palette.query_one(OptionList)

        def shown() -> str:
            return " ".join(
                str(options.get_option_at_index(i).prompt) for i in range(options.option_count)
            )

        await until(pilot, lambda: "Raise the cap" in shown(), "the table's commands listed")
        for title in (
            "Lower the cap",
            "Cycle the tier",
            "Stop the turn",
            "Help: commands and keys",
        ):
            assert title in shown()
        assert "Go on" not in shown()  # only while a request is halted at max_turns
        await pilot.press(*"raise the cap")
        await until(pilot, lambda: options.option_count > 0 and "Raise" in shown(), "a hit")
        await pilot.press("down", "enter")
        await until(pilot, lambda: agent.snapshot().budget.cap == Decimal("1.10"), "cap raised")


# --- slash commands ---------------------------------------------------------------


async def test_slash_budget_sets_the_cap_and_rejects_nonsense(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "/budget 2.50")
        assert agent.budget.cap == Decimal("2.50") == app.main.gauge.state.cap
        await send(pilot, "/budget lots")
        assert agent.budget.cap == Decimal("2.50")
        assert "/budget must be a positive number" in toasts(app)
        assert not said(app)  # commands are not sent to the model


async def test_slash_tier_pins_a_tier(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "/tier fast")
        assert agent.steering.tier == "fast"
        await send(pilot, "/tier cheapest")
        assert agent.steering.tier == "fast" and "/tier must be one of" in toasts(app)


async def test_slash_clear_starts_a_new_conversation(make_app: MakeApp) -> None:
    from tuiagent.runs.transcript import load_requests

    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "List the files here.")
        await idle(pilot)
        await send(pilot, "/clear")
        await pilot.pause()
        assert not app.main.chat.answers and not said(app)
        assert "new conversation: the next request has no earlier messages" in notices(app)
        spent = app.main.gauge.state.settled
        await send(pilot, "What does README.md say?")
        await idle(pilot)
        assert app.agent is not None
        requests = load_requests(app.agent.transcript.path)
        sent = requests[-1]["request"]["messages"]
        assert sent[0]["content"][0]["text"] == "What does README.md say?"
        assert "List the files" not in json.dumps(sent)
        assert app.main.gauge.state.settled > spent  # the same budget goes on


async def test_slash_system_shows_the_prompt_its_size_and_cost(make_app: MakeApp) -> None:
    app = make_app(system_prompt="Answer in haiku. Count every syllable.")
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "/system")
        await pilot.pause()
        text = answers(app)
        assert "Answer in haiku. Count every syllable." in notices(app)  # exact, wrapped
        assert "config `system_prompt`" in text and "tokens" in text
        assert "per turn on claude-sonnet-5-5" in text and "when cached" in text


async def test_slash_help_and_unknown_commands(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "/help")
        await pilot.pause()
        assert "/budget" in answers(app) and "f3" in answers(app)
        await send(pilot, "/frobnicate")
        assert "unknown command /frobnicate" in toasts(app)


# --- the cap ------------------------------------------------------------------------


async def test_the_session_halts_at_the_cap_until_it_is_raised(make_app: MakeApp) -> None:
    app = make_app(max_cost_usd=Decimal("0.002"), budget_step_usd=Decimal("0.05"), tier="deep")
    async with app.run_test(size=(120, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "List the files here.")
        await idle(pilot)
        assert agent.state.halt_reason == "max_cost"
        assert app.main.gauge.halted and app.main.gauge.has_class("-halted")
        assert "halted" in notices(app)
        users = sum(r["type"] == "user" for r in log_records(app))
        await send(pilot, "Read notes.txt")
        await idle(pilot)
        assert app.main.input.text == "Read notes.txt"  # kept, not sent
        assert sum(r["type"] == "user" for r in log_records(app)) == users
        assert "the next call needs up to $0.0" in notices(app)  # what is left and needed
        needed = app.budget.needed_usd
        assert needed is not None and needed > agent.budget.cap - agent.spending.spent
        turns = agent.state.turns
        await pilot.press("f3")  # halted: F3 goes up to what the next call needs
        assert app.main.gauge.halted is None
        assert agent.budget.cap >= agent.spending.spent + needed
        await pilot.press("enter")
        await idle(pilot)
        assert sum(r["type"] == "user" for r in log_records(app)) == users + 1
        assert agent.state.turns > turns and "Let me read notes.txt" in answers(app)


# --- the input ----------------------------------------------------------------------


async def test_input_newlines_and_history(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        box = app.main.input
        await pilot.press("a", "ctrl+j", "b")
        assert box.text == "a\nb"
        await pilot.press("enter")
        await idle(pilot)
        assert box.text == ""
        await send(pilot, "/tier fast")
        await pilot.press("up")
        assert box.text == "/tier fast"
        await pilot.press("up")
        assert box.text == "a\nb"
        await pilot.press("down", "down")
        assert box.text == ""


# --- approval, the viewer -------------------------------------------------------------


async def test_approval_waits_for_yes_or_no(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None and agent.approve is not None
        for key, expected in (("y", True), ("n", False), ("escape", False)):
            task = asyncio.ensure_future(agent.approve("run_command", {"command": "ls"}))
            await until(pilot, lambda: isinstance(app.screen, ApproveScreen), "the dialog")
            assert not task.done()
            await pilot.press(key)
            assert await task is expected


async def test_a_tool_result_opens_in_the_viewer(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "Read data.csv")
        await idle(pilot)
        panel = app.main.query_one(ToolResultsPanel)
        panel.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ViewerScreen), "the viewer")
        assert isinstance(app.screen, ViewerScreen)
        assert "399,159201" in app.screen.result.original
        await pilot.press("escape")
        assert not isinstance(app.screen, ViewerScreen)


# --- themes, resume ----------------------------------------------------------------------


async def test_themes_load_and_the_choice_is_remembered(make_app: MakeApp, tmp_path: Path) -> None:
    user = tmp_path / "user-themes"
    user.mkdir()
    (user / "mine.toml").write_text('name = "mine"\nprimary = "#ff00aa"\n')
    (user / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        assert {"ledger-dark", "ledger-light", "mine"} <= set(app.available_themes)
        assert app.theme == "ledger-dark"
        assert "broken.toml: key 'primary' must be a colour" in toasts(app)
        app.theme = "mine"
        await pilot.pause()
    again = make_app()
    async with again.run_test() as pilot:
        await ready(pilot)
        assert again.theme == "mine"


async def test_resume_reopens_a_run(make_app: MakeApp, log_dir: Path) -> None:
    first = make_app()
    async with first.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "List the files here.")
        await idle(pilot)
        run_id = first.agent.state.run_id if first.agent else ""
        history = list(first.agent.state.history) if first.agent else []
        await pilot.press("ctrl+q")
    from tuiagent.runs.recent import find_resume

    path = find_resume(log_dir, "")
    assert path.stem == run_id
    second = make_app(resume=path)
    async with second.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None and agent.state.history == history
        assert said(second) == ["List the files here."]
        assert f"resumed run {run_id}" in notices(second)
        await send(pilot, "Read notes.txt")
        await idle(pilot)
        assert "alpha" in answers(second)


async def test_a_long_streamed_answer_is_kept_whole_across_its_blocks(
    make_app: MakeApp,
) -> None:
    paragraph = "Every token the model reads is paid for, so the panel shows it.\n\n"
    fence = "```text\n" + "a line of code\n\n" * 40 + "```\n\n"
    text = paragraph * 60 + fence + paragraph * 60 + "The end, mid-paragraph"
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        for i, word in enumerate(text.split(" ")):  # as the stream hands them over
            app.main.chat.feed(word + " ")
            if i % 150 == 0:
                await pilot.pause(0.06)  # a frame or more: a part of it goes on screen
        app.main.chat.close_answer()
        await pilot.pause()
        (answer,) = app.main.chat.answers
        blocks = answer.blocks
        assert len(blocks) >= 100  # a block per paragraph: never one huge one redrawn
        assert answer.text.split() == text.split()  # every word, in order
        # A fence is cut only into its pieces (each drawn as the whole: test_entries.py).
        pieces = [b for b in blocks if b.fence is not None and len(b.fence.pieces) > 1]
        assert all(b.text.count("```") % 2 == 0 for b in blocks if b not in pieces)
        assert len(pieces) >= 2  # it streamed: cut as it grew (what came at once was not)
        assert max(len(b.text) for b in blocks) <= len(fence)
        assert "The end, mid-paragraph" in screen_text(app)


async def test_blocks_out_of_view_are_drawn_as_markdown_when_scrolled_to(
    make_app: MakeApp,
) -> None:
    paragraph = "Every token the model reads is **paid for**, so the panel shows it.\n\n"
    text = "# The first heading\n\n" + paragraph * 300 + "The end."
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.main.chat.feed(text)  # a long answer at once, as a fast stream hands it over
        app.main.chat.close_answer()
        await pilot.pause()
        chat = app.main.chat
        (answer,) = chat.answers
        blocks = answer.blocks
        assert len(blocks) >= 300
        assert not blocks[0].drawn  # out of view: never parsed nor rendered
        assert sum(b.drawn for b in blocks) < 40  # only what the screen shows
        assert blocks[-1].drawn  # in view at the end of the chat
        assert "The end." in screen_text(app)
        chat.scroll_home(animate=False)
        await until(pilot, lambda: blocks[0].drawn, "the first block was drawn")
        await pilot.pause()
        shown = screen_text(app)
        assert "The first heading" in shown and "paid for, so" in shown  # Markdown: no ** or #
        assert "**" not in shown and "# The" not in shown
        chat.scroll_end(animate=False)
        await pilot.pause()
        assert "The end." in screen_text(app)


def screen_text(app: TuiagentApp) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def test_f8_opens_the_report_of_this_session(make_app: MakeApp) -> None:
    from tuiagent.ui.screens.report import ReportScreen

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "List the files here.")
        await idle(pilot)
        await pilot.press("f8")
        await pilot.pause()
        assert isinstance(app.screen, ReportScreen)
        runs = {r.run_id: r for r in app.screen.report.runs}
        assert runs[agent.state.run_id].ended == "live"  # this session: still running
        assert app.screen.report.total_cost == agent.spending.spent
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ReportScreen)
