"""The offline model as an Anthropic-compatible endpoint inside the process.

`OfflineModel` is an httpx2 transport handed to the real SDK client: requests go through
the SDK's own code (serialisation, SSE decoding, error mapping) and come back as the API
sends them: JSON, or SSE with message_start, content blocks, `input_json_delta` pieces,
a cumulative `message_delta` and message_stop. `count_tokens` answers too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2

from tuiagent.llm.offline.brain import PlannedCall, Reply, reply
from tuiagent.llm.offline.cache import CacheRuleError, PromptCache
from tuiagent.llm.tokens import block_tokens, estimate_request_tokens, estimate_tokens
from tuiagent.llm.window import context_window, prompt_too_long

_PIECES = re.compile(r"\S+\s*|\s+")


class _SSEBody(httpx2.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _error(status: int, etype: str, message: str, request_id: str) -> httpx2.Response:
    body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id}
    return httpx2.Response(status, json=body, headers={"request-id": request_id})


class OfflineModel(httpx2.AsyncBaseTransport):
    """A deterministic model that speaks the Messages API. Honest: it says it is simulated."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        tokens_per_second: float = 0.0,
        fill_max_tokens: bool = False,
        always_tool: bool = False,
        context_window: int | None = None,
    ) -> None:
        """`fill_max_tokens` and `always_tool` are stress modes for tests and benchmarks of
        the budget: every answer uses all of max_tokens, every turn asks for another tool.
        `context_window` caps every model's window (config `context_window`: a smaller
        endpoint); by default each model keeps its real one (llm/window.py)."""
        self.clock = clock
        self.cache = PromptCache(clock)
        self.tokens_per_second = tokens_per_second
        self.fill_max_tokens = fill_max_tokens
        self.always_tool = always_tool
        self.context_window = context_window
        self._counter = 0

    def _next_id(self, prefix: str, body: bytes) -> str:
        self._counter += 1
        digest = hashlib.sha256(body + str(self._counter).encode()).hexdigest()[:20]
        return f"{prefix}_offline{self._counter:04d}{digest}"

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raw = await request.aread()
        request_id = self._next_id("req", raw)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return _error(400, "invalid_request_error", "request body is not JSON", request_id)
        path = request.url.path
        model = str(body.get("model", ""))
        if request.method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return _error(404, "not_found_error", f"Not found: {request.method} {path}", request_id)
        if not model.startswith("claude-"):
            return _error(404, "not_found_error", f"model: {model}", request_id)
        if path.endswith("count_tokens"):
            return httpx2.Response(
                200,
                json={"input_tokens": estimate_request_tokens(body)},
                headers={"request-id": request_id},
            )
        return self._messages(body, model, request_id, raw)

    def _messages(
        self, body: dict[str, Any], model: str, request_id: str, raw: bytes
    ) -> httpx2.Response:
        max_tokens = int(body.get("max_tokens") or 0)
        if max_tokens < 1:
            return _error(
                400, "invalid_request_error", "max_tokens: must be at least 1", request_id
            )
        too_long = self._over_window(body, model, request_id)
        if too_long is not None:
            return too_long
        message_id = self._next_id("msg", raw)
        previous = (body.get("diagnostics") or {}).get("previous_message_id")
        try:
            cache = self.cache.process(model, body, message_id, previous)
        except CacheRuleError as exc:
            return _error(400, "invalid_request_error", str(exc), request_id)
        content, stop_reason = self._content(body, max_tokens)
        output_tokens = sum(block_tokens(b) for b in content)
        usage = {
            "input_tokens": cache.uncached,
            "cache_creation_input_tokens": cache.write,
            "cache_read_input_tokens": cache.read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cache.write_5m,
                "ephemeral_1h_input_tokens": cache.write_1h,
            },
            "output_tokens": output_tokens,
        }
        diagnostics = None
        if "diagnostics" in body:  # asked for, as the API does: the reason is an object
            reason = cache.miss_reason
            diagnostics = {
                "cache_miss_reason": None
                if reason is None
                else {"type": reason, "cache_missed_input_tokens": cache.missed_tokens}
            }
        headers = {"request-id": request_id, "x-tuiagent-simulated": "true"}
        if not body.get("stream"):
            message = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
                "diagnostics": diagnostics,
            }
            return httpx2.Response(200, json=message, headers=headers)
        headers["content-type"] = "text/event-stream; charset=utf-8"
        stream = self._stream(message_id, model, content, stop_reason, usage, diagnostics)
        return httpx2.Response(200, headers=headers, stream=_SSEBody(stream))

    def _over_window(
        self, body: dict[str, Any], model: str, request_id: str
    ) -> httpx2.Response | None:
        """The API's 400 for a request whose input is above the model's context window."""
        window = context_window(model, self.context_window)
        tokens = estimate_request_tokens(body)
        if tokens <= window:
            return None
        return _error(400, "invalid_request_error", prompt_too_long(tokens, window), request_id)

    def _content(self, body: dict[str, Any], max_tokens: int) -> tuple[list[dict[str, Any]], str]:
        turn = reply(body)
        if self.always_tool and turn.tool_call is None:
            turn = Reply("Let me look again.", PlannedCall("list_dir", {"path": "."}))
        if self.fill_max_tokens:
            # Pad the text so that text + tool call use every token of max_tokens.
            call_tokens = 0
            if turn.tool_call is not None:
                call_tokens = block_tokens(
                    {"type": "tool_use", "name": turn.tool_call.name, "input": turn.tool_call.input}
                )
            room = max_tokens - estimate_tokens(turn.text) - call_tokens
            turn = Reply(turn.text + " word" * max(0, room), turn.tool_call)
        content: list[dict[str, Any]] = []
        budget = max_tokens
        text = turn.text
        if estimate_tokens(text) > budget:
            pieces, used = [], 0
            for piece in _PIECES.findall(text):
                cost = estimate_tokens(piece)
                if used + cost > budget:
                    break
                pieces.append(piece)
                used += cost
            text = "".join(pieces)
            if text:
                content.append({"type": "text", "text": text})
            return content, "max_tokens"
        if text:
            content.append({"type": "text", "text": text})
        budget -= estimate_tokens(text)
        if turn.tool_call is not None:
            call = {
                "type": "tool_use",
                "id": "toolu_" + self._next_id("", json.dumps(turn.tool_call.input).encode())[1:],
                "name": turn.tool_call.name,
                "input": turn.tool_call.input,
            }
            if block_tokens(call) > budget:
                return content, "max_tokens"
            content.append(call)
            return content, "tool_use"
        return content, "end_turn"

    async def _stream(
        self,
        message_id: str,
        model: str,
        content: list[dict[str, Any]],
        stop_reason: str,
        usage: dict[str, Any],
        diagnostics: dict[str, Any] | None,
    ) -> AsyncIterator[bytes]:
        start_usage = dict(usage, output_tokens=1)
        yield _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                    "diagnostics": diagnostics,
                },
            },
        )
        yield _sse("ping", {"type": "ping"})
        delay = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        for index, block in enumerate(content):
            start: dict[str, Any]
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                yield _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
                for piece in _PIECES.findall(block["text"]):
                    if delay:
                        await asyncio.sleep(delay * max(1, estimate_tokens(piece)))
                    delta = {"type": "text_delta", "text": piece}
                    yield _sse(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                yield _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
                encoded = json.dumps(block["input"])
                for piece in ["", *(encoded[i : i + 16] for i in range(0, len(encoded), 16))]:
                    delta = {"type": "input_json_delta", "partial_json": piece}
                    yield _sse(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        final = {k: v for k, v in usage.items() if k != "cache_creation"}
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": final,
            },
        )
        yield _sse("message_stop", {"type": "message_stop"})
