"""The wire layer against a hostile server (issue 11): every way a response can be wrong
ends in a CallResult or a CallFailed that says what was billed, never in a traceback.

Each fault runs through the real SDK twice: over real HTTP (LoopbackAPI) and in-process
(FaultyModel as the client's transport)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from tests.support.loopback import Fault, FaultyModel, LoopbackAPI
from tests.support.wire import WIRE, wire, wire_body
from tuiagent.config import DEFAULT_TIER_MODELS
from tuiagent.llm.client import count_tokens, make_client, stream_message
from tuiagent.llm.provider import (
    CallFailed,
    CallResult,
    StreamItem,
    TextDelta,
    ToolUseStarted,
    UsageUpdate,
)
from tuiagent.llm.tokens import BadUsage, TokenUsage, estimate_request_tokens

MODEL = DEFAULT_TIER_MODELS["balanced"]
MAX_TOKENS = 200
REQUEST: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": MAX_TOKENS,
    "messages": [{"role": "user", "content": "hello"}],
}


@pytest.fixture(params=["http", "in_process"])
def serve(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """serve(faults) -> a client whose server applies the faults in order."""
    servers: list[LoopbackAPI] = []

    def make(faults: list[Fault]) -> anthropic.AsyncAnthropic:
        if request.param == "in_process":
            return make_client(offline_transport=FaultyModel(faults))
        api = LoopbackAPI(faults=faults).__enter__()
        servers.append(api)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        return make_client()

    yield make
    for api in servers:
        api.__exit__()


async def call(
    client: anthropic.AsyncAnthropic, **kwargs: float
) -> tuple[list[StreamItem], CallFailed | None]:
    items: list[StreamItem] = []
    try:
        async for item in stream_message(client, dict(REQUEST), **kwargs):
            items.append(item)
    except CallFailed as failure:
        return items, failure
    return items, None


def start_usage(items: list[StreamItem]) -> TokenUsage:
    """What message_start billed, as its UsageUpdate said."""
    first = next(i for i in items if isinstance(i, UsageUpdate))
    assert first.usage.input_tokens > 0
    return first.usage


def result_of(items: list[StreamItem], failure: CallFailed | None) -> CallResult:
    assert failure is None, failure
    assert isinstance(items[-1], CallResult)
    return items[-1]


async def test_honest_call_for_reference(serve: Any) -> None:
    items, failure = await call(serve([]))
    result = result_of(items, failure)
    assert result.text and result.stop_reason == "end_turn" and not result.cut_tool_calls
    assert result.response_model == result.model == MODEL
    assert "".join(i.text for i in items if isinstance(i, TextDelta)) == result.text


@pytest.mark.parametrize("stop_block", [True, False])
async def test_cut_tool_json_is_a_result_with_the_call_listed(serve: Any, stop_block: bool) -> None:
    items, failure = await call(serve([Fault("cut_tool_json", stop_block=stop_block)]))
    result = result_of(items, failure)
    assert result.stop_reason == "max_tokens"
    assert result.cut_tool_calls == ["read_file"]
    assert result.content == [{"type": "text", "text": "Let me read it."}]
    assert result.usage.output_tokens == MAX_TOKENS  # priced as billed
    assert [i.name for i in items if isinstance(i, ToolUseStarted)] == ["read_file"]


@pytest.mark.parametrize("kind", ["tool_input_list", "non_json_data", "delta_without_index"])
async def test_malformed_after_message_start_keeps_its_usage(serve: Any, kind: str) -> None:
    items, failure = await call(serve([Fault(kind)]))
    assert failure is not None and not any(isinstance(i, CallResult) for i in items)
    assert failure.error_type == "malformed_stream" and failure.status == 200
    assert failure.usage_seen and failure.sent
    assert failure.partial_usage == start_usage(items)


async def test_message_start_without_message(serve: Any) -> None:
    items, failure = await call(serve([Fault("missing_message")]))
    assert items == [] and failure is not None
    assert failure.error_type == "malformed_stream"
    assert not failure.usage_seen and failure.partial_usage == TokenUsage()


@pytest.mark.parametrize("value", ["12", -5, 1e30, True, 10**10, None])
async def test_bad_usage_in_message_delta_makes_the_bill_unknown(serve: Any, value: object) -> None:
    items, failure = await call(serve([Fault("bad_usage", value=value)]))
    if value is None:  # null is absent: message_start's output count stands
        assert result_of(items, failure).usage.output_tokens == start_usage(items).output_tokens
        return
    assert failure is not None and failure.error_type == "bad_usage"
    assert not failure.usage_seen  # what the server billed is unknown
    assert failure.partial_usage == start_usage(items)  # the last valid one, for information


@pytest.mark.parametrize("value", ["12", -5, 1e30, True])
async def test_bad_usage_in_message_start(serve: Any, value: object) -> None:
    items, failure = await call(serve([Fault("bad_usage", value=value, at="message_start")]))
    assert items == [] and failure is not None and failure.error_type == "bad_usage"
    assert not failure.usage_seen and failure.partial_usage == TokenUsage()


async def test_output_above_max_tokens_is_reported_as_billed(serve: Any) -> None:
    items, failure = await call(serve([Fault("output_above_max")]))
    assert result_of(items, failure).usage.output_tokens == 3 * MAX_TOKENS


async def test_input_above_the_count_is_reported_as_billed(serve: Any) -> None:
    client = serve([Fault("input_above_count")])
    counted = await count_tokens(client, REQUEST)
    assert counted == estimate_request_tokens(REQUEST)
    items, failure = await call(client)
    assert result_of(items, failure).usage.total_input_tokens == 5 * counted


async def test_swapped_model_is_named(serve: Any) -> None:
    items, failure = await call(serve([Fault("swapped_model")]))
    result = result_of(items, failure)
    assert result.model == MODEL and result.response_model == DEFAULT_TIER_MODELS["deep"]


async def test_drop_after_message_start(serve: Any) -> None:
    items, failure = await call(serve([Fault("drop_after_message_start")]))
    assert failure is not None and failure.error_type == "connection_error"
    assert failure.status == 200 and failure.usage_seen and failure.sent
    assert failure.partial_usage == start_usage(items)


async def test_mid_stream_error_event(serve: Any) -> None:
    items, failure = await call(serve([Fault("stream_error")]))
    assert failure is not None and failure.error_type == "overloaded_error"
    assert failure.status == 200 and failure.usage_seen
    assert failure.partial_usage == start_usage(items)


async def test_http_error_was_sent_and_billed_nothing(serve: Any) -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    items, failure = await call(serve([Fault("status", 429, body, {"retry-after": "3"})]))
    assert items == [] and failure is not None
    assert (failure.status, failure.error_type, failure.retry_after_s) == (
        429,
        "rate_limit_error",
        3.0,
    )
    assert failure.sent and failure.usage_seen and failure.partial_usage == TokenUsage()


async def test_stall_after_ping_ends_at_the_idle_deadline(serve: Any) -> None:
    items, failure = await call(
        serve([Fault("stall_after_ping")]), idle_timeout_s=0.2, call_timeout_s=30
    )
    assert failure is not None and failure.error_type == "timeout" and failure.status is None
    assert "0.2s" in failure.message
    assert failure.usage_seen and failure.partial_usage == start_usage(items)


async def test_the_response_is_closed_before_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that keeps the connection open after message_stop: the client hangs up as
    soon as it has the message, not when its generator is collected."""
    with LoopbackAPI(faults=[Fault("hold_after_stop")]) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        stream = stream_message(make_client(), dict(REQUEST))
        async for item in stream:
            if isinstance(item, CallResult):
                break
        for _ in range(100):  # the generator is still referenced and not closed
            if api.hangups:
                break
            await asyncio.sleep(0.02)
        assert api.hangups == 1
        await stream.aclose()


@pytest.mark.parametrize("of", ["ping", "event"])
async def test_trickle_ends_at_the_idle_deadline(serve: Any, of: str) -> None:
    fault = Fault("trickle", of=of, delay_s=0.02)
    items, failure = await call(serve([fault]), idle_timeout_s=0.2, call_timeout_s=30)
    assert failure is not None and failure.error_type == "timeout" and failure.usage_seen
    assert failure.partial_usage == start_usage(items)


async def test_slow_but_steady_stream_ends_at_the_call_deadline(serve: Any) -> None:
    _, failure = await call(
        serve([Fault("slow", delay_s=0.05)]), idle_timeout_s=30, call_timeout_s=0.2
    )
    assert failure is not None and failure.error_type == "timeout"
    assert "longer than 0.2s" in failure.message and failure.usage_seen


async def test_plain_json_200_is_a_priced_message(serve: Any) -> None:
    items, failure = await call(serve([Fault("plain_json")]))
    result = result_of(items, failure)
    assert result.text and result.stop_reason == "end_turn"
    assert "".join(i.text for i in items if isinstance(i, TextDelta)) == result.text
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 1
    assert [i.usage for i in items if isinstance(i, UsageUpdate)] == [result.usage]


@pytest.mark.parametrize(
    "body,error_type",
    [
        ({"type": "message", "content": "not a list"}, "malformed_stream"),
        ({"type": "message", "content": []}, "malformed_stream"),  # no usage at all
        ({"type": "message", "content": [], "usage": {"input_tokens": "9"}}, "bad_usage"),
        ({"type": "error", "error": {"type": "api_error", "message": "x"}}, "api_error"),
    ],
)
async def test_plain_json_200_that_is_not_a_message(
    serve: Any, body: dict[str, Any], error_type: str
) -> None:
    _, failure = await call(serve([Fault("plain_json", body=body)]))
    assert failure is not None and failure.error_type == error_type
    assert not failure.usage_seen and failure.status == 200


async def test_count_faults(serve: Any) -> None:
    kinds = ["count_zero", "count_negative", "count_missing", "count_string", "count_404"]
    client = serve([Fault(k) for k in kinds])
    assert await count_tokens(client, REQUEST) == 0  # non-negative: the caller takes the larger
    for kind in kinds[1:4]:
        with pytest.raises(CallFailed) as bad:
            await count_tokens(client, REQUEST)
        assert bad.value.error_type == "bad_count" and bad.value.status == 200, kind
    with pytest.raises(CallFailed) as missing:
        await count_tokens(client, REQUEST)
    assert (missing.value.status, missing.value.error_type) == (404, "not_found_error")
    assert await count_tokens(client, REQUEST) == estimate_request_tokens(REQUEST)


async def test_faults_compose_in_order(serve: Any) -> None:
    client = serve([Fault("count_zero"), Fault("bad_usage", value="12"), Fault("cut_tool_json")])
    assert await count_tokens(client, REQUEST) == 0
    _, failure = await call(client)
    assert failure is not None and failure.error_type == "bad_usage"
    assert result_of(*await call(client)).cut_tool_calls == ["read_file"]
    assert result_of(*await call(client)).text  # then honest again


async def test_cancellation_propagates(serve: Any) -> None:
    client = serve([Fault("stall_after_ping")])
    seen: list[StreamItem] = []

    async def consume() -> None:
        async for item in stream_message(client, dict(REQUEST)):
            seen.append(item)

    task = asyncio.create_task(consume())
    while not seen:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(seen[0], UsageUpdate)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_connection_refused_was_never_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    items, failure = await call(make_client())
    assert items == [] and failure is not None
    assert failure.error_type == "connection_error" and not failure.sent
    with pytest.raises(CallFailed) as counted:
        await count_tokens(make_client(), REQUEST)
    assert not counted.value.sent


async def test_a_drop_after_sending_was_sent() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.RemoteProtocolError("peer closed the connection", request=request)

    client = anthropic.AsyncAnthropic(
        api_key="t",
        base_url="http://127.0.0.1:1",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )
    _, failure = await call(client)
    assert failure is not None and failure.error_type == "connection_error" and failure.sent


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": "12"},
        {"input_tokens": -5},
        {"output_tokens": 1e30},
        {"output_tokens": True},
        {"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": -1}},
        {"input_tokens": 1, "cache_creation": [3]},
        {"iterations": [{"input_tokens": 1}, {"input_tokens": "2"}]},
        {"iterations": [{"input_tokens": 1}, 7]},
        "12",
    ],
)
def test_token_usage_refuses_what_cannot_be_billed(usage: Any) -> None:
    with pytest.raises(BadUsage):
        TokenUsage.from_api(usage)
    with pytest.raises(BadUsage):
        TokenUsage(input_tokens=3).with_delta(usage)


# The recorded real traffic: every stream parses exactly as the SDK's own accumulator reads
# it, and every recorded non-streaming Message, sent as a JSON 200 to a stream=true request,
# gives the same call.


def _replaying(body: str, content_type: str) -> anthropic.AsyncAnthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": content_type, "request-id": "req_recorded"}
        return httpx2.Response(200, content=body.encode(), headers=headers)

    return anthropic.AsyncAnthropic(
        api_key="t",
        base_url="http://127.0.0.1:1",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


def _recorded(prefix: str) -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(WIRE.glob(f"{prefix}*.yaml")):
        for index, interaction in enumerate(wire(path.name)["interactions"]):
            code = interaction["response"]["status"]
            if (code["code"] if isinstance(code, dict) else code) == 200:
                found.append((path.name, index, wire_body(interaction)))
    return found


async def _result(client: anthropic.AsyncAnthropic) -> CallResult:
    items, failure = await call(client)
    return result_of(items, failure)


def _same_content(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    keys = ("type", "text", "name", "id", "input", "thinking", "signature")
    strip = [{k: b.get(k) for k in keys if b.get(k) is not None} for b in theirs]
    assert [{k: b.get(k) for k in keys if b.get(k) is not None} for b in ours] == strip


@pytest.mark.parametrize("name,index,body", _recorded("stream_"))
async def test_recorded_streams_parse_as_the_sdk_reads_them(
    name: str, index: int, body: str
) -> None:
    ours = await _result(_replaying(body, "text/event-stream"))
    async with _replaying(body, "text/event-stream").messages.stream(**REQUEST) as sdk:
        theirs = await sdk.get_final_message()
    _same_content(ours.content, [b.model_dump() for b in theirs.content])
    assert ours.stop_reason == theirs.stop_reason and ours.response_model == theirs.model
    assert not ours.cut_tool_calls


@pytest.mark.parametrize("name,index,body", _recorded("nonstream_") + _recorded("cache_"))
async def test_recorded_messages_as_a_json_200(name: str, index: int, body: str) -> None:
    message = json.loads(body)
    ours = await _result(_replaying(body, "application/json"))
    _same_content(ours.content, message["content"])
    assert ours.usage == TokenUsage.from_api(message["usage"])
    assert ours.stop_reason == message["stop_reason"] and ours.response_model == message["model"]


START = {
    "type": "message_start",
    "message": {"id": "msg_1", "model": MODEL, "usage": {"input_tokens": 40, "output_tokens": 1}},
}
TEXT_START = {
    "type": "content_block_start",
    "index": 0,
    "content_block": {"type": "text", "text": ""},
}
TOOL = {"type": "tool_use", "id": "toolu_1", "name": "grep", "input": {}}
END = [
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
]


def _sse_body(events: list[object]) -> str:
    return "".join(
        f"event: {e.get('type', 'x') if isinstance(e, dict) else 'x'}\n"
        f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n"
        for e in events
    )


def _delta(index: object, delta: object) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


@pytest.mark.parametrize(
    "events",
    [
        [START, _delta(3, {"type": "text_delta", "text": "x"})],  # an unknown index
        [START, _delta("0", {"type": "text_delta", "text": "x"})],
        [TEXT_START, START],  # content before message_start
        [START, START],
        [START, TEXT_START, TEXT_START],
        [
            START,
            TEXT_START,
            {"type": "content_block_stop", "index": 0},
            _delta(0, {"type": "text_delta", "text": "x"}),
        ],
        [START, TEXT_START, _delta(0, {"type": "text_delta", "text": 7})],
        [START, TEXT_START, _delta(0, "not an object")],
        [START, {"type": "content_block_start", "index": 0, "content_block": "text"}],
        [
            START,
            {"type": "content_block_start", "index": 0, "content_block": {**TOOL, "input": [1]}},
        ],
        [
            START,
            {"type": "content_block_start", "index": 0, "content_block": {**TOOL, "name": None}},
        ],
        [START, {"type": "message_delta", "delta": {"stop_reason": 3}}],
        [START, [1, 2]],
        [START, '{"type": "message_delta", "delta": '],  # JSON cut mid-event
    ],
)
async def test_streams_out_of_protocol_are_malformed(events: list[object]) -> None:
    _, failure = await call(_replaying(_sse_body(events), "text/event-stream"))
    assert failure is not None and failure.error_type == "malformed_stream", failure
    assert failure.status == 200 and failure.usage_seen == (events[0] is START)
    assert failure.partial_usage.input_tokens == (40 if events[0] is START else 0)


async def test_stream_without_usage_is_not_free() -> None:
    start = {"type": "message_start", "message": {"id": "m", "model": MODEL}}
    body = _sse_body([start, {"type": "message_delta", "delta": {}}, {"type": "message_stop"}])
    _, failure = await call(_replaying(body, "text/event-stream"))
    assert failure is not None and failure.error_type == "malformed_stream"
    assert not failure.usage_seen


async def test_error_event_with_text_data() -> None:
    body = _sse_body([START]) + "event: error\ndata: upstream went away\n\n"
    _, failure = await call(_replaying(body, "text/event-stream"))
    assert failure is not None and failure.error_type == "stream_error" and failure.usage_seen


@pytest.mark.parametrize("stop_reason", ["tool_use", "end_turn", "max_tokens"])
async def test_invalid_tool_json_is_cut_whatever_the_stop_reason(stop_reason: str) -> None:
    tool_start = {"type": "content_block_start", "index": 1, "content_block": TOOL}
    good = {"type": "content_block_start", "index": 2, "content_block": {**TOOL, "id": "toolu_2"}}
    events = [
        START,
        tool_start,
        _delta(1, {"type": "input_json_delta", "partial_json": '{"a": '}),
        {"type": "content_block_stop", "index": 1},
        good,
        _delta(2, {"type": "input_json_delta", "partial_json": '{"pattern": "x"}'}),
        {"type": "content_block_stop", "index": 2},
        {**END[0], "delta": {"stop_reason": stop_reason}},
        END[1],
    ]
    result = await _result(_replaying(_sse_body(events), "text/event-stream"))
    assert result.cut_tool_calls == ["grep"] and result.stop_reason == stop_reason
    assert result.tool_uses == [{**TOOL, "id": "toolu_2", "input": {"pattern": "x"}}]
    assert result.usage == TokenUsage(input_tokens=40, output_tokens=9)
