"""The app as a user meets it (issue 15): exact text, a chat that follows, the budget from the
first frame, aligned columns, halts that say what is needed, one notice per failure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
from textual.pilot import Pilot

from tests.support.app import idle, ready, send, until
from tests.support.loopback import FaultyModel
from tuiagent.llm.tokens import TokenUsage
from tuiagent.offline import OfflineModel
from tuiagent.runs.records import ToolCall, Turn
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.widgets.chat import ChatLog
from tuiagent.ui.widgets.entries import ChatNotice, Said, ToolBlock
from tuiagent.ui.widgets.turns import TurnsTable

MakeApp = Callable[..., TuiagentApp]


def notices(app: TuiagentApp) -> list[str]:
    return [e.text for e in app.main.chat.entries if isinstance(e, ChatNotice)]


def answers(app: TuiagentApp) -> list[str]:
    return [a.text for a in app.main.chat.answers]


def tool_calls(app: TuiagentApp) -> list[ToolBlock]:
    return [e for e in app.main.chat.entries if isinstance(e, ToolBlock)]


def screen_text(pilot: Pilot[Any]) -> str:
    """What the terminal shows, as text."""
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())


async def no_sleep(seconds: float) -> None:
    return None


async def test_an_expanded_tool_block_shows_the_file_exactly(
    make_app: MakeApp, workspace: Path
) -> None:
    (workspace / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\n[project]\nname = "x"  # limit)\n[b]bold?[/b]\n'
    )
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "Read pyproject.toml")
        await idle(pilot)
        (block,) = tool_calls(app)
        app.main.chat.toggle_tool(block)
        await pilot.pause()
        body = block.body
        for exact in ("[build-system]", "[project]", "limit)", "[b]bold?[/b]"):
            assert exact in body
        assert "[build-system]" in screen_text(pilot)


async def test_the_chat_follows_new_output_after_a_block_was_expanded(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        chat = app.main.query_one(ChatLog)
        await send(pilot, "Read data.csv")
        await idle(pilot)
        (block,) = tool_calls(app)
        chat.toggle_tool(block)  # 30 lines of the file push the end down
        await pilot.pause()
        chat.scroll_to(y=0, animate=False)  # the user scrolls up to read it
        await pilot.pause()
        await send(pilot, "/help")
        await pilot.pause(0.1)
        assert chat.max_scroll_y > 0 and chat.scroll_y == chat.max_scroll_y
        await send(pilot, "List the files here.")
        await idle(pilot)
        await pilot.pause(0.1)
        assert chat.scroll_y == chat.max_scroll_y
        assert "this message $" in screen_text(pilot)  # the answer's subtotal is in view


async def test_the_budget_line_is_on_the_first_screen_at_the_default_cap(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.main.ready, "the panels")
        await pilot.pause()
        assert "spent $0.0000 / cap $1.00" in screen_text(pilot)


async def test_turns_columns_widen_when_a_row_is_rewritten(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.main.ready, "the panels")
        table = app.main.query_one(TurnsTable)
        row = Turn(turn=1, tier="fast", model="m", usage=TokenUsage(input_tokens=1))
        table.add_turn(row)
        await pilot.pause()
        longer = TokenUsage(input_tokens=123_456_789)
        table.add_turn(dataclasses.replace(row, usage=longer, model="claude-a-much-longer-model"))
        await pilot.pause()
        line = next(s for s in screen_text(pilot).splitlines() if "123,456,789" in s)
        header = next(
            s for s in screen_text(pilot).splitlines() if s.lstrip().startswith("#  model")
        )
        assert "a-much-longer-model" in line
        # Each column still starts where its header does.
        assert line.index("123,456,789") == header.index(" in ") + 1


async def test_a_message_halted_before_sending_goes_back_to_the_input(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "/budget 0.0001")  # lowered below what any call needs
        await send(pilot, "List the files here.")
        await idle(pilot)
        assert app.main.input.text == "List the files here."  # kept, not used up
        assert agent.state.history == []  # nothing was sent: not in the conversation
        halt = next(n for n in notices(app) if n.startswith("halted"))
        assert "$0.0001 left" in halt and "the next call needs up to $0.0" in halt
        assert "HALTED: F3 or /budget to go on" in screen_text(pilot)
        text = app.main.input.text
        await send(pilot, "/budget 1")
        await send(pilot, text)
        await idle(pilot)
        assert "README.md" in "\n".join(answers(app))


class Unreachable(OfflineModel):
    """count_tokens answers; every message call finds the network down."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("count_tokens"):
            return await super().handle_async_request(request)
        raise httpx2.ConnectError("connection refused", request=request)


async def test_a_network_failure_is_one_notice_and_no_costliest_mark(make_app: MakeApp) -> None:
    app = make_app(offline_model=Unreachable())
    async with app.run_test(size=(120, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        agent.caller.meter.sleep = no_sleep
        await send(pilot, "List the files here.")
        await idle(pilot)
        assert len(app.main.query_one(TurnsTable).rows) == 1
        assert "▲" not in screen_text(pilot)  # a $0 failed row is not the costliest
        failures = [n for n in notices(app) if "onnect" in n or "halted" in n]
        assert len(failures) == 1 and failures[0].startswith("halted")
        assert len(app._notifications) == 1


class CutThenWhole(FaultyModel):
    """The first answer's stream breaks after some text; the retry streams it whole."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("count_tokens") or not self.faults:
            return await OfflineModel.handle_async_request(self, request)
        self.faults.popleft()
        response = await OfflineModel.handle_async_request(self, request)
        raw = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        events = [e + b"\n\n" for e in raw.split(b"\n\n") if e.strip()]
        error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
        return httpx2.Response(
            200, headers=dict(response.headers), content=b"".join([*events[:5], error])
        )


async def test_a_retried_stream_replaces_the_partial_text(make_app: MakeApp) -> None:
    from tests.support.loopback import Fault

    app = make_app(offline_model=CutThenWhole([Fault("stream_error")]))
    async with app.run_test(size=(120, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        agent.caller.meter.sleep = no_sleep
        await send(pilot, "List the files here.")
        await idle(pilot)
        texts = answers(app)
        assert sum(t.startswith("Let me") for t in texts) == 1, texts  # once, not twice


# --- any terminal size -------------------------------------------------------------------


async def test_narrow_terminals_get_a_status_line_and_f5_cycles_the_panels(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await send(pilot, "Read data.csv and notes.txt")
        await idle(pilot)
        main = app.main
        status = main.query_one("#statusline")
        assert status.display and not main.query_one("#side").display
        line = str(status.render())
        assert "haiku-5-5" in line and "cache hit" in line and "last $0.0" in line
        assert "context " in line
        shown = []
        for _ in range(5):
            await pilot.press("f5")
            await pilot.pause()
            shown.append(
                [w for w in ("#router", "#cache", "#tools", "#turns") if main.query_one(w).display]
            )
        # One panel at a time where the turns table was; then the chat alone; then back.
        assert shown == [["#router"], ["#cache"], ["#tools"], [], ["#turns"]]
        await pilot.press("f5", "f5", "f5")
        await pilot.pause()
        text = screen_text(pilot)
        assert "r1 read_file" in text or "t1 read_file" in text  # numbered as the chat says


async def test_at_60x15_the_chat_and_the_input_stay(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(60, 15)) as pilot:
        await ready(pilot)
        await send(pilot, "List the files here.")
        await idle(pilot)
        await pilot.pause(0.1)
        text = screen_text(pilot)
        assert "List the files here." in text and "Ask about the files" in text
        assert "f8 Report" in text.splitlines()[-1]  # the footer fits
        assert app.main.query_one(ChatLog).region.height >= 5


async def test_the_tool_results_panel_keeps_its_newest_entry_in_view(make_app: MakeApp) -> None:
    from tuiagent.ui.widgets.tools import ToolResult, ToolResultsPanel

    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.main.ready, "the panels")
        panel = app.main.query_one(ToolResultsPanel)
        for n in range(1, 41):
            record = ToolCall(turn=n, name="read_file", result_id=f"r{n}", result_tokens=5)
            panel.add_result(ToolResult(record, "x", "x"))
        await pilot.pause()
        assert "r40 read_file" in screen_text(pilot)


# --- the first screen teaches ----------------------------------------------------------


async def test_the_first_screen_says_what_this_is_and_what_to_do(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        await pilot.pause()
        text = screen_text(pilot)
        assert "see what every call costs" in text  # what the app is
        assert "The model is simulated" in text  # what is simulated
        assert "F3/F2 cap up/down" in text and "/help" in text  # the keys that matter
        assert "Ask about the files here, or /help" in text  # the input's placeholder
        assert "which tier" in text and "After the first call" in text
        assert "Each tool result shows here" in text
        assert "shift+Tab to the chat" in text and "Enter) to" in text  # to open a tool call


async def test_keys_in_the_viewer_are_named(make_app: MakeApp) -> None:
    from tuiagent.ui.screens.dialogs import ViewerScreen
    from tuiagent.ui.widgets.tools import ToolResultsPanel

    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await send(pilot, "Read notes.txt")
        await idle(pilot)
        results = app.main.query_one(ToolResultsPanel).results
        assert results
        app.post_message(ToolResultsPanel.OpenResult(results[0]))
        await until(pilot, lambda: isinstance(app.screen, ViewerScreen), "the viewer")
        assert "Esc or q closes" in screen_text(pilot)


async def test_slash_system_draws_the_prompt_as_wrapped_text(make_app: MakeApp) -> None:
    long = "Answer plainly. " * 20
    app = make_app(system_prompt=long.strip())
    async with app.run_test(size=(80, 30)) as pilot:
        await ready(pilot)
        await send(pilot, "/system")
        await pilot.pause(0.2)
        text = screen_text(pilot)
        assert text.count("Answer plainly.") >= 15  # all of it, over several lines


# --- approval --------------------------------------------------------------------------


async def test_approval_keeps_the_chat_in_view_and_can_always_allow_or_say_why(
    make_app: MakeApp, workspace: Path
) -> None:
    from tuiagent.ui.screens.dialogs import ApproveScreen

    app = make_app(allow_commands=True)
    async with app.run_test(size=(100, 30)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "Please run `pwd -P`")
        await until(pilot, lambda: isinstance(app.screen, ApproveScreen), "the dialog")
        await pilot.pause()
        text = screen_text(pilot)
        command = str(app.screen.query_one("#command").render())
        assert command == "$ pwd -P"  # readable, not JSON
        # The dialog sits at the top: the request and the call, above the input, stay in view.
        dialog = app.screen.query_one("#dialog").region
        (asked,) = (e for e in app.main.chat.entries if isinstance(e, Said))
        assert dialog.height < 15 and not app.main.chat.region_of(asked).overlaps(dialog)
        assert "Please run `pwd -P`" in text
        assert "always allow this command" in text and "tell the agent why" in text
        await pilot.press("w")
        await pilot.pause()
        await pilot.press(*"not now")
        await pilot.press("enter")
        await idle(pilot)
        results = [m for m in agent.state.history if m["role"] == "user"][-1]["content"]
        assert "declined to run run_command: not now" in results[0]["content"]
        await send(pilot, "Please run `echo hi`")
        await until(pilot, lambda: isinstance(app.screen, ApproveScreen), "the dialog")
        await pilot.press("a")
        await idle(pilot)
        await send(pilot, "Please run `echo hi`")
        await idle(pilot)  # asked no more: it ran again on its own
        assert not isinstance(app.screen, ApproveScreen)
        ran = [
            r
            for r in agent.state.history
            if r["role"] == "user" and r["content"][0].get("type") == "tool_result"
        ]
        assert "hi" in ran[-1]["content"][0]["content"] and "hi" in ran[-2]["content"][0]["content"]


# --- small oddities ----------------------------------------------------------------------


async def test_a_queued_message_is_not_announced_inside_the_streaming_answer(
    make_app: MakeApp,
) -> None:
    app = make_app(offline_tokens_per_second=20.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "Read data.csv")
        await until(pilot, lambda: app.busy, "the answer streams")
        await send(pilot, "Read notes.txt")
        assert "1 queued" in str(app.main.input.border_subtitle)
        assert not any("queued" in n for n in notices(app))
        await idle(pilot)
        assert "queued" not in str(app.main.input.border_subtitle)  # the meter shows again


async def test_resumed_tool_blocks_are_done_not_pending(make_app: MakeApp, log_dir: Path) -> None:
    from tuiagent.runs.recent import find_resume

    first = make_app()
    async with first.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "Read notes.txt")
        await idle(pilot)
        await pilot.press("ctrl+q")
    second = make_app(resume=find_resume(log_dir, ""))
    async with second.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await until(pilot, lambda: second.main.ready, "the panels")
        await pilot.pause()
        (block,) = tool_calls(second)
        assert block.title.startswith("✓ read_file") and "⚙" not in block.title
        assert "alpha" in block.body
        assert "spent $0.0000 / cap $1.00" in screen_text(pilot)  # the budget line, resumed


def test_money_reads_sensibly_at_any_size() -> None:
    from tuiagent.cost.display import cap, money

    assert money(Decimal("-0.00001")) == "-$0.00001"  # never "$-0.0000"
    assert money(Decimal("0.0000004")) == "$0.0000004"  # a tiny amount is not "$0.0000"
    assert money(Decimal(0)) == "$0.0000" and money(Decimal("0.01234")) == "$0.0123"
    assert money(Decimal("-0.00000")) == "$0.0000"
    assert cap(Decimal("0.000001")) == "$0.000001" and cap(Decimal(1)) == "$1.00"


async def test_the_cache_panel_never_says_saved_a_negative_amount(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        await send(pilot, "Read data.csv")  # the first calls write the cache, read nothing
        await idle(pilot)
        text = screen_text(pilot)
        assert "saved $-" not in text and "saved -$" not in text
        assert "writes cost $0.0" in text or "saved $0.0" in text


async def test_the_offline_model_counts_in_words(make_app: MakeApp, workspace: Path) -> None:
    for extra in ("data.csv", "notes.txt", "src"):
        path = workspace / extra
        if path.is_dir():
            (path / "app.py").unlink()
            path.rmdir()
        else:
            path.unlink()
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "List the files here.")
        await idle(pilot)
        assert "1 file and 0 folders" in "\n".join(answers(app))


async def test_max_turns_bounds_each_message_not_the_whole_session(make_app: MakeApp) -> None:
    app = make_app(max_turns=2)
    async with app.run_test(size=(120, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        for text in ("List the files here.", "Read notes.txt", "Read README.md"):
            await send(pilot, text)
            await idle(pilot)
        assert agent.state.turns == 6 and agent.state.halt_reason is None
        assert not any("max-turns" in n for n in notices(app))


async def test_after_the_window_shrinks_the_turns_table_shows_its_newest_rows(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        for _ in range(5):
            await send(pilot, "Read notes.txt")
            await idle(pilot)
        table = app.main.query_one(TurnsTable)
        assert table.row_count == 10
        await pilot.resize_terminal(100, 30)  # a shorter table: 5 rows shown, not 8
        await pilot.pause()
        await until(pilot, lambda: table.scroll_y == table.max_scroll_y > 0, "the end")
        shown = screen_text(pilot)
        newest = next(s for s in shown.splitlines() if s.startswith(" 10 "))
        assert "haiku" in newest
