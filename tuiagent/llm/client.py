"""The LLM client: the real `anthropic.AsyncAnthropic`, streaming, with every call's usage kept.

The same client serves the real API (honouring ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL as
the SDK does), any Anthropic-compatible base URL, and the built-in offline model, which is
plugged in as the HTTP transport so every byte goes through the SDK's own code path.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from anthropic import AsyncStream

from tuiagent.llm.usage import TokenUsage


@dataclass(frozen=True)
class TextDelta:
    """A piece of answer text as it streams."""

    text: str


@dataclass(frozen=True)
class UsageUpdate:
    """Usage as the stream reports it so far (message_start, then each message_delta)."""

    usage: TokenUsage


@dataclass(frozen=True)
class ToolUseStarted:
    """The model began a tool call (its input follows as JSON pieces)."""

    tool_use_id: str
    name: str


@dataclass
class CallResult:
    """One finished call: what came back and what it cost in tokens."""

    message_id: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: TokenUsage
    request_id: str | None
    ttft_s: float | None
    latency_s: float
    diagnostics: dict[str, Any] | None = None
    # Tool calls whose JSON was cut (at max_tokens), dropped from content.
    cut_tool_calls: list[str] = field(default_factory=list)
    response_model: str = ""  # the model the response names

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]


class CallFailed(Exception):
    """A call that did not finish. Carries what the API billed before it failed, if anything."""

    def __init__(
        self,
        *,
        message: str,
        partial_usage: TokenUsage | None = None,
        request_id: str | None = None,
        status: int | None = None,
        error_type: str = "error",
        retry_after_s: float | None = None,
        should_retry: str | None = None,
        latency_s: float = 0.0,
        usage_seen: bool | None = None,
        sent: bool = True,
    ) -> None:
        super().__init__(message)
        # usage_seen False: the server may have billed anything up to the worst case.
        if usage_seen is None:
            usage_seen = partial_usage is not None and partial_usage != TokenUsage()
            usage_seen = usage_seen or status not in (None, 200)
        self.usage_seen = usage_seen
        # sent False only when the request certainly never left.
        self.sent = sent
        self.message = message
        self.partial_usage = partial_usage or TokenUsage()
        self.request_id = request_id
        self.status = status
        self.error_type = error_type
        self.retry_after_s = retry_after_s
        self.should_retry = should_retry
        self.latency_s = latency_s

    def __str__(self) -> str:
        return self.message


StreamItem = TextDelta | ToolUseStarted | UsageUpdate | CallResult


def api_key_from_env() -> str | None:
    return os.environ.get("ANTHROPIC_API_KEY") or None


def make_client(
    *, offline_transport: httpx2.AsyncBaseTransport | None = None, timeout_s: float = 600.0
) -> anthropic.AsyncAnthropic:
    """A client with the SDK's own retries off: every attempt is seen, counted and priced."""
    if offline_transport is not None:
        return anthropic.AsyncAnthropic(
            api_key="offline-simulated",
            base_url="http://offline.tuiagent.invalid",
            http_client=httpx2.AsyncClient(transport=offline_transport),
            max_retries=0,
            timeout=timeout_s,
        )
    # api_key and base_url left to the SDK: it reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL.
    return anthropic.AsyncAnthropic(max_retries=0, timeout=timeout_s)


def _header(response: httpx2.Response | None, name: str) -> str | None:
    if response is None:
        return None
    value = response.headers.get(name)
    return str(value) if value is not None else None


def retry_after_seconds(response: httpx2.Response | None) -> float | None:
    """`retry-after-ms` or `retry-after` (seconds), as the API sends them."""
    ms = _header(response, "retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    sec = _header(response, "retry-after")
    if sec:
        try:
            return float(sec)
        except ValueError:
            return None
    return None


def _json_or_text(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        return data


def _body_error_type(body: object) -> str | None:
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            return str(inner["type"])
    return None


def _status_message(status: int, body: object) -> str:
    etype = _body_error_type(body) or "error"
    msg = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        msg = str(body["error"].get("message", ""))
    where = "mid-stream " if status == 200 else f"{status} "
    return f"API error {where}{etype}: {msg}".strip().rstrip(":")


def describe_error(error: BaseException) -> str:
    """One line for the user. Never includes request headers (the key lives there)."""
    if isinstance(error, anthropic.AuthenticationError):
        return "the API rejected the key (401 authentication_error): check ANTHROPIC_API_KEY"
    if isinstance(error, anthropic.APIStatusError):
        return _status_message(error.status_code, error.body)
    if isinstance(error, anthropic.APITimeoutError | httpx2.TimeoutException):
        return "the request timed out"
    if isinstance(error, anthropic.APIConnectionError):
        return f"cannot reach the API: {error.__cause__ or error.message}"
    return f"cannot reach the API: {type(error).__name__}: {error}"


def _failure(
    exc: Exception, usage: TokenUsage, response: httpx2.Response | None, latency_s: float
) -> CallFailed:
    """An SDK or transport exception as a CallFailed: one message, the status, what to do."""
    if isinstance(exc, anthropic.APIStatusError):
        return CallFailed(
            message=describe_error(exc),
            partial_usage=usage,
            request_id=_header(exc.response, "request-id"),
            status=exc.status_code,
            error_type=_body_error_type(exc.body) or f"http_{exc.status_code}",
            retry_after_s=retry_after_seconds(exc.response),
            should_retry=_header(exc.response, "x-should-retry"),
            latency_s=latency_s,
        )
    timeout = isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException)
    return CallFailed(
        message=describe_error(exc),
        partial_usage=usage,
        request_id=_header(response, "request-id"),
        status=None,
        error_type="timeout" if timeout else "connection_error",
        latency_s=latency_s,
    )


_COUNTED_FIELDS = (
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "cache_control",
)


async def count_tokens(client: anthropic.AsyncAnthropic, request: dict[str, Any]) -> int:
    """The request's input tokens from the API's free count_tokens. Raises CallFailed."""
    body = {k: v for k, v in request.items() if k in _COUNTED_FIELDS}
    try:
        counted = await client.messages.count_tokens(**body)
    except (anthropic.APIError, httpx2.TransportError) as exc:
        raise _failure(exc, TokenUsage(), None, 0.0) from exc
    return int(counted.input_tokens)


async def stream_message(
    client: anthropic.AsyncAnthropic,
    request: dict[str, Any],
    *,
    clock: Callable[[], float] = time.monotonic,
    call_timeout_s: float = 600.0,
    idle_timeout_s: float = 90.0,
) -> AsyncGenerator[StreamItem, None]:
    """Stream one Messages call. Yields text and tool starts as they come, then the CallResult.

    Raises CallFailed with the usage billed so far when the call fails at any point.
    """
    started = clock()
    ttft: float | None = None
    usage = TokenUsage()
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, list[str]] = {}
    message_id, model, stop_reason = "", str(request.get("model", "")), None
    diagnostics: dict[str, Any] | None = None
    response: httpx2.Response | None = None
    completed = False
    try:
        stream = await client.messages.create(**request, stream=True)
        response = stream.response
        # The raw events, as the API sent them: the SDK's typed events drop fields it does
        # not model yet (usage.iterations, diagnostics, new block types).
        async for sse in AsyncStream.raw_events(response):
            if sse.event == "error":
                body = _json_or_text(sse.data)
                raise CallFailed(
                    message=_status_message(200, body),
                    partial_usage=usage,
                    request_id=_header(response, "request-id"),
                    status=200,
                    error_type=_body_error_type(body) or "stream_error",
                    latency_s=clock() - started,
                )
            if not sse.data or sse.event == "ping":
                continue
            raw = sse.json()
            kind = raw.get("type")
            if kind == "message_start":
                msg = raw["message"]
                message_id, model = msg.get("id", ""), msg.get("model", model)
                usage = TokenUsage.from_api(msg.get("usage"))
                yield UsageUpdate(usage)
                diagnostics = msg.get("diagnostics") or diagnostics
            elif kind == "content_block_start":
                block = dict(raw["content_block"])
                blocks[raw["index"]] = block
                if block.get("type") == "tool_use":
                    partial_json[raw["index"]] = []
                    yield ToolUseStarted(block.get("id", ""), block.get("name", ""))
            elif kind == "content_block_delta":
                delta, block = raw["delta"], blocks.setdefault(raw["index"], {"type": "text"})
                dtype = delta.get("type")
                if ttft is None:
                    ttft = clock() - started
                if dtype == "text_delta":
                    block["text"] = block.get("text", "") + delta["text"]
                    yield TextDelta(delta["text"])
                elif dtype == "input_json_delta":
                    partial_json.setdefault(raw["index"], []).append(delta.get("partial_json", ""))
                elif dtype == "thinking_delta":
                    block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
                elif dtype == "signature_delta":
                    block["signature"] = delta.get("signature", "")
            elif kind == "content_block_stop":
                idx = raw["index"]
                if idx in partial_json:
                    text = "".join(partial_json.pop(idx))
                    blocks[idx]["input"] = json.loads(text) if text else {}
            elif kind == "message_delta":
                stop_reason = raw.get("delta", {}).get("stop_reason") or stop_reason
                usage = usage.with_delta(raw.get("usage"))
                yield UsageUpdate(usage)
                diagnostics = raw.get("diagnostics") or diagnostics
            elif kind == "message_stop":
                completed = True
    except (anthropic.APIError, httpx2.TransportError) as exc:
        raise _failure(exc, usage, response, clock() - started) from exc
    if not completed:
        raise CallFailed(
            message="the stream ended before message_stop (connection dropped)",
            partial_usage=usage,
            request_id=_header(response, "request-id"),
            status=200,
            error_type="connection_error",
            latency_s=clock() - started,
        )
    content = [blocks[i] for i in sorted(blocks)]
    yield CallResult(
        message_id=message_id,
        model=model,
        content=content,
        stop_reason=stop_reason,
        usage=usage,
        request_id=_header(response, "request-id"),
        ttft_s=ttft,
        latency_s=clock() - started,
        diagnostics=diagnostics,
    )
