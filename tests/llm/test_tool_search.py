"""The API's tool search (deferred tool definitions, `defer_loading`) in the core and the
offline model: deferred definitions are not in the prompt and count only where a search's
references load them; the meter holds what an answer's searches may load and prices a
search at its tokens; the offline model searches before it calls a deferred tool, as the
API answers (server_tool_use, then tool_search_tool_result, then tool_use), streamed and
not, with the API's 400s."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tuiagent.cost.budget import Budget, estimated_with_margin, plan_reservation
from tuiagent.cost.pricing import SERVER_LOOP_ITERATIONS, Pricer
from tuiagent.llm.client import make_client
from tuiagent.llm.tokens import (
    COUNTED_FIELDS,
    SEARCH_RESULTS,
    TokenUsage,
    block_tokens,
    estimate_request_tokens,
    loadable_tokens,
    plan_breakpoints,
    request_blocks,
    search_result_tokens,
)
from tuiagent.meter import CallMeter, Held
from tuiagent.offline import tool_search
from tuiagent.offline.transport import OfflineModel

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


@pytest.mark.parametrize("catalogue", [CATALOGUE[7:8], CATALOGUE], ids=["one tool", "thirty"])
async def test_an_answer_that_searches_is_billed_within_its_hold(
    catalogue: list[dict[str, Any]],
) -> None:
    """The hold covers what the answer's search brings into its input: the definitions it
    loads and the result block itself (a search of a one-tool catalogue loads all of it,
    and its result is more input on top)."""
    pricer = Pricer()
    meter = CallMeter(pricer, Budget(Decimal(1)), min_useful_tokens=100)
    request = {"model": MODEL, "max_tokens": 500, "tools": [LIST_DIR, SEARCH, *catalogue]}
    request["messages"] = ASK
    client = make_client(offline_transport=OfflineModel())

    async def count(body: dict[str, Any]) -> object:
        counted = {k: v for k, v in body.items() if k in COUNTED_FIELDS}
        return (await client.messages.count_tokens(**counted)).input_tokens

    held = await meter.reserve(MODEL, request, count, label="t")
    assert isinstance(held, Held)
    message = await client.messages.create(**request)
    assert [b.type for b in message.content][1:3] == ["server_tool_use", "tool_search_tool_result"]
    # Billed as if it had spoken all the output it was allowed (the hold's own case).
    usage = replace(
        TokenUsage.from_api(message.usage.model_dump()),
        output_tokens=held.reservation.output_tokens,
    )
    assert pricer.price(MODEL, usage).total <= held.reservation.worst_case_usd


def test_the_hold_covers_the_passes_a_search_adds() -> None:
    """After each search the API samples again over the whole input (recorded: 702 input
    tokens before the search, 1,591 after): beside the search tool, the worst case adds
    SERVER_LOOP_ITERATIONS passes, each of the input, max_tokens and every result at its
    largest, at the input rate. The same request without the search tool adds nothing."""
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

    n = SERVER_LOOP_ITERATIONS
    passes = n * (1000 + 500 + n * estimated_with_margin(one))
    assert worst(request) - worst(without) == pricer.rates(MODEL, 1000).input * passes


def test_a_search_bills_its_tokens_only() -> None:
    """The wire reports no count of searches (server_tool_use as recorded: web search and
    fetch at 0); the documented `tool_search_requests` bills nothing either."""
    pricer = Pricer()
    plain = pricer.price(MODEL, TokenUsage(input_tokens=1000, output_tokens=50))
    for tools in ({"web_search_requests": 0, "web_fetch_requests": 0}, {"tool_search_requests": 2}):
        usage = TokenUsage.from_api(
            {"input_tokens": 1000, "output_tokens": 50, "server_tool_use": tools}
        )
        cost = pricer.price(MODEL, usage)
        assert cost.total == plain.total and cost.server_tools == 0


# --- the search itself ----------------------------------------------------------------------


def test_the_regex_search_finds_by_name_first_then_by_what_the_tools_say() -> None:
    result = tool_search.run("tool_search_tool_regex", "tool_0[1-3]", CATALOGUE)
    names = [r["tool_name"] for r in result["tool_references"]]
    assert names == ["mcp__cat__tool_01", "mcp__cat__tool_02", "mcp__cat__tool_03"]
    by_words = tool_search.run("tool_search_tool_regex", "records of kind", CATALOGUE)
    assert len(by_words["tool_references"]) == SEARCH_RESULTS
    by_argument = tool_search.run("tool_search_tool_regex", "the record's id", CATALOGUE[:2])
    assert len(by_argument["tool_references"]) == 2  # argument descriptions are searched
    bad = tool_search.run("tool_search_tool_regex", "tool_(", CATALOGUE)
    assert bad == {"type": "tool_search_tool_result_error", "error_code": "invalid_pattern"}
    long = tool_search.run("tool_search_tool_regex", "x" * 201, CATALOGUE)
    assert long["error_code"] == "pattern_too_long"


def test_the_bm25_search_ranks_by_words() -> None:
    query = tool_search.query_for("mcp__cat__tool_12", "tool_search_tool_bm25")
    assert query == "mcp cat tool 12"
    result = tool_search.run("tool_search_tool_bm25", query, CATALOGUE)
    assert result["tool_references"][0]["tool_name"] == "mcp__cat__tool_12"


# --- the offline model, through the SDK -------------------------------------------------------


async def create(model: OfflineModel, stream: bool = False, **body: Any) -> Any:
    client = make_client(offline_transport=model)
    args = {"model": MODEL, "max_tokens": 1000, "tools": TOOLS, "messages": ASK, **body}
    if stream:
        async with client.messages.stream(**args) as s:
            return await s.get_final_message()
    return await client.messages.create(**args)


async def test_the_offline_model_searches_before_it_calls_a_deferred_tool() -> None:
    message = await create(OfflineModel())
    kinds = [b.type for b in message.content]
    assert kinds == ["text", "server_tool_use", "tool_search_tool_result", "tool_use"]
    use, result, call = message.content[1:]
    assert use.name == "tool_search_tool_regex" and use.input == {"query": "mcp__cat__tool_07"}
    assert result.tool_use_id == use.id and use.id.startswith("srvtoolu_")
    refs = [r.tool_name for r in result.content.tool_references]
    assert refs == ["mcp__cat__tool_07"]
    assert call.name == "mcp__cat__tool_07" and call.input == {"record_id": "a1"}
    assert message.stop_reason == "tool_use"
    usage = message.usage.model_dump()
    assert usage["server_tool_use"] == {"web_search_requests": 0, "web_fetch_requests": 0}
    # Its input, as recorded (702 before the search, 1,591 after): the prompt (deferred
    # definitions aside), then a second pass over it with the answer so far, the result
    # and the definition it loaded.
    prompt = estimate_request_tokens({"model": MODEL, "tools": TOOLS, "messages": ASK})
    so_far = [json.loads(b.model_dump_json(exclude_none=True)) for b in message.content[:3]]
    second = prompt + sum(block_tokens(b) for b in so_far) + block_tokens(CATALOGUE[7])
    assert usage["input_tokens"] == prompt + second
    # Its output: the text, the search's query and the call (not the API's result).
    spoken = [json.loads(b.model_dump_json(exclude_none=True)) for b in message.content]
    assert usage["output_tokens"] == sum(
        block_tokens(b) for b in spoken if b["type"] != "tool_search_tool_result"
    )
    streamed = await create(OfflineModel(), stream=True)
    assert [b.type for b in streamed.content] == kinds
    assert streamed.content[1].input == use.input
    assert streamed.content[2].content.model_dump() == result.content.model_dump()
    assert streamed.usage.input_tokens == message.usage.input_tokens


async def test_a_tool_a_search_loaded_is_called_again_without_searching() -> None:
    model = OfflineModel()
    first = await create(model)
    answer = [json.loads(b.model_dump_json(exclude_none=True)) for b in first.content]
    call = answer[-1]
    history = [
        *ASK,
        {"role": "assistant", "content": answer},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "ok"}],
        },
        {"role": "user", "content": 'call mcp__cat__tool_07 with {"record_id": "b2"}'},
    ]
    second = await create(model, messages=history)
    assert [b.type for b in second.content] == ["text", "tool_use"]
    assert second.usage.model_dump().get("server_tool_use") is None


async def test_without_a_search_tool_a_deferred_tool_is_out_of_sight() -> None:
    message = await create(OfflineModel(), tools=[LIST_DIR, *CATALOGUE])
    assert [b.type for b in message.content] == ["text"]  # no tool it can call


@pytest.mark.parametrize(
    ("tools", "messages", "said"),
    [
        (
            CATALOGUE,
            ASK,
            "All tools have defer_loading set. At least one tool must be non-deferred.",
        ),
        (
            [LIST_DIR, SEARCH, *CATALOGUE[:5]],
            [*ASK, {"role": "assistant", "content": [found("mcp__cat__tool_07")]}, *ASK],
            "Tool reference 'mcp__cat__tool_07' has no corresponding tool definition",
        ),
    ],
    ids=["every tool deferred", "a reference without its definition"],
)
async def test_the_api_refusals_for_deferred_tools(
    tools: list[dict[str, Any]], messages: list[dict[str, Any]], said: str
) -> None:
    import anthropic

    with pytest.raises(anthropic.BadRequestError) as refused:
        await create(OfflineModel(), tools=tools, messages=messages)
    assert said in str(refused.value)
    client = make_client(offline_transport=OfflineModel())
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.count_tokens(model=MODEL, tools=tools, messages=messages)
