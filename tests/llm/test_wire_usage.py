"""The usage and cost code against real recorded API traffic (shared/wire)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import pytest

from tests.support.wire import wire, wire_body
from tuiagent.cost.pricing import Pricer
from tuiagent.llm.client import stream_message
from tuiagent.llm.provider import CallResult, TextDelta
from tuiagent.llm.tokens import TokenUsage


def _client_replaying(body: str, status: int = 200) -> anthropic.AsyncAnthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            status,
            content=body.encode(),
            headers={"content-type": "text/event-stream", "request-id": "req_recorded"},
        )

    return anthropic.AsyncAnthropic(
        api_key="test",
        base_url="http://127.0.0.1:1",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


async def _replay(name: str, index: int = 0) -> tuple[CallResult, str]:
    cassette = wire(name)
    interaction = cassette["interactions"][index]
    client = _client_replaying(wire_body(interaction))
    text, result = "", None
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "x"}],
    }
    async for item in stream_message(client, request):
        if isinstance(item, TextDelta):
            text += item.text
        elif isinstance(item, CallResult):
            result = item
    assert result is not None
    return result, text


async def test_plain_stream_usage_and_text() -> None:
    result, text = await _replay("stream_plain_text_short.yaml")
    assert text == result.text and text
    assert result.stop_reason == "end_turn"
    assert result.request_id == "req_recorded"
    assert result.usage.output_tokens > 0


async def test_message_delta_overrides_message_start() -> None:
    result, _ = await _replay("stream_tool_use_input_json_delta.yaml")
    assert result.stop_reason == "tool_use"
    assert result.usage.input_tokens == 1591  # message_start said 702
    (use,) = result.tool_uses
    assert isinstance(use["input"], dict) and use["input"]


async def test_one_hour_write_split_survives_message_delta() -> None:
    result, _ = await _replay("stream_cache_write_1h.yaml")
    u = result.usage
    assert u.cache_creation_input_tokens == 3913
    assert u.cache_creation_1h_input_tokens == 3913
    assert u.cache_creation_5m_input_tokens == 0
    cost = Pricer().price("claude-sonnet-4-6", u)
    rates = Pricer().rates("claude-sonnet-4-6", u.total_input_tokens)
    assert cost.cache_write == rates.cache_write_1h * 3913
    assert rates.cache_write_1h == 2 * rates.input  # 1h writes cost 2x input on this model


async def test_compaction_iterations_are_summed() -> None:
    result, _ = await _replay("stream_compaction_usage_iterations.yaml")
    # message_start said cache_read 55096; message_delta says 0 at the top level; the
    # billed usage is the sum of usage.iterations.
    assert result.usage.cache_read_input_tokens == 55096
    assert result.usage.input_tokens == 100 + 181
    assert result.usage.output_tokens == 83 + 8


def test_nonstream_compaction_iterations_are_summed() -> None:
    interaction = wire("nonstream_compaction_usage_iterations.yaml")["interactions"][0]
    body = json.loads(wire_body(interaction))
    usage = TokenUsage.from_api(body["usage"])
    assert usage.cache_creation_input_tokens == 55096
    assert usage.cache_creation_5m_input_tokens == 55096
    assert usage.input_tokens == 100 + 229
    assert usage.output_tokens == 131 + 5


def test_read_and_write_in_one_turn_prices_exactly() -> None:
    interaction = wire("cache_read_plus_write_nonstream.yaml")["interactions"][-1]
    body = json.loads(wire_body(interaction))
    usage = TokenUsage.from_api(body["usage"])
    assert usage.cache_read_input_tokens == 1111
    assert usage.cache_creation_input_tokens == 418
    model = body["model"]
    pricer = Pricer()
    r = pricer.rates(model, usage.total_input_tokens)
    expected = (
        r.input * usage.input_tokens
        + r.output * usage.output_tokens
        + r.cache_read * 1111
        + r.cache_write_5m * usage.cache_creation_5m_input_tokens
        + r.cache_write_1h * usage.cache_creation_1h_input_tokens
    )
    cost = pricer.price(model, usage)
    assert cost.total == expected
    assert cost.cache_read == r.cache_read * 1111
    assert r.cache_read == r.input / 10


@pytest.mark.parametrize("index,read,write", [(0, 0, 1590), (1, 1590, 0)])
def test_write_then_read_5m(index: int, read: int, write: int) -> None:
    interaction = wire("cache_write_then_read_5m.yaml")["interactions"][index]
    body = json.loads(wire_body(interaction))
    usage = TokenUsage.from_api(body["usage"])
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (read, write)
    cost = Pricer().price(body["model"], usage)
    r = Pricer().rates(body["model"])
    assert cost.cache_write == r.cache_write_5m * write
    assert cost.cache_read == r.cache_read * read


def test_genai_prices_total_matches_breakdown_on_tiered_model() -> None:
    # claude-haiku-5-5 has prices that change above a prompt size: the split must follow.
    usage = TokenUsage(input_tokens=150_000, output_tokens=1000, cache_read_input_tokens=20_000)
    pricer = Pricer()
    cost = pricer.price("claude-haiku-5-5", usage)
    low = pricer.rates("claude-haiku-5-5", 10)
    high = pricer.rates("claude-haiku-5-5", usage.total_input_tokens)
    assert high.input > low.input
    assert cost.input == high.input * 150_000
    assert isinstance(cost.total, Decimal) and cost.total > 0
