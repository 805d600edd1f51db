"""MCP: what a server's tool definitions cost per call, in the prompt and through the API's
tool search. A test server built with the `mcp` SDK (tests/fixtures/mcp_server.py) offering
50 tools (and its 3 own) is started over stdio, and the same offline session (eight
messages, two of them calling one of its tools) runs twice: with the definitions in every
prompt (`mcp_defer_above` out of reach) and deferred (the default: above 10,000 tokens, when
the rule says it pays). The `mcp_cost` records give the definitions' tokens on each call
(deferred: the search tool's definition and what the searches loaded) and their cost; the
`turn` records the session's."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.config import McpServer, Settings
from tuiagent.session import open_session

SERVER = Path(__file__).parent.parent / "tests" / "fixtures" / "mcp_server.py"
TOOLS = 50
MESSAGES = (
    "List the files here.",
    'call mcp__catalogue__tool_07 with {"record_id": "a1"}',
    "What does notes.txt say?",
    "List the files here.",
    'call mcp__catalogue__tool_31 with {"record_id": "b2", "limit": 3}',
    "What does notes.txt say?",
    'call mcp__catalogue__tool_07 with {"record_id": "c3"}',
    "List the files here.",
)
NEVER = 10**9  # mcp_defer_above out of reach: the definitions stay in the prompt


async def _session(root: Path, defer_above: int) -> list[dict[str, Any]]:
    server = McpServer("catalogue", command=sys.executable, args=(str(SERVER), str(TOOLS)))
    settings = Settings().with_changes(
        log_dir=root / "logs",
        tier="fast",
        mcp_servers=(server,),
        allow_mcp=True,
        mcp_defer_above=defer_above,
    )
    session = open_session(settings, workspace=root / "ws", offline=True)
    session.agent.start()
    for message in MESSAGES:
        async for _ in session.agent.send(message):
            pass
    session.agent.finish()
    return [json.loads(line) for line in session.agent.log.path.read_text().splitlines()]


def _figures(records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[int], Decimal, Decimal]:
    (state,) = [r for r in records if r["type"] == "mcp"]
    costs = [r for r in records if r["type"] == "mcp_cost"]
    tokens = [int(c["tokens"].get("catalogue", 0)) for c in costs]
    definitions = sum((Decimal(str(c["cost_usd"].get("catalogue", 0))) for c in costs), Decimal(0))
    turns = [r for r in records if r["type"] == "turn"]
    session = sum((Decimal(str(t["cost_usd"])) for t in turns), Decimal(0))
    return state, tokens, definitions, session


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        sides = []
        for name, above in (("kept", NEVER), ("deferred", Settings().tools.mcp_defer_above)):
            root = Path(tmp) / name
            (root / "ws").mkdir(parents=True)
            (root / "ws" / "notes.txt").write_text("alpha\n")
            sides.append(_figures(asyncio.run(_session(root, above))))
    (state, kept, kept_usd, kept_all), (deferred, loaded, deferred_usd, deferred_all) = sides
    assert deferred.get("deferred") is True, deferred
    searches = sum(1 for n in range(1, len(loaded)) if loaded[n] > loaded[n - 1])
    return [
        (
            f"tool-definition tokens per call, a server of {state['tools']} tools",
            f"{sum(kept) / len(kept):,.0f} in the prompt; {sum(loaded) / len(loaded):,.0f} "
            f"deferred (from {min(loaded):,} to {max(loaded):,}: the search tool, and what "
            f"{searches} searches loaded)",
            "deferral: fewer",
        ),
        (
            f"the definitions' cost over {len(kept)} calls (claude-haiku-5-5)",
            f"${kept_usd:.5f} in the prompt; ${deferred_usd:.5f} deferred",
            "deferral: less",
        ),
        (
            f"the {len(MESSAGES)}-message session's cost",
            f"${kept_all:.5f} in the prompt; ${deferred_all:.5f} deferred "
            f"({deferred_all / kept_all:.2f})",
            "-",
        ),
    ]
