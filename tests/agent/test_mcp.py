"""MCP servers from the config (issue 28): a test server built with the official `mcp` SDK,
started in a subprocess over stdio and over streamable HTTP; its tools listed (named with
the server's name), called, approved and priced; a server that fails to start or dies is
one line and the session goes on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support import FIXTURES
from tuiagent.agent.events import AnswerDelta, Event, Notice
from tuiagent.agent.mcp import server_of, tool_name
from tuiagent.config import McpServer, Settings, load_settings
from tuiagent.errors import ConfigError
from tuiagent.report.build import build_report
from tuiagent.session import Session, open_session

SERVER = FIXTURES / "mcp_server.py"


def stdio(name: str = "test", *args: str, allow: bool = False) -> McpServer:
    return McpServer(name, command=sys.executable, args=(str(SERVER), *args), allow=allow)


def opened(workspace: Path, log_dir: Path, *servers: McpServer, **changes: Any) -> Session:
    settings = Settings().with_changes(log_dir=log_dir, tier="fast", mcp_servers=servers, **changes)
    return open_session(settings, workspace=workspace, offline=True)


async def send(session: Session, prompt: str) -> list[Event]:
    return [e async for e in session.agent.send(prompt)]


def answer(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, AnswerDelta))


def notices(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, Notice)]


def lines(session: Session, kind: str) -> list[dict[str, Any]]:
    text = session.agent.log.path.read_text()
    return [r for r in map(json.loads, text.splitlines()) if r["type"] == kind]


def test_tool_names_carry_the_server_name() -> None:
    assert tool_name("notes", "add") == "mcp__notes__add"
    assert tool_name("notes", "a.b c") == "mcp__notes__a_b_c"  # as the API allows
    assert len(tool_name("s", "x" * 100)) == 64
    assert server_of("mcp__notes__add") == "notes" and server_of("read_file") is None


async def test_a_stdio_server_tools_are_listed_called_and_priced(
    workspace: Path, log_dir: Path
) -> None:
    session = opened(workspace, log_dir, stdio(), allow_mcp=True)
    session.agent.start()
    events = await send(session, 'call mcp__test__add with {"a": 2, "b": 40}')
    assert "mcp__test__add: 42" in answer(events)
    names = set(session.agent.toolbox.tools)
    assert {"mcp__test__add", "mcp__test__shout", "mcp__test__die"} <= names
    (started,) = lines(session, "mcp")
    assert started["server"] == "test" and started["status"] == "started"
    assert started["transport"] == "stdio" and started["tools"] == 3
    definitions = [
        t.definition() for n, t in session.agent.toolbox.tools.items() if server_of(n) == "test"
    ]
    from tuiagent.llm.tokens import block_tokens

    assert started["definition_tokens"] == sum(block_tokens(d) for d in definitions)
    costs = lines(session, "mcp_cost")
    turns = [t for t in lines(session, "turn") if t["purpose"] == "agent"]
    assert [c["turn"] for c in costs] == [t["turn"] for t in turns] == [1, 2]
    assert all(c["tokens"]["test"] == started["definition_tokens"] for c in costs)
    # The first call wrote them to the cache, the second read them: 1.25x and 0.1x input.
    first, second = (Decimal(str(c["cost_usd"]["test"])) for c in costs)
    assert first > second > 0 and first / second == Decimal("12.5")
    assert Decimal(str(costs[-1]["session_cost_usd"]["test"])) == first + second
    (tool,) = lines(session, "tool")
    assert tool["name"] == "mcp__test__add" and tool["ok"]
    session.agent.finish()
    # The report: per server, its tools, the tokens per call, per call and in all.
    report = build_report(log_dir).to_json()
    (row,) = report["mcp_servers"]
    assert row["server"] == "test" and row["calls"] == 2 and row["tools"] == 3
    assert row["tokens_per_call"] == started["definition_tokens"]
    assert Decimal(str(row["cost_usd"])) == first + second


async def test_calls_ask_first_unless_the_config_allows_the_server(
    workspace: Path, log_dir: Path
) -> None:
    asked: list[str] = []

    async def decline(name: str, arguments: dict[str, Any]) -> bool | str:
        asked.append(name)
        return "not now"

    session = opened(workspace, log_dir, stdio())
    session.agent.approve = decline  # the app's dialog
    session.agent.start()
    events = await send(session, 'call mcp__test__shout with {"text": "hi"}')
    assert asked == ["mcp__test__shout"]
    (tool,) = lines(session, "tool")
    assert not tool["ok"]
    assert "declined" in answer(events) or "not now" in json.dumps(lines(session, "tool"))
    session.agent.finish()

    allowed = opened(workspace, log_dir, stdio(allow=True))
    allowed.agent.approve = decline
    allowed.agent.start()
    events = await send(allowed, 'call mcp__test__shout with {"text": "hi"}')
    assert asked == ["mcp__test__shout"] and "HI" in answer(events)  # not asked again
    allowed.agent.finish()


async def test_headless_offers_a_server_only_with_allow_mcp_or_its_allow(
    workspace: Path, log_dir: Path
) -> None:
    session = opened(workspace, log_dir, stdio())
    session.agent.start()
    events = await send(session, "list the files")
    assert any("--allow-mcp" in n for n in notices(events))
    assert not [n for n in session.agent.toolbox.tools if n.startswith("mcp__")]
    session.agent.finish()


async def test_a_server_that_fails_to_start_is_one_line_and_the_session_goes_on(
    workspace: Path, log_dir: Path
) -> None:
    broken = McpServer("broken", command=str(workspace / "no-such-server"))
    session = opened(workspace, log_dir, broken, stdio(), allow_mcp=True)
    session.agent.start()
    events = await send(session, "What does README.md say?")
    (said,) = [n for n in notices(events) if "broken" in n]
    assert said.startswith("MCP server broken failed to start:") and "\n" not in said
    assert "Demo project" in answer(events)
    assert "mcp__test__add" in session.agent.toolbox.tools
    failed = [r for r in lines(session, "mcp") if r["status"] == "failed"]
    assert failed and failed[0]["server"] == "broken" and failed[0]["error"]
    session.agent.finish()


async def test_a_server_that_dies_mid_session_loses_its_tools_and_the_session_goes_on(
    workspace: Path, log_dir: Path
) -> None:
    session = opened(workspace, log_dir, stdio(), allow_mcp=True)
    session.agent.start()
    assert "42" in answer(await send(session, 'call mcp__test__add with {"a": 2, "b": 40}'))
    events = await send(session, "call mcp__test__die with {}")
    (said,) = [n for n in notices(events) if "stopped" in n]
    assert said.startswith("MCP server test stopped: ") and "its tools are gone" in said
    assert not [n for n in session.agent.toolbox.tools if n.startswith("mcp__")]
    events = await send(session, "What does README.md say?")  # the session goes on
    assert "Demo project" in answer(events)
    statuses = [r["status"] for r in lines(session, "mcp")]
    assert statuses == ["started", "stopped"]
    last = lines(session, "turn")[-1]
    request_tools = lines(session, "mcp_cost")
    assert request_tools[-1]["turn"] < last["turn"]  # no server's definitions sent after
    session.agent.finish()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait()


async def test_a_streamable_http_server(workspace: Path, log_dir: Path, http_server: str) -> None:
    session = opened(workspace, log_dir, McpServer("web", url=http_server, allow=True))
    session.agent.start()
    events = await send(session, 'call mcp__web__shout with {"text": "quiet"}')
    assert "QUIET" in answer(events)
    (started,) = lines(session, "mcp")
    assert started["transport"] == "http" and started["tools"] == 3
    session.agent.finish()


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('[mcp_servers.x]\ncommand = "a"\nurl = "http://h/mcp"\n', "mcp_servers.x"),
        ('[mcp_servers.x]\nurl = "ftp://h"\n', "mcp_servers.x.url"),
        ('[mcp_servers.x]\ncommand = "a"\nargs = "b"\n', "mcp_servers.x.args"),
        ('[mcp_servers."bad name"]\ncommand = "a"\n', "mcp_servers.bad name"),
        ('[mcp_servers.x]\ncommand = "a"\nalow = true\n', "mcp_servers.x.alow"),
    ],
)
def test_a_bad_server_table_is_one_line_naming_the_key(
    table: str, named: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(table)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert named in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == 2
