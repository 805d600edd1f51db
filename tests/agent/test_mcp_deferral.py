"""MCP definitions through the API's tool search (issue 28): above `mcp_defer_above`, when
the rule of `Deferral` says it pays, the servers' tools are offered with `defer_loading`
beside the search tool and the screen says so; the model finds a tool before it calls it;
what the definitions cost stays exact; a server that dies leaves no reference behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.agent.test_mcp import answer, lines, notices, opened, send, stdio
from tuiagent.agent.mcp import CALLS_PER_SEARCH, DEFER_PAYBACK_CALLS, SEARCH_TOOL, Deferral
from tuiagent.cost.pricing import Pricer
from tuiagent.llm.tokens import block_tokens, deferred
from tuiagent.runs.records import McpServerState
from tuiagent.ui.widgets.mcp import McpPanel

RATES = Pricer().rates("claude-haiku-5-5")
MANY = "50"  # the fixture server's tools beyond its 3 own: about 12,000 tokens of them


def definitions(n: int, words: int = 150) -> list[dict[str, Any]]:
    return [
        {
            "name": f"mcp__cat__tool_{i:02d}",
            "description": " ".join(["lookup"] * words),
            "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
        }
        for i in range(n)
    ]


# --- the rule -------------------------------------------------------------------------------


def test_the_rule_keeps_a_few_small_definitions_and_defers_many() -> None:
    few, many = definitions(3, words=5), definitions(50)
    kept = Deferral.weigh(few, 2000, RATES)
    assert not kept.defer and kept.deferred_usd >= kept.kept_usd
    deferral = Deferral.weigh(many, 2000, RATES)
    assert deferral.defer and deferral.deferred_usd < deferral.kept_usd
    # The definitions in the prompt: written on the first call, read on the rest.
    tokens = sum(block_tokens(d) for d in many)
    n = DEFER_PAYBACK_CALLS
    assert deferral.tokens == tokens
    assert deferral.kept_usd == tokens * (RATES.cache_write_5m + RATES.cache_read * (n - 1))
    assert "through tool search" in deferral.reason and "in the prompt" in deferral.reason


def test_a_search_reads_the_whole_prompt_again() -> None:
    """Each search is one more pass over the input (as recorded), so a larger prompt makes
    deferral dearer, by exactly the searches' re-reads at the cache-read rate; large
    enough, it no longer pays."""
    many = definitions(50)
    small, large = Deferral.weigh(many, 2000, RATES), Deferral.weigh(many, 12_000, RATES)
    # A search every CALLS_PER_SEARCH calls, five loaded by each, until all are.
    searches = min(-(-len(many) // 5), -(-DEFER_PAYBACK_CALLS // CALLS_PER_SEARCH))
    assert large.deferred_usd - small.deferred_usd == 10_000 * RATES.cache_read * searches
    assert small.defer and not Deferral.weigh(many, 200_000, RATES).defer


# --- in a session -----------------------------------------------------------------------------


async def test_a_large_server_goes_through_tool_search(workspace: Path, log_dir: Path) -> None:
    session = opened(workspace, log_dir, stdio("cat", MANY), allow_mcp=True)
    session.agent.start()
    events = await send(session, 'call mcp__cat__tool_07 with {"record_id": "a1"}')
    (said,) = [n for n in notices(events) if n.startswith("MCP: ")]
    assert "53 tool definitions" in said and "go through the API's tool search" in said
    assert "record a1" in answer(events)
    (state,) = lines(session, "mcp")
    assert state["deferred"] is True and "through tool search" in state["deferral"]
    # What is sent: every MCP definition deferred, beside the search tool; the built-in
    # tools in the prompt.
    body = session.agent.parts.conversation.body()
    tools = body["tools"]
    assert SEARCH_TOOL in tools
    mcp = [t for t in tools if str(t.get("name", "")).startswith("mcp__")]
    assert len(mcp) == 53 and all(deferred(t) for t in mcp)
    assert any(not deferred(t) and t is not SEARCH_TOOL for t in tools)
    # The answer searched before it called: the search is in the history.
    kinds = [b["type"] for m in body["messages"] for b in m["content"] if isinstance(b, dict)]
    assert kinds.index("server_tool_use") < kinds.index("tool_search_tool_result")
    # Per call, the definitions take the search tool and what the search loaded, not all.
    costs = lines(session, "mcp_cost")
    assert 0 < costs[0]["tokens"]["cat"] < state["definition_tokens"] // 10
    session.agent.finish()


async def test_below_the_threshold_nothing_is_deferred_nor_said(
    workspace: Path, log_dir: Path
) -> None:
    session = opened(workspace, log_dir, stdio("cat", MANY), allow_mcp=True, mcp_defer_above=10**9)
    session.agent.start()
    events = await send(session, 'call mcp__cat__tool_07 with {"record_id": "a1"}')
    assert "record a1" in answer(events)
    assert not [n for n in notices(events) if n.startswith("MCP: ")]
    assert SEARCH_TOOL not in session.agent.parts.conversation.body()["tools"]
    (state,) = lines(session, "mcp")
    assert "deferred" not in state
    session.agent.finish()


async def test_a_model_without_tool_search_keeps_the_definitions(
    workspace: Path, log_dir: Path
) -> None:
    tiers = {"fast": "claude-3-haiku", "balanced": "claude-sonnet-4-6", "deep": "claude-opus-4-8"}
    session = opened(workspace, log_dir, stdio("cat", MANY), allow_mcp=True, tiers=tiers)
    session.agent.start()
    events = await send(session, "List the files here.")
    (said,) = [n for n in notices(events) if n.startswith("MCP: ")]
    assert said.endswith("stay in the prompt: claude-3-haiku has no tool search")
    assert SEARCH_TOOL not in session.agent.parts.conversation.body()["tools"]
    session.agent.finish()


async def test_a_server_that_dies_leaves_no_reference_behind(
    workspace: Path, log_dir: Path
) -> None:
    """The API refuses a tool reference without its definition: once the server is gone,
    the references its search left in the history are not sent."""
    session = opened(workspace, log_dir, stdio("cat", MANY), allow_mcp=True)
    session.agent.start()
    assert "record a1" in answer(
        await send(session, 'call mcp__cat__tool_07 with {"record_id": "a1"}')
    )
    events = await send(session, "call mcp__cat__die with {}")
    assert any("stopped" in n for n in notices(events))
    events = await send(session, "What does README.md say?")
    assert "Demo project" in answer(events)
    assert not [n for n in notices(events) if "400" in n or "Tool reference" in n]
    body = session.agent.parts.conversation.body()
    refs = [
        r
        for m in body["messages"]
        for b in m["content"]
        if isinstance(b, dict) and b.get("type") == "tool_search_tool_result"
        for r in b["content"]["tool_references"]
    ]
    assert refs == []
    session.agent.finish()


def test_the_panel_says_a_server_is_deferred() -> None:
    panel = McpPanel()
    panel.seen(
        McpServerState(
            server="cat",
            transport="stdio",
            status="started",
            tools=53,
            definition_tokens=12_172,
            deferred=True,
            deferral="...",
        )
    )
    text = panel.text()
    assert "53 tools via tool search, 0 tok/call" in text and "12,172" not in text
