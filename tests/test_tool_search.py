"""The API's tool search (deferred tool definitions, `defer_loading`) in the core:
deferred definitions are not in the prompt and count only where a search's references load
them; the meter holds what an answer's searches may load and prices a search at its
tokens."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tuiagent.cost.budget import Budget, estimated_with_margin, plan_reservation
from tuiagent.cost.pricing import MIN_SERVER_TOOL_CALL_TOKENS, Pricer
from tuiagent.llm.caching import plan_breakpoints
from tuiagent.llm.tokens import (
    block_tokens,
    estimate_request_tokens,
    loadable_tokens,
    request_blocks,
    search_result_tokens,
)
from tuiagent.llm.usage import TokenUsage
from tuiagent.meter import CallMeter, Held

MODEL = "claude-haiku-5-5"
SEARCH = {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"}
LIST_DIR = {
    "name": "list_dir",
    "description": "List a directory of the workspace.",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
}


def catalogue_tool(i: int, deferred: bool = True) -> dict[str, Any]:
    tool = {
        "name": f"mcp__cat__tool_{i:02d}",
        "description": f"Look up records of kind {i} in the catalogue by id.",
        "input_schema": {
            "type": "object",
            "properties": {"record_id": {"type": "string", "description": "the record's id"}},
            "required": ["record_id"],
        },
    }
    return {**tool, "defer_loading": True} if deferred else tool


CATALOGUE = [catalogue_tool(i) for i in range(30)]
TOOLS = [LIST_DIR, SEARCH, *CATALOGUE]
ASK = [{"role": "user", "content": 'call mcp__cat__tool_07 with {"record_id": "a1"}'}]


def found(*names: str, use_id: str = "srvtoolu_1") -> dict[str, Any]:
    refs = [{"type": "tool_reference", "tool_name": n} for n in names]
    return {
        "type": "tool_search_tool_result",
        "tool_use_id": use_id,
        "content": {"type": "tool_search_tool_search_result", "tool_references": refs},
    }


# --- the core: tokens, breakpoints, the meter ----------------------------------------------


def test_deferred_definitions_are_not_in_the_prompt_until_a_search_loads_them() -> None:
    plain = {"model": MODEL, "tools": [LIST_DIR, SEARCH], "messages": ASK}
    deferred = {**plain, "tools": TOOLS}
    assert estimate_request_tokens(deferred) == estimate_request_tokens(plain)
    definition = block_tokens(catalogue_tool(7, deferred=False))
    assert block_tokens(CATALOGUE[7]) == definition  # the flag is not part of what loads
    assert loadable_tokens(deferred) == sum(block_tokens(t) for t in CATALOGUE)
    # A search's result loads its definitions where it sits: the API's own, and a client's
    # own search answered in a tool_result (as the leading coding agent does).
    answer = {"role": "assistant", "content": [found("mcp__cat__tool_07")]}
    with_result = {**deferred, "messages": [*ASK, answer]}
    (_, n) = request_blocks(with_result)[-1]
    assert n == block_tokens(found("mcp__cat__tool_07")) + definition + 3  # + message framing
    refs = [{"type": "tool_reference", "tool_name": "mcp__cat__tool_09"}]
    client_side = {"type": "tool_result", "tool_use_id": "t", "content": refs}
    client = {**deferred, "messages": [{"role": "user", "content": [client_side]}]}
    assert (
        request_blocks(client)[-1][1] == block_tokens(client_side) + block_tokens(CATALOGUE[9]) + 3
    )
    # A reference to a tool the request does not defer loads nothing more.
    stray = {**deferred, "messages": [*ASK, {"role": "assistant", "content": [found("nope")]}]}
    assert request_blocks(stray)[-1][1] == block_tokens(found("nope")) + 3


def test_no_cache_breakpoint_lands_on_a_deferred_definition() -> None:
    request = {
        "model": MODEL,
        "max_tokens": 100,
        "system": "x " * 3000,
        "tools": [LIST_DIR, SEARCH, *CATALOGUE],
        "messages": ASK,
    }
    planned = plan_breakpoints(request, MODEL)
    assert not any("cache_control" in t for t in planned["tools"])
    assert "cache_control" in planned["system"][-1]  # the stable prefix ends with the system


async def test_a_deferring_request_is_held_with_what_its_searches_may_load() -> None:
    pricer = Pricer()
    meter = CallMeter(pricer, Budget(Decimal(1)), min_useful_tokens=100)
    request = {"model": MODEL, "max_tokens": 500, "tools": TOOLS, "messages": ASK}

    async def count(_: dict[str, Any]) -> object:
        return estimate_request_tokens(request)  # what the offline model counts

    held = await meter.reserve(MODEL, request, count, label="t")
    assert isinstance(held, Held)
    loadable = loadable_tokens(request)
    assert held.reservation.input_tokens >= estimate_request_tokens(request) + loadable
    # Without the deferred definitions, the hold is smaller by at least what they weigh.
    small = {**request, "tools": [LIST_DIR, SEARCH]}
    other = CallMeter(pricer, Budget(Decimal(1)), min_useful_tokens=100)
    held_small = await other.reserve(MODEL, small, count, label="t")
    assert isinstance(held_small, Held)
    assert held.reservation.input_tokens - held_small.reservation.input_tokens >= loadable


def test_the_hold_covers_a_search_result_per_five_output_tokens() -> None:
    """Each search's result is input of its answer: the worst case adds, for as many
    searches as max_tokens can ask for (one per MIN_SERVER_TOOL_CALL_TOKENS), the largest
    result at the input rate; the same request without the search tool adds nothing."""
    pricer = Pricer()
    request = {"model": MODEL, "max_tokens": 500, "tools": TOOLS, "messages": ASK}
    without = {**request, "tools": [t for t in TOOLS if t is not SEARCH]}
    one = search_result_tokens(request)
    names = sorted((str(t["name"]) for t in CATALOGUE), key=len, reverse=True)
    assert one > block_tokens(found(*names[:5])) and search_result_tokens(without) == 0

    def worst(body: dict[str, Any]) -> Decimal:
        plan = plan_reservation(pricer, MODEL, body, 1000, "count_tokens", Decimal(1), 1)
        assert plan is not None and plan.max_tokens == 500
        return plan.worst_case_usd

    searches = 500 // MIN_SERVER_TOOL_CALL_TOKENS
    added = pricer.rates(MODEL, 1000).input * estimated_with_margin(one) * searches
    assert worst(request) - worst(without) == added


def test_a_search_is_counted_and_priced_at_its_tokens_only() -> None:
    usage = TokenUsage.from_api(
        {"input_tokens": 1000, "output_tokens": 50, "server_tool_use": {"tool_search_requests": 2}}
    )
    assert usage.tool_search_requests == 2
    pricer = Pricer()
    plain = TokenUsage(input_tokens=1000, output_tokens=50)
    cost = pricer.price(MODEL, usage)
    assert cost.total == pricer.price(MODEL, plain).total and cost.server_tools == 0
    later = TokenUsage().with_delta({"server_tool_use": {"tool_search_requests": 3}})
    assert later.tool_search_requests == 3
    assert usage.as_record()["tool_search_requests"] == 2
