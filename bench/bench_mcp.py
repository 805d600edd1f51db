"""MCP: what a server's tool definitions cost per call. A test server built with the `mcp`
SDK (tests/fixtures/mcp_server.py) offering 50 tools (and its 3 own) is started over stdio;
one offline message is sent and the `mcp` and `mcp_cost` records read back: the definitions'
tokens on each call, and what they cost on the first call (written to the cache) and the
next (read from it). Deferring them to the API's tool search (`defer_loading`) is not built
yet: its column says so."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from tuiagent.config import McpServer, Settings
from tuiagent.session import open_session

SERVER = Path(__file__).parent.parent / "tests" / "fixtures" / "mcp_server.py"
TOOLS = 50


async def _session(root: Path) -> list[dict[str, object]]:
    (root / "ws").mkdir()
    (root / "ws" / "notes.txt").write_text("alpha\n")
    server = McpServer("catalogue", command=sys.executable, args=(str(SERVER), str(TOOLS)))
    settings = Settings().with_changes(
        log_dir=root / "logs", tier="fast", mcp_servers=(server,), allow_mcp=True
    )
    session = open_session(settings, workspace=root / "ws", offline=True)
    session.agent.start()
    async for _ in session.agent.send("List the files here."):
        pass
    session.agent.finish()
    lines = session.agent.log.path.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] in ("mcp", "mcp_cost")]


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        records = asyncio.run(_session(Path(tmp)))
    (state,) = [r for r in records if r["type"] == "mcp"]
    costs = [r for r in records if r["type"] == "mcp_cost"]
    tokens = costs[0]["tokens"]["catalogue"]  # type: ignore[index]
    first, second = (c["cost_usd"]["catalogue"] for c in costs[:2])  # type: ignore[index]
    return [
        (
            f"tool-definition tokens per call, a server of {state['tools']} tools",
            f"{tokens:,} without deferral; with deferral: not built",
            "deferral: fewer",
        ),
        (
            "what they cost per call (claude-haiku-5-5)",
            f"${first:.6f} written to the cache, ${second:.6f} read from it",
            "-",
        ),
    ]
