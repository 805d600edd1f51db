"""Conformance: the offline model against things nobody here wrote.

1. The recorded real traffic (shared/wire, copied in tests/fixtures/wire): every request
   the API accepted is accepted, the stream has the recorded shape, errors the recorded body.
2. Clients pointed at the offline model served on 127.0.0.1 (tests/support/loopback.py): the SDK's
   helpers (`messages.parse`, `messages.stream()` + `get_final_message()`, the tool runner,
   `count_tokens`, `models.list()`/`retrieve`), litellm, langchain-anthropic and pydantic-ai:
   structured output, forced tool choice, stop sequences, thinking, errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import httpx2
import jsonschema
import pytest
import yaml
from anthropic.lib.tools import beta_tool
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.support import FIXTURES
from tests.support.loopback import LoopbackAPI
from tests.support.wire import offline_answer as offline
from tuiagent.cost.pricing import Pricer
from tuiagent.llm.models import rules_for
from tuiagent.llm.tokens import TokenUsage, block_tokens
from tuiagent.offline.rules import refusal

# litellm reads its price map and beta headers from the network unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")

WIRE = FIXTURES / "wire"
MODEL = "claude-haiku-5-5"
BUDGET_MODEL = "claude-sonnet-4-6"  # takes thinking with a budget (5.5 models do not)
PREFILL_MODEL = "claude-haiku-4-5"  # takes a prefill (4.6 and later models do not)
KEY = "sk-ant-test-not-a-key"


def interactions(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((WIRE / name).read_text())
    return list(data["interactions"])


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.strip().splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def body_of(request: dict[str, Any]) -> dict[str, Any]:
    """A recorded request's JSON body (cassettes keep it as parsed_body or body.content)."""
    return dict(request.get("parsed_body") or request["body"]["content"])


def today(body: dict[str, Any]) -> dict[str, Any]:
    """The body sent today: a model retired since the recording becomes its replacement."""
    rules = rules_for(body["model"])
    if rules is not None and rules.replacement is not None:
        return {**body, "model": rules.replacement}
    return body


def stream_of(item: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    body = item["response"]["body"]
    return sse(body.get("string") or body["content"])


def status_of(item: dict[str, Any]) -> int:
    status = item["response"]["status"]
    return int(status["code"] if isinstance(status, dict) else status)


def accepted_requests() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every recorded request the API answered with 200."""
    for file in sorted(WIRE.glob("*.yaml")):
        for i, item in enumerate(interactions(file.name)):
            if status_of(item) == 200:
                yield f"{file.stem}[{i}]", item["request"]


# --- 1. the recorded real traffic ------------------------------------------------------


@pytest.mark.parametrize(("name", "request_"), list(accepted_requests()))
def test_every_request_the_api_accepted_is_accepted(name: str, request_: dict[str, Any]) -> None:
    body = body_of(request_)
    counting = "count_tokens" in request_["uri"]
    path = "/v1/messages/count_tokens" if counting else "/v1/messages"
    if body != today(body):  # its model retired since: the API's 404 now, as recorded for one
        gone = offline(body, path)
        assert gone.status_code == 404
        assert gone.json()["error"] == {
            "type": "not_found_error",
            "message": f"model: {body['model']}",
        }
        body = today(body)
    assert refusal(body, count_tokens=counting) is None
    response = offline(body, path)
    assert response.status_code == 200, response.text


def _blocks_and_deltas(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """A stream's shape: each block's start and the kinds of its deltas, in order."""
    shape: list[tuple[Any, ...]] = []
    for event, data in events:
        if event == "content_block_start":
            block = data["content_block"]
            shape.append(("start", block["type"], tuple(sorted(block))))
        elif event == "content_block_delta":
            kind = data["delta"]["type"]
            if shape[-1] != ("delta", kind):
                shape.append(("delta", kind))
        elif event in ("message_start", "message_delta", "message_stop", "content_block_stop"):
            shape.append((event,))
    return shape


def test_thinking_stream_has_the_recorded_shape() -> None:
    [item] = interactions("stream_thinking_text.yaml")
    real = stream_of(item)
    ours = sse(offline(today(body_of(item["request"]))).text)
    assert _blocks_and_deltas(ours) == _blocks_and_deltas(real)
    # the start of a thinking block, exactly as recorded
    start = next(d for e, d in ours if e == "content_block_start")
    assert start["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    # thinking is billed as output: the final count covers the thinking and the text
    final = next(d for e, d in ours if e == "message_delta")["usage"]["output_tokens"]
    thinking = "".join(
        d["delta"].get("thinking", "") for e, d in ours if e == "content_block_delta"
    )
    assert final > block_tokens({"type": "thinking", "thinking": thinking}) > 0


def test_tool_stream_has_the_recorded_shape() -> None:
    item = interactions("stream_tool_use_input_json_delta.yaml")[0]
    body = body_of(item["request"])
    real = stream_of(item)
    tool = body["tools"][0]["name"]
    ours = sse(offline({**body, "tool_choice": {"type": "tool", "name": tool}}).text)

    def tool_block(shape: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        start = next(i for i, s in enumerate(shape) if s[:2] == ("start", "tool_use"))
        return shape[start : shape.index(("content_block_stop",), start) + 1]

    assert tool_block(_blocks_and_deltas(ours)) == tool_block(_blocks_and_deltas(real))
    first = [d["delta"]["partial_json"] for e, d in ours if d.get("delta", {}).get("partial_json")]
    pieces = [d["delta"] for e, d in ours if e == "content_block_delta"]
    assert pieces[0] == {"type": "input_json_delta", "partial_json": ""}  # as recorded
    assert json.loads("".join(first)) is not None
    stop = next(d for e, d in ours if e == "message_delta")["delta"]
    assert stop == {"stop_reason": "tool_use", "stop_sequence": None}


def test_a_tool_search_streams_as_recorded() -> None:
    """The recorded tool search (bm25, two deferred tools): the search's blocks start as the
    API starts them, the result whole in its start, and the usage counts no search."""
    item = interactions("stream_tool_use_input_json_delta.yaml")[0]
    body = body_of(item["request"])
    real = stream_of(item)
    ask = 'call get_exchange_rate with {"from_currency": "USD", "to_currency": "EUR"}'
    ours = sse(offline({**body, "messages": [{"role": "user", "content": ask}]}).text)

    def search(shape: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        start = next(i for i, s in enumerate(shape) if s[:2] == ("start", "server_tool_use"))
        return shape[start : start + 5]  # the query's block, then the result's

    assert search(_blocks_and_deltas(ours)) == search(_blocks_and_deltas(real))
    usage = [next(d for e, d in x if e == "message_delta")["usage"] for x in (ours, real)]
    assert usage[0]["server_tool_use"] == usage[1]["server_tool_use"]
    starts = [next(d for e, d in x if e == "message_start") for x in (ours, real)]
    for start, end in zip(starts, usage, strict=True):  # the search's pass: more input
        assert end["input_tokens"] > 2 * start["message"]["usage"]["input_tokens"]


@pytest.mark.parametrize("name", ["stream_plain_text_short.yaml", "stream_cache_write_1h.yaml"])
def test_usage_has_the_recorded_fields(name: str) -> None:
    item = interactions(name)[0]
    real = stream_of(item)
    ours = sse(offline(body_of(item["request"])).text)
    real_start = real[0][1]["message"]["usage"]
    ours_start = ours[0][1]["message"]["usage"]
    expected = set(real_start) - {"inference_geo"}
    assert expected <= set(ours_start)
    assert ours_start["service_tier"] == real_start["service_tier"] == "standard"
    real_delta = next(d for e, d in real if e == "message_delta")["usage"]
    ours_delta = next(d for e, d in ours if e == "message_delta")["usage"]
    assert set(ours_delta) == set(real_delta)


def test_a_refused_request_gets_the_recorded_error_body() -> None:
    [item] = interactions("error_400_invalid_request.yaml")
    real = item["response"]["parsed_body"]
    ours = offline({"model": MODEL, "max_tokens": 10, "messages": []})
    assert ours.status_code == status_of(item) == 400
    body = ours.json()
    assert body.keys() == real.keys() and body["error"].keys() == real["error"].keys()
    assert body["type"] == real["type"] and body["error"]["type"] == real["error"]["type"]
    assert ours.headers["request-id"] == body["request_id"]


def test_compaction_passes_are_priced_as_one_request() -> None:
    # The recorded compaction response: two sampling passes, both billed.
    [item] = interactions("nonstream_compaction_usage_iterations.yaml")
    usage = TokenUsage.from_api(item["response"]["parsed_body"]["usage"])
    assert len(usage.iterations) == 2
    assert usage.cache_creation_input_tokens == 55096 and usage.output_tokens == 136
    pricer = Pricer()
    model = item["response"]["parsed_body"]["model"]
    each = sum(
        (pricer.price(model, p) for p in usage.iterations), start=pricer.price(model, TokenUsage())
    )
    assert pricer.price(model, usage) == each  # a flat-priced model: the readings agree
    # (on a tiered one the passes are priced as one request: tests/cost/test_pricing.py)


# --- 2. clients over 127.0.0.1 ---------------------------------------------------------


class City(BaseModel):
    name: str
    population: int
    kind: Literal["town", "city", "metropolis"]
    districts: list[str]
    mayor: str | None = None


WEATHER = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "unit"],
    },
}
LIST_DIR = {
    "name": "list_dir",
    "description": "List a folder",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def api() -> Iterator[LoopbackAPI]:
    with LoopbackAPI() as server:
        yield server


@pytest.fixture
def client(api: LoopbackAPI) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=api.base_url, api_key=KEY, max_retries=0)


def ask(client: anthropic.Anthropic, text: str, **kwargs: Any) -> anthropic.types.Message:
    kwargs.setdefault("max_tokens", 1024)
    return client.messages.create(
        model=MODEL, messages=[{"role": "user", "content": text}], **kwargs
    )


def test_sdk_models_list_and_retrieve(client: anthropic.Anthropic) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"claude-haiku-5-5", "claude-sonnet-5-5", "claude-fable-5-2"} <= set(ids)
    info = client.models.retrieve("claude-sonnet-5-5")
    assert info.id == "claude-sonnet-5-5" and info.max_tokens == 128_000
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nonexistent-1")


def test_sdk_parse_returns_the_schema_valid_object(client: anthropic.Anthropic) -> None:
    parsed = client.messages.parse(
        model=MODEL,
        max_tokens=1024,
        messages=[{"role": "user", "content": "Name a city"}],
        output_format=City,
    )
    city = parsed.parsed_output
    assert isinstance(city, City) and city.kind == "town" and len(city.districts) == 1
    jsonschema.validate(json.loads(parsed.content[0].text), City.model_json_schema())


def test_structured_output_follows_nested_schemas(client: anthropic.Anthropic) -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "minItems": 2,
                "items": {"$ref": "#/$defs/item"},
            },
            "when": {"type": "string", "format": "date-time"},
            "score": {"type": "number", "exclusiveMinimum": 3, "maximum": 9},
            "ok": {"type": "boolean"},
        },
        "required": ["items", "when", "score", "ok"],
        "additionalProperties": False,
        "$defs": {
            "item": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "tag": {"const": "x"}},
                "required": ["id", "tag"],
            }
        },
    }
    message = ask(
        client, "Report", output_config={"format": {"type": "json_schema", "schema": schema}}
    )
    value = json.loads(message.content[0].text)
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    assert len(value["items"]) == 2 and message.stop_reason == "end_turn"


def test_forced_and_forbidden_tool_choice(client: anthropic.Anthropic) -> None:
    tools = [LIST_DIR, WEATHER]
    named = ask(client, "say hi", tools=tools, tool_choice={"type": "tool", "name": "get_weather"})
    assert named.stop_reason == "tool_use"
    assert [b.type for b in named.content] == ["tool_use"]  # no text before a forced call
    assert named.content[0].name == "get_weather"
    jsonschema.validate(named.content[0].input, WEATHER["input_schema"])
    anyone = ask(client, "say hi", tools=tools, tool_choice={"type": "any"})
    assert anyone.stop_reason == "tool_use" and anyone.content[0].type == "tool_use"
    wanted = ask(client, "List the files", tools=tools)  # auto: it asks for list_dir
    assert wanted.stop_reason == "tool_use" and wanted.content[-1].name == "list_dir"
    none = ask(client, "List the files", tools=tools, tool_choice={"type": "none"})
    assert none.stop_reason == "end_turn" and all(b.type == "text" for b in none.content)


def test_stop_sequences_stop_the_text_there(client: anthropic.Anthropic) -> None:
    full = ask(client, "say hi").content[0].text
    cut = ask(client, "say hi", stop_sequences=["zzz", "offline"])
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == "offline"
    assert cut.content[0].text == full[: full.index("offline")]
    with client.messages.stream(
        model=MODEL,
        max_tokens=1024,
        messages=[{"role": "user", "content": "say hi"}],
        stop_sequences=["simulated"],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "simulated"
    assert final.content[0].text == full[: full.index("simulated")]


def test_stream_helper_with_thinking(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=BUDGET_MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "say hi"}],
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds
    assert [b.type for b in final.content] == ["thinking", "text"]
    thinking = final.content[0]
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    # thinking is output: billed with the text
    assert final.usage.output_tokens == sum(block_tokens(b.model_dump()) for b in final.content)
    assert final.usage.service_tier == "standard"
    adaptive = ask(client, "say hi", thinking={"type": "adaptive", "display": "omitted"})  # 5.5
    assert adaptive.content[0].type == "thinking" and adaptive.content[0].thinking == ""
    assert adaptive.content[0].signature


def test_max_tokens_bills_exactly_max_tokens_and_sends_the_cut_call(
    client: anthropic.Anthropic,
) -> None:
    forced = {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"}}
    whole = ask(client, "say hi", **forced).content[0]
    room = block_tokens(whole.model_dump()) - 2  # the call's input JSON is cut near its end
    cut = ask(client, "say hi", max_tokens=room, **forced)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == room
    block = cut.content[0]
    assert block.type == "tool_use" and block.name == "get_weather" and block.id
    # what arrived whole is kept, the value cut short is not
    assert block.input and block.input != whole.input
    assert all(whole.input[k] == v for k, v in block.input.items())
    with client.messages.stream(
        model=MODEL, max_tokens=room, messages=[{"role": "user", "content": "say hi"}], **forced
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == room
    assert final.content[0].type == "tool_use" and final.content[0].input == block.input
    text = ask(client, "say hi", max_tokens=5)
    assert text.stop_reason == "max_tokens" and text.usage.output_tokens == 5
    full = ask(client, "say hi").content[0].text
    assert (
        text.content[0].text
        and full.startswith(text.content[0].text)
        and text.content[0].text != full
    )


def test_count_tokens_counts_what_the_call_bills(client: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "What is in notes.txt?"}]
    counted = client.messages.count_tokens(model=MODEL, messages=messages, tools=[WEATHER])
    billed = client.messages.create(model=MODEL, max_tokens=64, messages=messages, tools=[WEATHER])
    assert counted.input_tokens == billed.usage.input_tokens > 0


def test_tool_runner_runs_the_tools_to_an_answer(client: anthropic.Anthropic) -> None:
    calls: list[str] = []

    @beta_tool
    def list_dir(path: str) -> str:
        """List a folder of the workspace.

        Args:
            path: the folder
        """
        calls.append(path)
        return "file 1,204 notes.txt\ndir - docs"

    runner = client.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=1024,
        tools=[list_dir],
        messages=[{"role": "user", "content": "List the files here"}],
        max_iterations=5,
    )
    final = runner.until_done()
    assert calls == ["."]
    assert final.stop_reason == "end_turn"
    assert "1 file and 1 folder" in final.content[0].text


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"messages": []}, "at least one message"),
    ({"messages": [{"role": "user", "content": ""}]}, "non-empty content"),
    ({"messages": [{"role": "user", "content": []}]}, "non-empty content"),
    ({"messages": [{"role": "assistant", "content": "Hi"}]}, "first message"),
    ({"messages": [{"role": "system", "content": "Hi"}]}, "role"),
    ({"max_tokens": None}, "max_tokens"),
    ({"max_tokens": 128_001}, "128001 > 128000"),
    ({"max_tokens": -1}, "greater than or equal to 0"),
    ({"temperatur": 0.5}, "temperatur: Extra inputs are not permitted"),
    ({"tool_choice": {"type": "any"}}, "tool_choice may only be specified while providing tools"),
    (
        {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
        "not one of the provided tools",
    ),
    ({"stop_sequences": ["  "]}, "non-whitespace"),
    ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "greater than or equal to 1024"),
    (
        {"max_tokens": 1024, "thinking": {"type": "enabled", "budget_tokens": 1024}},
        "`max_tokens` must be greater than `thinking.budget_tokens`",
    ),
    (
        {
            "model": BUDGET_MODEL,
            "max_tokens": 4096,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [WEATHER],
            "tool_choice": {"type": "any"},
        },
        "Thinking may not be enabled when tool_choice forces tool use",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}],
                },
                {"role": "user", "content": "And?"},
            ]
        },
        "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "Let me see."},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}],
                },
            ]
        },
        "unexpected `tool_use_id` found in `tool_result` blocks: toolu_9",
    ),
    ({"output_config": {"format": {"type": "json"}}}, "output_config.format"),
]


@pytest.mark.parametrize(("change", "message"), INVALID)
def test_invalid_requests_get_the_apis_400(
    api: LoopbackAPI, change: dict[str, Any], message: str
) -> None:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    response = httpx2.post(f"{api.base_url}/v1/messages", json=body, headers={"x-api-key": KEY})
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"] and error["request_id"].startswith("req_")


def test_what_the_api_allows_is_allowed(client: anthropic.Anthropic) -> None:
    # consecutive turns of one role are merged; a final assistant turn is a prefill;
    # max_tokens 0 only fills the cache
    merged = client.messages.create(
        model=PREFILL_MODEL,
        max_tokens=64,
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": "say hi"},
            {"role": "assistant", "content": ""},
        ],
    )
    assert merged.stop_reason in ("end_turn", "max_tokens")
    warm = ask(client, "Hello", max_tokens=0)
    assert warm.content == [] and warm.usage.output_tokens == 0


def test_sdk_raises_bad_request_with_the_message(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="at least one message") as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=[])
    assert info.value.status_code == 400 and info.value.request_id


def test_diagnostics_is_null_on_a_full_hit(client: anthropic.Anthropic) -> None:
    long = "The quick brown fox jumps over the lazy dog. " * 500
    messages: Any = [
        {
            "role": "user",
            "content": [{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}],
        }
    ]
    first = client.messages.create(model=MODEL, max_tokens=32, messages=messages)
    again = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=32,
        messages=messages,
        diagnostics={"previous_message_id": first.id},
    )
    body = again.http_response.json()
    assert body["usage"]["cache_read_input_tokens"] > 0 and body["diagnostics"] is None


# --- third-party clients ---------------------------------------------------------------


def test_litellm(api: LoopbackAPI) -> None:
    litellm = pytest.importorskip("litellm")
    common: dict[str, Any] = {
        "model": f"anthropic/{MODEL}",
        "api_base": api.base_url,
        "api_key": KEY,
        "max_tokens": 1024,
    }
    hi = [{"role": "user", "content": "say hi"}]
    structured = litellm.completion(messages=hi, response_format=City, **common)
    City.model_validate_json(structured.choices[0].message.content)
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]},
    }
    forced = litellm.completion(
        messages=hi,
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        **common,
    )
    call = forced.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["input_schema"])
    stopped = litellm.completion(messages=hi, stop=["offline"], **common)
    assert "offline" not in stopped.choices[0].message.content
    assert stopped.choices[0].message.content.startswith("Hello!")
    thought = litellm.completion(
        messages=hi,
        thinking={"type": "enabled", "budget_tokens": 1024},
        **{**common, "max_tokens": 2048},
    )
    assert thought.choices[0].message.reasoning_content
    with pytest.raises(litellm.BadRequestError, match="maximum allowed number of output tokens"):
        litellm.completion(messages=hi, **{**common, "max_tokens": 10**6})


def test_langchain_anthropic(api: LoopbackAPI) -> None:
    lc = pytest.importorskip("langchain_anthropic")
    llm = lc.ChatAnthropic(model=MODEL, base_url=api.base_url, api_key=KEY, max_tokens=1024)
    by_tool = llm.with_structured_output(City).invoke("Name a city")
    assert isinstance(by_tool, City)
    by_schema = llm.with_structured_output(City, method="json_schema").invoke("Name a city")
    assert isinstance(by_schema, City)
    bound = llm.bind_tools([WEATHER], tool_choice="get_weather").invoke("say hi")
    assert bound.tool_calls[0]["name"] == "get_weather"
    stopped = llm.invoke("say hi", stop=["offline"])
    assert stopped.response_metadata["stop_reason"] == "stop_sequence"
    thinker = lc.ChatAnthropic(
        model=BUDGET_MODEL,
        base_url=api.base_url,
        api_key=KEY,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    kinds = [b["type"] for b in thinker.invoke("say hi").content if isinstance(b, dict)]
    assert kinds == ["thinking", "text"]


def test_pydantic_ai(api: LoopbackAPI) -> None:
    pai = pytest.importorskip("pydantic_ai")
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    model = AnthropicModel(MODEL, provider=AnthropicProvider(base_url=api.base_url, api_key=KEY))
    by_tool = pai.Agent(model, output_type=City).run_sync("Name a city").output
    assert isinstance(by_tool, City)
    native = pai.Agent(model, output_type=pai.NativeOutput(City)).run_sync("Name a city").output
    assert isinstance(native, City)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "x"]), "content": _json}
)


@settings(max_examples=60, deadline=None)
@given(
    st.fixed_dictionaries(
        {"model": st.sampled_from([MODEL, "gpt-4", 3]), "messages": st.lists(_message, max_size=3)},
        optional={
            "max_tokens": _json,
            "tools": _json,
            "tool_choice": _json,
            "thinking": _json,
            "stop_sequences": _json,
            "output_config": _json,
            "system": _json,
            "stream": st.booleans(),
        },
    )
)
def test_any_request_gets_an_answer_or_the_apis_error(body: dict[str, Any]) -> None:
    # whatever arrives, the offline model answers as the API would: never a crash
    response = offline(body)
    assert response.status_code in (200, 400, 404)
    if response.status_code != 200:
        assert response.json()["type"] == "error"


_schema = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean"])})
    | st.fixed_dictionaries({"enum": st.lists(st.integers(), min_size=1, max_size=2)}),
    lambda inner: (
        st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.text("ab", min_size=1), inner),
            }
        )
        | st.fixed_dictionaries({"type": st.just("array"), "items": inner})
    ),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from([MODEL, BUDGET_MODEL, "claude-opus-5-5", "claude-opus-5"]),
    text=st.sampled_from(["say hi", "List the files", "read notes.txt", "x"]),
    max_tokens=st.integers(0, 3000),
    choice=st.sampled_from([None, "auto", "any", "tool", "none"]),
    thinking=st.sampled_from([None, 1024, "adaptive"]),
    stops=st.lists(st.sampled_from(["Hello", "files", " ", "x", "}"]), max_size=2),
    schema=st.none() | _schema,
    stream=st.booleans(),
)
def test_valid_requests_are_answered_within_their_rules(
    model: str,
    text: str,
    max_tokens: int,
    choice: str | None,
    thinking: int | str | None,
    stops: list[str],
    schema: dict[str, Any] | None,
    stream: bool,
) -> None:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
        "tools": [LIST_DIR, WEATHER],
        "stream": stream,
    }
    if choice:
        body["tool_choice"] = {
            "type": choice,
            **({"name": "get_weather"} if choice == "tool" else {}),
        }
    if thinking:
        body["thinking"] = (
            {"type": "adaptive"}
            if thinking == "adaptive"
            else {"type": "enabled", "budget_tokens": 1024}
        )
    if stops:
        body["stop_sequences"] = stops
    if schema is not None:
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    response = offline(body)
    problem = refusal(body)
    assert (response.status_code == 400) == (problem is not None)
    if problem is not None:
        return
    if stream:
        events = sse(response.text)
        final = next(d for e, d in events if e == "message_delta")
        stop, out = final["delta"]["stop_reason"], final["usage"]["output_tokens"]
    else:
        message = response.json()
        stop, out = message["stop_reason"], message["usage"]["output_tokens"]
        kinds = [b["type"] for b in message["content"]]
        if choice in ("any", "tool") and stop != "max_tokens":
            assert kinds == ["tool_use"]
        if choice == "none":
            assert "tool_use" not in kinds
        if schema is not None and stop == "end_turn" and kinds[-1:] == ["text"]:
            jsonschema.validate(json.loads(message["content"][-1]["text"]), schema)
    assert out <= max_tokens and (stop != "max_tokens" or out == max_tokens)
