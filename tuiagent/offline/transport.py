"""The offline model as an Anthropic-compatible endpoint inside the process.

`OfflineModel` is an httpx2 transport handed to the real SDK client: requests go through
the SDK's own code (serialisation, SSE decoding, error mapping) and come back as the API
sends them: JSON, or SSE with message_start, content blocks, `thinking_delta` and
`signature_delta`, `input_json_delta` pieces, a cumulative `message_delta` and message_stop.
`count_tokens`, `GET /v1/models` and `GET /v1/models/{id}` answer too. A request the API
would refuse gets its 400 (the rules are in `rules.py`); `stop_sequences` stop the text
there; `max_tokens` cuts the answer where it runs out (a tool call's input JSON too) and
bills exactly `max_tokens`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx2
import jiter

from tuiagent.llm.tokens import (
    block_tokens,
    estimate_request_tokens,
    estimate_tokens,
    loaded_tokens,
)
from tuiagent.llm.window import context_window, prompt_too_long
from tuiagent.offline import tool_search
from tuiagent.offline.brain import Reply, reply, thinking_block
from tuiagent.offline.cache import CacheRuleError, PromptCache
from tuiagent.offline.limits import SimulatedLimits
from tuiagent.offline.rules import model_ids, model_info, refusal
from tuiagent.offline.tools import PlannedCall

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


def _search_pass(
    usage: dict[str, Any], body: dict[str, Any], content: list[dict[str, Any]], cached: int
) -> dict[str, Any]:
    """A search is answered inside the request: the API samples again over the whole input,
    what the answer holds so far and the result, its references expanded into the
    definitions they load (recorded: shared/wire/stream_tool_use_input_json_delta.yaml, 702
    input tokens before the search, 1,591 after). That pass reads what the first cached and
    the rest as input; the wire counts no search (server_tool_use: web search and fetch at
    0, as recorded)."""
    at = max(i for i, b in enumerate(content) if b["type"] == "tool_search_tool_result")
    so_far = sum(block_tokens(b) for b in content[: at + 1])
    loaded = loaded_tokens(content[at], body)
    return {
        **usage,
        "input_tokens": 2 * usage["input_tokens"] + so_far + loaded,
        "cache_read_input_tokens": usage["cache_read_input_tokens"] + cached,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
    }


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
        words_per_delta: int = 1,
        priced_models: Iterable[str] = (),
    ) -> None:
        """`fill_max_tokens` and `always_tool` are stress modes for tests and benchmarks of
        the budget: every answer uses all of max_tokens, every turn asks for another tool;
        `words_per_delta` sends text that many words to an event (a benchmark of thousands
        of such answers need not parse one event per word).
        `context_window` caps every model's window (config `context_window`: a smaller
        endpoint); by default each model keeps its real one (llm/window.py).
        `priced_models`: models the user priced by hand (config `[prices."MODEL"]`), served
        though the table of models does not know them (a newer model, a gateway's), with the
        API's general rules only."""
        self.clock = clock
        self.cache = PromptCache(clock)
        self.limits = SimulatedLimits(clock)  # the rate limits' headers
        self.tokens_per_second = tokens_per_second
        self.fill_max_tokens = fill_max_tokens
        self.always_tool = always_tool
        self.context_window = context_window
        self.words_per_delta = max(1, words_per_delta)
        self.priced_models = frozenset(priced_models)
        self._counter = 0
        # Server-held conversations (the `thread` parameter): the whole conversation so far,
        # the answer included, by the id of the answer that ends it.
        self._threads: dict[str, list[dict[str, Any]]] = {}

    def _next_id(self, prefix: str, body: bytes) -> str:
        self._counter += 1
        digest = hashlib.sha256(body + str(self._counter).encode()).hexdigest()[:20]
        return f"{prefix}_offline{self._counter:04d}{digest}"

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raw = await request.aread()
        request_id = self._next_id("req", raw)
        path = request.url.path
        if request.method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
            return self._models(path.removeprefix("/v1/models").strip("/"), request_id)
        if request.method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return _error(404, "not_found_error", f"Not found: {request.method} {path}", request_id)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return _error(400, "invalid_request_error", "request body is not JSON", request_id)
        counting = path.endswith("count_tokens")
        thread = body.get("thread") if isinstance(body, dict) else None
        if isinstance(thread, dict) and thread.get("type") == "continue":
            held = self._threads.get(str(thread.get("previous_message_id")))
            if held is None:
                return _error(
                    404,
                    "not_found_error",
                    f"thread.previous_message_id: no thread holds {thread.get('previous_message_id')}",
                    request_id,
                )
            body = {**body, "messages": [*held, *(body.get("messages") or [])]}
        if refused := refusal(body, count_tokens=counting, also_served=self.priced_models):
            return _error(refused.status, refused.type, refused.message, request_id)
        model = str(body["model"])
        if counting:
            return httpx2.Response(
                200,
                json={"input_tokens": estimate_request_tokens(body)},
                headers={"request-id": request_id},
            )
        key = request.headers.get("x-api-key") or request.headers.get("authorization") or ""
        return self._messages(body, model, request_id, raw, key)

    def _models(self, model: str, request_id: str) -> httpx2.Response:
        headers = {"request-id": request_id}
        ids = model_ids()
        if not model:
            data = [model_info(m) for m in ids]
            page = {"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
            return httpx2.Response(200, json=page, headers=headers)
        if model not in ids:
            return _error(404, "not_found_error", f"model: {model}", request_id)
        return httpx2.Response(200, json=model_info(model), headers=headers)

    def _messages(
        self, body: dict[str, Any], model: str, request_id: str, raw: bytes, key: str = ""
    ) -> httpx2.Response:
        max_tokens = int(body["max_tokens"])
        too_long = self._over_window(body, model, request_id)
        if too_long is not None:
            return too_long
        message_id = self._next_id("msg", raw)
        previous = (body.get("diagnostics") or {}).get("previous_message_id")
        try:
            cache = self.cache.process(model, body, message_id, previous)
        except CacheRuleError as exc:
            return _error(400, "invalid_request_error", str(exc), request_id)
        content, stop_reason, stop_sequence, output_tokens = self._answer(body, max_tokens)
        usage = {
            "input_tokens": cache.uncached,
            "cache_creation_input_tokens": cache.write,
            "cache_read_input_tokens": cache.read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cache.write_5m,
                "ephemeral_1h_input_tokens": cache.write_1h,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }
        first = usage  # what message_start reports: the first pass
        if any(b["type"] == "tool_search_tool_result" for b in content):
            usage = _search_pass(usage, body, content, cache.read + cache.write)
        diagnostics = None
        if "diagnostics" in body and cache.miss_reason is not None:
            # Asked for, as the API answers: null on a full hit, else the reason.
            diagnostics = {
                "cache_miss_reason": {
                    "type": cache.miss_reason,
                    "cache_missed_input_tokens": cache.missed_tokens,
                }
            }
        if isinstance(body.get("thread"), dict):
            answer = {"role": "assistant", "content": [_sent(b) for b in content]}
            self._threads[message_id] = [*body["messages"], answer]
        headers = {"request-id": request_id, "x-tuiagent-simulated": "true"}
        uncached = cache.uncached + cache.write  # what the input limit counts
        headers.update(self.limits.use(key, uncached, output_tokens))
        if not body.get("stream"):
            message = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [_sent(b) for b in content],
                "stop_reason": stop_reason,
                "stop_sequence": stop_sequence,
                "usage": usage,
                "diagnostics": diagnostics,
            }
            return httpx2.Response(200, json=message, headers=headers)
        headers["content-type"] = "text/event-stream; charset=utf-8"
        stream = self._stream(
            message_id, model, content, (stop_reason, stop_sequence), (first, usage), diagnostics
        )
        return httpx2.Response(200, headers=headers, stream=_SSEBody(stream))

    def _answer(
        self, body: dict[str, Any], max_tokens: int
    ) -> tuple[list[dict[str, Any]], str, str | None, int]:
        """The content as sent, its stop reason and sequence, and the output tokens billed:
        thinking first, the answer stopped at the first stop sequence, all of it cut where
        max_tokens runs out (then exactly max_tokens is billed)."""
        if max_tokens == 0:  # fills the prompt cache, generates nothing
            return [], "max_tokens", None, 0
        content, stop_reason = self._content(body, max_tokens)
        stop_sequence = None
        stops = [s for s in body.get("stop_sequences") or [] if s]
        for i, block in enumerate(content):
            if block["type"] != "text" or not stops:
                continue
            hits = [(block["text"].find(s), s) for s in stops if s in block["text"]]
            if hits:
                at, stop_sequence = min(hits)
                content = [*content[:i], {"type": "text", "text": block["text"][:at]}]
                content = [b for b in content if b["type"] != "text" or b["text"]]
                stop_reason = "stop_sequence"
                break
        thinking = thinking_block(body, _as_reply(content))
        if thinking is not None:
            budget = (body.get("thinking") or {}).get("budget_tokens") or max_tokens
            thinking["thinking"] = _cut_text(thinking["thinking"], min(budget, max_tokens))
            content = [thinking, *content]
        sent: list[dict[str, Any]] = []
        room = max_tokens
        for block in content:
            if block["type"] == "tool_search_tool_result":  # the API's answer: input, not output
                sent.append(block)
                continue
            need = block_tokens(block)
            if need <= room:
                sent.append(block)
                room -= need
                continue
            if block["type"] in ("text", "thinking") and room > 0:
                key = block["type"]
                sent.append({**block, key: _cut_text(block[key], room)})
            elif block["type"] in ("tool_use", "server_tool_use") and room > 0:
                encoded = json.dumps(block["input"])
                cut = encoded[: len(encoded) * room // max(need, 1)]
                # what the SDK makes of the pieces: complete values only
                partial = jiter.from_json(cut.encode(), partial_mode=True) if cut else {}
                sent.append({**block, "input": partial or {}, "_partial_json": cut})
            return sent, "max_tokens", None, max_tokens
        output = sum(block_tokens(b) for b in sent if b["type"] != "tool_search_tool_result")
        return sent, stop_reason, stop_sequence, output

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
        """What the model means to say, before max_tokens and stop sequences cut it."""
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
        if turn.text:
            content.append({"type": "text", "text": turn.text})
        if turn.tool_call is None:
            return content, "end_turn"
        calls = [
            {
                "type": "tool_use",
                "id": "toolu_" + self._next_id("", json.dumps(planned.input).encode())[1:],
                "name": planned.name,
                "input": planned.input,
                "caller": {"type": "direct"},  # as recorded: the model itself called it
            }
            for planned in (turn.tool_call, *turn.also)
        ]
        return [*content, *self._search_for(body, turn.tool_call.name), *calls], "tool_use"

    def _search_for(self, body: dict[str, Any], tool: str) -> list[dict[str, Any]]:
        """A deferred tool the model has not seen is searched for first, in the same answer:
        its `server_tool_use` and the API's `tool_search_tool_result` (tool_search.py)."""
        search, unseen = tool_search.search_tool(body), tool_search.unseen(body)
        forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
        if search is None or tool not in unseen or forced:  # a forced call is prefilled
            return []
        query = tool_search.query_for(tool, search)
        use_id = "srvtoolu_" + self._next_id("", query.encode())[1:]
        found = tool_search.run(search, query, list(unseen.values()))
        return [
            {"type": "server_tool_use", "id": use_id, "name": search, "input": {"query": query}},
            {"type": "tool_search_tool_result", "tool_use_id": use_id, "content": found},
        ]

    async def _stream(
        self,
        message_id: str,
        model: str,
        content: list[dict[str, Any]],
        stop: tuple[str, str | None],
        usages: tuple[dict[str, Any], dict[str, Any]],
        diagnostics: dict[str, Any] | None,
    ) -> AsyncIterator[bytes]:
        first, usage = usages  # message_start's (before any search's pass), and the whole
        start_usage = dict(first, output_tokens=1)
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

        async def paced(tokens: float) -> None:
            """Every output token takes its time (text, thinking and a tool call's input
            alike); at full speed the stream still yields, so concurrent calls overlap as
            they do on a real endpoint."""
            await asyncio.sleep(delay * tokens)

        for index, block in enumerate(content):
            start: dict[str, Any]
            if block["type"] == "thinking":
                start = {"type": "thinking", "thinking": "", "signature": ""}
                yield _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
                pieces = [
                    {"type": "thinking_delta", "thinking": p}
                    for p in _PIECES.findall(block["thinking"])
                ]
                for delta in [
                    *pieces,
                    {"type": "signature_delta", "signature": block["signature"]},
                ]:
                    await paced(max(1, estimate_tokens(delta.get("thinking", ""))))
                    yield _sse(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
            elif block["type"] == "text":
                start = {"type": "text", "text": ""}
                yield _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
                words = _PIECES.findall(block["text"])
                step = self.words_per_delta
                for piece in ["".join(words[i : i + step]) for i in range(0, len(words), step)]:
                    await paced(max(1, estimate_tokens(piece)))
                    delta = {"type": "text_delta", "text": piece}
                    yield _sse(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
            elif block["type"] == "tool_search_tool_result":  # whole, as the API streams it
                yield _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block},
                )
            else:
                # As recorded: both start with an empty input; a client call with its caller.
                start = {"type": block["type"], "id": block["id"], "name": block["name"]}
                start["input"] = {}
                if block["type"] == "tool_use":
                    start["caller"] = block.get("caller", {"type": "direct"})
                yield _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
                encoded = block.get("_partial_json", json.dumps(block["input"]))
                parts = ["", *(encoded[i : i + 16] for i in range(0, len(encoded), 16))]
                # The call's tokens as billed (name and input), spread over its pieces.
                share = block_tokens(_sent(block)) / len(parts)
                for piece in parts:
                    await paced(share)
                    delta = {"type": "input_json_delta", "partial_json": piece}
                    yield _sse(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        final = {k: v for k, v in usage.items() if k not in ("cache_creation", "service_tier")}
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop[0], "stop_sequence": stop[1]},
                "usage": final,
            },
        )
        yield _sse("message_stop", {"type": "message_stop"})


def _sent(block: dict[str, Any]) -> dict[str, Any]:
    """A block as the API sends it (without what the stream needs to know of a cut call)."""
    return {k: v for k, v in block.items() if not k.startswith("_")}


def _as_reply(content: list[dict[str, Any]]) -> Reply:
    text = "".join(b["text"] for b in content if b["type"] == "text")
    call = next((b for b in content if b["type"] == "tool_use"), None)
    return Reply(text, None if call is None else PlannedCall(call["name"], call["input"]))


def _cut_text(text: str, budget: int) -> str:
    """The longest run of whole pieces of `text` within `budget` tokens."""
    if estimate_tokens(text) <= budget:
        return text
    pieces, used = [], 0
    for piece in _PIECES.findall(text):
        cost = estimate_tokens(piece)
        if used + cost > budget:
            break
        pieces.append(piece)
        used += cost
    return "".join(pieces)
