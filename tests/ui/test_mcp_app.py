"""MCP in the app (issue 28): a server's tool asks first (y runs it), and the MCP panel shows
its tools and what their definitions cost per call and in the session."""

from __future__ import annotations

import sys
from collections.abc import Callable

from tests.support import FIXTURES
from tests.support.app import idle, ready, send, until
from tuiagent.config import McpServer
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.screens.dialogs import ApproveScreen
from tuiagent.ui.widgets.mcp import McpPanel

SERVER = FIXTURES / "mcp_server.py"


async def test_an_mcp_tool_asks_first_and_the_panel_shows_its_cost(
    make_app: Callable[..., TuiagentApp],
) -> None:
    server = McpServer("test", command=sys.executable, args=(str(SERVER),))
    app = make_app(mcp_servers=(server,))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        await send(pilot, 'call mcp__test__add with {"a": 2, "b": 40}')
        await until(pilot, lambda: isinstance(app.screen, ApproveScreen), "the dialog", 1500)
        await pilot.press("y")
        await idle(pilot)
        answers = app.main.chat.answers
        assert "mcp__test__add: 42" in answers[-1].text
        panel = app.main.query_one(McpPanel)
        await until(pilot, lambda: "/call" in panel.text(), "the panel's cost")
        line = panel.text()
        assert line.startswith("test started · 3 tools, ") and " tok/call · $0.0" in line
        assert "in all" in line
