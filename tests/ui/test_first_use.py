"""The app as a user meets it (issue 15): exact text, a chat that follows, the budget from the
first frame, aligned columns, halts that say what is needed, one notice per failure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
from textual.pilot import Pilot

from tests.loopback import FaultyModel
from tuiagent.llm.offline import OfflineModel
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.widgets.answer import AnswerView
from tuiagent.ui.widgets.chat import ChatLog, NoticeView, ToolCallView
from tuiagent.ui.widgets.turns import TurnsTable

from .conftest import idle, ready, send, until

MakeApp = Callable[..., TuiagentApp]


def notices(app: TuiagentApp) -> list[str]:
    return [str(v.content) for v in app.main.query(NoticeView)]


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
        block = app.main.query_one(ToolCallView)
        block.collapsed = False
        await pilot.pause()
        body = str(block.body.render())
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
        block = app.main.query_one(ToolCallView)
        block.collapsed = False  # 30 lines of the file push the end down
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
        row = {"turn": 1, "tier": "fast", "model": "m", "input_tokens": 1, "cost_usd": 0}
        table.add_turn(row)
        await pilot.pause()
        table.add_turn({**row, "input_tokens": 123_456_789, "model": "claude-a-much-longer-model"})
        await pilot.pause()
        line = next(s for s in screen_text(pilot).splitlines() if "123,456,789" in s)
        header = next(s for s in screen_text(pilot).splitlines() if "tier/model" in s)
        assert "fast/a-much-longer-model" in line
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
        assert "HALTED: at the cap; F3 or /budget raises it" in screen_text(pilot)
        text = app.main.input.text
        await send(pilot, "/budget 1")
        await send(pilot, text)
        await idle(pilot)
        assert "README.md" in "\n".join(v.source for v in app.main.query(AnswerView))


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
        agent.sleep = no_sleep
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
    from tests.loopback import Fault

    app = make_app(offline_model=CutThenWhole([Fault("stream_error")]))
    async with app.run_test(size=(120, 40)) as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        agent.sleep = no_sleep
        await send(pilot, "List the files here.")
        await idle(pilot)
        texts = [v.source for v in app.main.query(AnswerView)]
        assert sum(t.startswith("Let me") for t in texts) == 1, texts  # once, not twice
