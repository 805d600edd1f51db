"""A hostile Messages API in the process: the offline model's answers, bent the ways real
gateways and broken servers bend them, with the server's own books kept.

`HostileModel.billed` holds, per /v1/messages request it answered, what it billed and what
that request allowed (its model, its max_tokens, its true input size), so a test can check
the cap against the server's side of the story, not the client's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx2

from tuiagent.cost.pricing import Pricer
from tuiagent.llm.tokens import TokenUsage, estimate_request_tokens
from tuiagent.offline import OfflineModel

# What one answer can be. "honest" is the offline model's answer as it is.
ANSWERS = (
    "honest",
    "cut_tool_json",  # a tool call's JSON cut at max_tokens, as real gateways send it
    "non_json_data",  # an SSE data line that is not JSON
    "missing_message",  # message_start without its message
    "missing_index",  # a content delta without its index
    "negative_usage",
    "huge_usage",
    "string_usage",
    "over_max_tokens",  # output billed above max_tokens
    "swapped_model",  # the answer names (and bills as) another model
    "drop_after_start",  # the connection ends after message_start
    "plain_json",  # a JSON 200 where a stream was asked for
    "overloaded",  # a 529 before anything is billed
)
# What a count_tokens answer can be.
COUNTS = ("honest", "zero", "negative", "missing", "string", "404")

_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
_NOT_FOUND = {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}


@dataclass(frozen=True)
class Billed:
    """One request as the server saw it: what it billed, and what the request allowed."""

    model: str
    max_tokens: int
    usage: TokenUsage  # what the server billed
    true_input_tokens: int  # the request's real size (the honest count)
    headers: Mapping[str, str] = field(default_factory=dict)  # as the request came (lower case)

    def within_allowed(self) -> TokenUsage:
        """The bill, cut to what the request allowed: its max_tokens, its real input."""
        u = self.usage
        over_in = max(0, u.total_input_tokens - self.true_input_tokens)
        return TokenUsage(
            input_tokens=max(0, u.input_tokens - over_in),
            output_tokens=min(u.output_tokens, self.max_tokens),
            cache_read_input_tokens=u.cache_read_input_tokens,
            cache_creation_input_tokens=u.cache_creation_input_tokens,
            cache_creation_5m_input_tokens=u.cache_creation_5m_input_tokens,
            cache_creation_1h_input_tokens=u.cache_creation_1h_input_tokens,
        )


def _events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for chunk in raw.split(b"\n\n"):
        if not chunk.strip():
            continue
        name, data = "", "{}"
        for line in chunk.decode().splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        out.append((name, json.loads(data)))
    return out


def _sse(name: str, data: Any) -> bytes:
    body = data if isinstance(data, str) else json.dumps(data)
    return f"event: {name}\ndata: {body}\n\n".encode()


class HostileModel(OfflineModel):
    def __init__(
        self,
        answers: list[str],
        counts: list[str] | None = None,
        *,
        swap_to: str = "claude-fable-5-2",
        on_request: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.answers = deque(answers)
        self.counts = deque(counts or [])
        self.swap_to = swap_to
        self.on_request = on_request  # called as each /v1/messages request arrives
        self.billed: list[Billed] = []
        self.seen = 0  # /v1/messages requests answered

    def bill(self, pricer: Pricer) -> Decimal:
        """What the server billed within what each request allowed, at the requested model."""
        return sum(
            (pricer.price(b.model, b.within_allowed()).total for b in self.billed), Decimal(0)
        )

    def _book(self, request: httpx2.Request, billed: Billed) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.billed.append(dataclasses.replace(billed, headers=headers))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("count_tokens"):
            return await self._count(request)
        kind = self.answers.popleft() if self.answers else "honest"
        self.seen += 1
        if self.on_request is not None:
            self.on_request(self.seen)
        body = json.loads(await request.aread())
        model, max_tokens = str(body["model"]), int(body["max_tokens"])
        if kind == "overloaded":
            self._book(request, Billed(model, max_tokens, TokenUsage(), 0))
            return httpx2.Response(529, json=_OVERLOADED, headers={"x-should-retry": "true"})
        try:
            honest = await super().handle_async_request(request)
            raw = b"".join([chunk async for chunk in honest.stream])  # type: ignore[union-attr]
        except asyncio.CancelledError:  # the client went away: its input was read and billed
            read = TokenUsage(input_tokens=estimate_request_tokens(body))
            self._book(request, Billed(model, max_tokens, read, read.input_tokens))
            raise
        if honest.status_code != 200:
            self._book(request, Billed(model, max_tokens, TokenUsage(), 0))
            return httpx2.Response(honest.status_code, content=raw, headers=honest.headers)
        events = _events(raw)
        start = events[0][1]["message"]
        delta = next(d for n, d in events if n == "message_delta")
        usage = TokenUsage.from_api(start["usage"]).with_delta(delta["usage"])
        billed = usage
        out: list[bytes]
        if kind == "cut_tool_json":
            billed = TokenUsage(**{**usage.as_record(), "output_tokens": max_tokens})
            block = {"type": "tool_use", "id": "toolu_cut", "name": "read_file", "input": {}}
            cut = {"type": "input_json_delta", "partial_json": '{"path": "REA'}
            final = {**delta, "delta": {"stop_reason": "max_tokens", "stop_sequence": None}}
            final["usage"] = {**delta["usage"], "output_tokens": max_tokens}
            out = [
                _sse("message_start", events[0][1]),
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": block},
                ),
                _sse(
                    "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": cut}
                ),
                _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                _sse("message_delta", final),
                _sse("message_stop", {"type": "message_stop"}),
            ]
        elif kind == "non_json_data":
            out = [_sse(*events[0]), _sse("content_block_delta", "this is not json")]
        elif kind == "missing_message":
            out = [
                _sse("message_start", {"type": "message_start"}),
                *(_sse(*e) for e in events[1:]),
            ]
        elif kind == "missing_index":
            out = [
                _sse(n, {k: v for k, v in d.items() if k != "index"})
                if n == "content_block_delta"
                else _sse(n, d)
                for n, d in events
            ]
        elif kind in ("negative_usage", "huge_usage", "string_usage"):
            bad: Any = {"negative_usage": -10_000_000, "huge_usage": 10**30}.get(kind, "many")
            out = [
                _sse(n, {**d, "usage": {**d["usage"], "output_tokens": bad}})
                if n == "message_delta"
                else _sse(n, d)
                for n, d in events
            ]
        elif kind == "over_max_tokens":
            billed = TokenUsage(**{**usage.as_record(), "output_tokens": 2 * max_tokens + 7})
            out = [
                _sse(n, {**d, "usage": {**d["usage"], "output_tokens": billed.output_tokens}})
                if n == "message_delta"
                else _sse(n, d)
                for n, d in events
            ]
        elif kind == "swapped_model":
            first = {**events[0][1], "message": {**start, "model": self.swap_to}}
            out = [_sse("message_start", first), *(_sse(*e) for e in events[1:])]
        elif kind == "drop_after_start":
            out = [_sse(*events[0])]  # the server generated the rest and billed it
        elif kind == "plain_json":
            content: list[dict[str, Any]] = []
            for n, d in events:
                if n == "content_block_start":
                    content.append(dict(d["content_block"]))
                elif n == "content_block_delta" and d["delta"].get("type") == "text_delta":
                    content[-1]["text"] = content[-1].get("text", "") + d["delta"]["text"]
            content = [c for c in content if c.get("type") == "text"] or [
                {"type": "text", "text": "ok"}
            ]
            message = {**start, "content": content, "stop_reason": "end_turn"}
            message["usage"] = {**start["usage"], **delta["usage"]}
            self._book(request, Billed(model, max_tokens, usage, usage.total_input_tokens))
            return httpx2.Response(200, json=message, headers={"request-id": "req_plain"})
        else:
            out = [_sse(*e) for e in events]
        self._book(request, Billed(model, max_tokens, billed, usage.total_input_tokens))
        headers = {**honest.headers, "content-type": "text/event-stream"}
        headers.pop("content-length", None)
        return httpx2.Response(200, headers=headers, content=b"".join(out))

    async def _count(self, request: httpx2.Request) -> httpx2.Response:
        kind = self.counts.popleft() if self.counts else "honest"
        honest = await super().handle_async_request(request)
        await asyncio.sleep(0)
        if kind == "honest" or honest.status_code != 200:
            return honest
        if kind == "404":
            return httpx2.Response(404, json=_NOT_FOUND)
        value: Any = {"zero": 0, "negative": -10_000_000, "string": "many"}.get(kind)
        return httpx2.Response(200, json={} if kind == "missing" else {"input_tokens": value})
