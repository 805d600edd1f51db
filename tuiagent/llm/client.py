"""The Anthropic provider (llm/provider.py): the real `anthropic.AsyncAnthropic`, streaming,
with every call's usage kept.

The same client serves the real API (honouring ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL as
the SDK does), any Anthropic-compatible base URL, and the built-in offline model, which is
plugged in as the HTTP transport so every byte goes through the SDK's own code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import inspect
import json
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

import anthropic
import httpx2
from anthropic import AsyncStream

from tuiagent.apikey import api_key, auth_token
from tuiagent.llm.provider import (
    CallFailed,
    CallResult,
    StreamItem,
    TextDelta,
    ToolUseStarted,
    UsageUpdate,
)
from tuiagent.llm.tokens import COUNTED_FIELDS, MAX_TOKENS, BadUsage, TokenUsage

_T = TypeVar("_T")


# Whether the request of the call under way reached the HTTP transport: a list that
# stream_message sets for each call (in its task's context) and the client's request hook
# marks. A failure before the mark is a request that never left: never billed.
_handed: ContextVar[list[bool] | None] = ContextVar("tuiagent_request_handed", default=None)


async def _mark_handed(request: httpx2.Request) -> None:
    """httpx's request hook: it runs after the request is built, before the transport."""
    marks = _handed.get()
    if marks is not None:
        marks.append(True)


_HOOKS = {"request": [_mark_handed]}


def _marks_handed(client: anthropic.AsyncAnthropic) -> bool:
    """The client's HTTP client has the hook (make_client's do). Without it nothing says a
    request was not handed over, so every failure counts as sent: billed, never lost."""
    hooks = getattr(getattr(client, "_client", None), "event_hooks", None)
    return isinstance(hooks, dict) and _mark_handed in hooks.get("request", ())


def make_client(
    *, offline_transport: httpx2.AsyncBaseTransport | None = None, timeout_s: float = 600.0
) -> anthropic.AsyncAnthropic:
    """A client with the SDK's own retries off: every attempt is seen, counted and priced.

    The SDK's own OpenTelemetry spans are off too: tuiagent records and exports every call
    itself (the run log, `report --otel`, the proxy's live export), and the SDK's spans cost
    about 7 ms per request when the OpenTelemetry SDK is installed (building their
    attributes), more than the rest of a turn's engine work."""
    if offline_transport is not None:
        return anthropic.AsyncAnthropic(
            api_key="offline-simulated",
            base_url="http://offline.tuiagent.invalid",
            http_client=httpx2.AsyncClient(transport=offline_transport, event_hooks=_HOOKS),
            max_retries=0,
            timeout=timeout_s,
            open_telemetry=False,
        )
    # The key is handed over at start (tuiagent.apikey), no longer in the environment; the
    # base URL is left to the SDK, which reads ANTHROPIC_BASE_URL.
    return anthropic.AsyncAnthropic(
        api_key=api_key(),
        auth_token=auth_token(),
        http_client=anthropic.DefaultAsyncHttpxClient(event_hooks=_HOOKS),
        max_retries=0,
        timeout=timeout_s,
        open_telemetry=False,
    )


def _header(response: httpx2.Response | None, name: str) -> str | None:
    if response is None:
        return None
    value = response.headers.get(name)
    return str(value) if value is not None else None


def retry_after_seconds(response: httpx2.Response | None) -> float | None:
    """`retry-after-ms`, or `retry-after` in seconds or as an HTTP date (RFC 9110)."""
    ms = _header(response, "retry-after-ms")
    if ms:
        try:
            wait = float(ms) / 1000
        except ValueError:
            pass
        else:
            if math.isfinite(wait) and wait >= 0:
                return wait
    sec = _header(response, "retry-after")
    if not sec:
        return None
    try:
        wait = float(sec)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(sec)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT; an odd one without a zone is too
            when = when.replace(tzinfo=UTC)
        return max((when - datetime.now(UTC)).total_seconds(), 0.0)  # a past date: now
    return wait if math.isfinite(wait) and wait >= 0 else None


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


class _Malformed(Exception):
    """The response broke the protocol: a field missing or of the wrong kind, events out of
    order, data that is not JSON."""


class _Dropped(Exception):
    """The stream ended before message_stop."""


class _TimedOut(Exception):
    """One of the call's own deadlines passed."""


class _ErrorEvent(Exception):
    """An `event: error` (or an error body in a 200)."""

    def __init__(self, body: object) -> None:
        super().__init__(_status_message(200, body))
        self.body = body


# The request never left: no connection to the server was ever made.
_NEVER_SENT = (
    httpx2.ConnectError,
    httpx2.ConnectTimeout,
    httpx2.UnsupportedProtocol,
    httpx2.ProxyError,
    httpx2.InvalidURL,
)


def _never_sent(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _NEVER_SENT):
            return True
        seen = seen.__cause__
    return False


class _Deadlines:
    """The whole attempt's deadline and the idle one (reset by content or usage events)."""

    def __init__(self, call_s: float, idle_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.call_s, self.idle_s = call_s, idle_s
        now = self.loop.time()
        self.end, self.idle_end = now + call_s, now + idle_s

    def progress(self) -> None:
        self.idle_end = self.loop.time() + self.idle_s

    async def run(self, awaitable: Awaitable[_T]) -> _T:
        try:
            async with asyncio.timeout_at(min(self.end, self.idle_end)):
                return await awaitable
        except TimeoutError:
            if self.loop.time() >= self.end:
                raise _TimedOut(f"the call took longer than {self.call_s:g}s") from None
            raise _TimedOut(f"no content or usage from the API for {self.idle_s:g}s") from None


def _index(raw: dict[str, Any]) -> int:
    index = raw.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _Malformed(f"{raw.get('type')} without a valid index ({index!r})")
    return index


def _string(delta: dict[str, Any], key: str) -> str:
    value = delta.get(key)
    if not isinstance(value, str):
        raise _Malformed(f"a {delta.get('type')} whose {key} is {type(value).__name__}")
    return value


def _reports_tokens(usage: object) -> bool:
    keys = ("input_tokens", "output_tokens", "iterations")
    return isinstance(usage, dict) and any(usage.get(k) is not None for k in keys)


_EVENTS = {
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
}


class _Message:
    """A response assembled from its events, each checked as it comes: what has been seen so
    far is what a failure reports."""

    def __init__(self, model: str, elapsed: Callable[[], float]) -> None:
        self.model, self.message_id = model, ""
        self.named_model: str | None = None
        self.elapsed = elapsed
        self.usage, self.usage_seen = TokenUsage(), False
        self.blocks: dict[int, dict[str, Any]] = {}
        self.open: dict[int, list[str]] = {}  # block index -> its input JSON so far
        self.dropped: set[int] = set()
        self.cut: list[str] = []
        self.stop_reason: str | None = None
        self.diagnostics: dict[str, Any] | None = None
        self.ttft: float | None = None
        self.started = self.stopped = False

    def feed(self, event: str | None, data: str) -> tuple[list[StreamItem], bool]:
        """One SSE event: what to yield, and whether it was content or usage (progress)."""
        if event == "error":
            raise _ErrorEvent(_json_or_text(data))
        if event == "ping" or not data.strip():
            return [], False
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            raise _Malformed(
                f"{event or 'an'} event whose data is not JSON: {data[:60]!r}"
            ) from None
        if not isinstance(raw, dict):
            raise _Malformed(f"{event or 'an'} event whose data is not a JSON object")
        return self.event(raw)

    def event(self, raw: dict[str, Any]) -> tuple[list[StreamItem], bool]:
        kind = raw.get("type")
        if kind == "error":
            raise _ErrorEvent(raw)
        if kind not in _EVENTS:  # ping, and event types this client does not know yet
            return [], False
        if kind == "message_start":
            return self._start(raw), True
        if not self.started:
            raise _Malformed(f"{kind} before message_start")
        if kind == "content_block_start":
            return self._block_start(raw), True
        if kind == "content_block_delta":
            return self._block_delta(raw), True
        if kind == "content_block_stop":
            self._close(self._open_index(raw))
        elif kind == "message_delta":
            return self._message_delta(raw), True
        else:  # message_stop
            for index in list(self.open):
                self._close(index)
            self.stopped = True
        return [], True

    def _usage(self, usage: Any, start: bool) -> list[StreamItem]:
        if usage is None:
            return []
        try:
            new = TokenUsage.from_api(usage) if start else self.usage.with_delta(usage)
        except BadUsage:
            self.usage_seen = False  # a later usage is invalid: the bill is unknown
            raise
        if not _reports_tokens(usage):
            return []
        self.usage, self.usage_seen = new, True
        return [UsageUpdate(new)]

    def _start(self, raw: dict[str, Any]) -> list[StreamItem]:
        if self.started:
            raise _Malformed("a second message_start")
        message = raw.get("message")
        if not isinstance(message, dict):
            raise _Malformed("message_start without a message")
        self.started = True
        if isinstance(message.get("id"), str):
            self.message_id = message["id"]
        if isinstance(message.get("model"), str) and message["model"]:
            self.named_model = message["model"]
        if isinstance(message.get("diagnostics"), dict):
            self.diagnostics = message["diagnostics"]
        return self._usage(message.get("usage"), start=True)

    def _block_start(self, raw: dict[str, Any]) -> list[StreamItem]:
        index = _index(raw)
        block = raw.get("content_block")
        if index in self.blocks:
            raise _Malformed(f"content block {index} started twice")
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _Malformed(f"content_block_start {index} without a content block")
        block = dict(block)
        if "input" in block and not isinstance(block["input"], dict):
            raise _Malformed(f"a tool input that is a {type(block['input']).__name__}")
        self.blocks[index], self.open[index] = block, []
        if block["type"] != "tool_use":
            return []
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise _Malformed("a tool_use block without an id or a name")
        block.setdefault("input", {})
        return [ToolUseStarted(block["id"], block["name"])]

    def _open_index(self, raw: dict[str, Any]) -> int:
        index = _index(raw)
        if index not in self.open:
            raise _Malformed(f"{raw.get('type')} for content block {index}, which is not open")
        return index

    def _block_delta(self, raw: dict[str, Any]) -> list[StreamItem]:
        index = self._open_index(raw)
        delta, block = raw.get("delta"), self.blocks[index]
        if not isinstance(delta, dict):
            raise _Malformed("content_block_delta without a delta")
        if self.ttft is None:
            self.ttft = self.elapsed()
        kind = delta.get("type")
        if kind == "text_delta":
            text = _string(delta, "text")
            block["text"] = block.get("text", "") + text
            return [TextDelta(text)]
        if kind == "input_json_delta":
            self.open[index].append(_string(delta, "partial_json"))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + _string(delta, "thinking")
        elif kind == "signature_delta":
            block["signature"] = _string(delta, "signature")
        return []

    def _close(self, index: int) -> None:
        text, block = "".join(self.open.pop(index)), self.blocks[index]
        if not text.strip():
            return
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            # Cut (at max_tokens) or invalid: billed, but not a call that can be run.
            self.dropped.add(index)
            self.cut.append(str(block.get("name") or block["type"]))
            return
        if not isinstance(value, dict):
            raise _Malformed(f"a tool input that is a {type(value).__name__}, not an object")
        block["input"] = value

    def _message_delta(self, raw: dict[str, Any]) -> list[StreamItem]:
        delta = raw.get("delta") or {}
        if not isinstance(delta, dict):
            raise _Malformed("message_delta whose delta is not an object")
        stop = delta.get("stop_reason")
        if stop is not None and not isinstance(stop, str):
            raise _Malformed(f"a stop_reason that is {type(stop).__name__}")
        self.stop_reason = stop or self.stop_reason
        if isinstance(raw.get("diagnostics"), dict):
            self.diagnostics = raw["diagnostics"]
        return self._usage(raw.get("usage"), start=False)

    def whole(self, body: bytes) -> list[StreamItem]:
        """A whole Message (a server that ignored stream=true), fed as the events it stands
        for so that it is checked exactly as a stream is."""
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            raise _Malformed("a JSON 200 whose body is not JSON") from None
        if isinstance(message, dict) and message.get("type") == "error":
            raise _ErrorEvent(message)
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            raise _Malformed("a JSON 200 that is not a Message")
        items, _ = self.event({"type": "message_start", "message": {**message, "content": []}})
        for index, block in enumerate(message["content"]):
            start: object = block
            text = block.get("text") if isinstance(block, dict) else None
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(text, str):
                start = {**block, "text": ""}
            events = [{"type": "content_block_start", "index": index, "content_block": start}]
            if start is not block:
                delta = {"type": "text_delta", "text": text}
                events.append({"type": "content_block_delta", "index": index, "delta": delta})
            for event in [*events, {"type": "content_block_stop", "index": index}]:
                items += self.event(event)[0]
        stop = {"stop_reason": message.get("stop_reason")}
        items += self.event({"type": "message_delta", "delta": stop})[0]
        return items + self.event({"type": "message_stop"})[0]

    def result(self, request_id: str | None, latency_s: float) -> CallResult:
        if not self.stopped:
            raise _Dropped("the stream ended before message_stop (connection dropped)")
        if not self.usage_seen:
            raise _Malformed("a response that reported no usage")
        return CallResult(
            message_id=self.message_id,
            model=self.model,
            content=[b for i, b in sorted(self.blocks.items()) if i not in self.dropped],
            stop_reason=self.stop_reason,
            usage=self.usage,
            request_id=request_id,
            ttft_s=self.ttft,
            latency_s=latency_s,
            diagnostics=self.diagnostics,
            response_model=self.named_model or self.model,
            cut_tool_calls=self.cut,
        )


def _failure(
    exc: Exception,
    seen: _Message | None,
    response: httpx2.Response | None,
    latency_s: float,
    handed: bool = True,
) -> CallFailed:
    """Any exception of a call as a CallFailed: one message, the status, what was billed.
    `handed`: the request reached the HTTP transport (else it never left)."""
    usage, usage_seen = (seen.usage, seen.usage_seen) if seen else (TokenUsage(), False)
    code = response.status_code if response is not None else None

    def failed(
        message: str, error_type: str, status: int | None, sent: bool = handed
    ) -> CallFailed:
        return CallFailed(
            message=message,
            partial_usage=usage,
            usage_seen=usage_seen,
            request_id=_header(response, "request-id"),
            status=status,
            error_type=error_type,
            latency_s=latency_s,
            sent=sent,
            response_model=seen.named_model if seen else None,
        )

    if isinstance(exc, anthropic.APIStatusError):
        # An HTTP error status is the server's word that no message was made: nothing billed.
        return CallFailed(
            message=describe_error(exc),
            partial_usage=usage,
            usage_seen=True,
            request_id=_header(exc.response, "request-id"),
            status=exc.status_code,
            error_type=_body_error_type(exc.body) or f"http_{exc.status_code}",
            retry_after_s=retry_after_seconds(exc.response),
            should_retry=_header(exc.response, "x-should-retry"),
            latency_s=latency_s,
        )
    if isinstance(exc, _ErrorEvent):
        return failed(str(exc), _body_error_type(exc.body) or "stream_error", 200)
    if isinstance(exc, BadUsage):
        return failed(f"the API sent usage that cannot be billed: {exc}", "bad_usage", code)
    if isinstance(exc, _TimedOut):
        return failed(str(exc), "timeout", None)
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return failed(describe_error(exc), "timeout", None, sent=handed and not _never_sent(exc))
    if isinstance(exc, _Dropped):
        return failed(str(exc), "connection_error", 200)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        sent = handed and not _never_sent(exc)
        return failed(describe_error(exc), "connection_error", None, sent=sent)
    if response is None:
        return failed(f"the call failed: {type(exc).__name__}: {exc}", "client_error", None)
    what = str(exc) if isinstance(exc, _Malformed) else f"{type(exc).__name__}: {exc}"
    return failed(f"the API sent a malformed response: {what}", "malformed_stream", code)


async def _close(response: httpx2.Response | None) -> None:
    if response is not None:
        with contextlib.suppress(Exception):
            await response.aclose()


async def count_tokens(
    client: anthropic.AsyncAnthropic, request: dict[str, Any], *, timeout_s: float = 60.0
) -> int:
    """The request's input tokens from the API's free count_tokens: a checked non-negative
    int. Raises CallFailed (`bad_count` for a count that is not one, or the HTTP status)."""
    body = {k: v for k, v in request.items() if k in COUNTED_FIELDS}
    try:
        deadlines = _Deadlines(timeout_s, timeout_s)
        raw = await deadlines.run(client.messages.with_raw_response.count_tokens(**body))
        data = _json_or_text((await deadlines.run(raw.read())).decode("utf-8", "replace"))
    except Exception as exc:
        raise _failure(exc, None, None, 0.0) from exc
    count = data.get("input_tokens") if isinstance(data, dict) else None
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_TOKENS:
        raise CallFailed(
            message=f"count_tokens answered {count!r}, not a token count",
            request_id=_header(raw.http_response, "request-id"),
            status=raw.status_code,
            error_type="bad_count",
        )
    return count


_SDK_OPTIONS = frozenset({"stream", "extra_headers", "extra_query", "extra_body", "timeout"})


@functools.cache
def _body_fields(create: Callable[..., Any]) -> frozenset[str] | None:
    """The body fields `create` takes as keywords (its own options aside); None: any."""
    params = inspect.signature(create).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params) - _SDK_OPTIONS


def _create_arguments(create: Callable[..., Any], request: dict[str, Any]) -> dict[str, Any]:
    """`request` as `create`'s keywords: the fields it names; any other field (a newer or beta
    one the SDK does not model yet, as a proxied client may send) goes as it is in
    `extra_body`. `stream` is the caller's: a logged request that says `stream` (a proxied
    one) is sent as the stream this call always is, not refused as a keyword passed twice."""
    known = _body_fields(getattr(create, "__func__", create))
    if known is None:
        return {k: v for k, v in request.items() if k != "stream"}
    out = {k: v for k, v in request.items() if k in known}
    extra = {k: v for k, v in request.items() if k not in known and k != "stream"}
    if extra:
        out["extra_body"] = extra
    return out


async def stream_message(
    client: anthropic.AsyncAnthropic,
    request: dict[str, Any],
    *,
    clock: Callable[[], float] = time.monotonic,
    call_timeout_s: float = 600.0,
    idle_timeout_s: float = 90.0,
) -> AsyncGenerator[StreamItem, None]:
    """Stream one Messages call. Yields text and tool starts as they come, the usage as it is
    reported (UsageUpdate), then the CallResult.

    Any failure after the call began raises CallFailed with the usage seen so far: HTTP
    errors, `event: error`, a dropped connection, a malformed stream or usage, the deadlines
    (`call_timeout_s` for the whole attempt, `idle_timeout_s` without a content or usage
    event). Cancellation propagates as it is. The HTTP response is always closed.
    """
    started = clock()
    seen = _Message(str(request.get("model", "")), lambda: clock() - started)
    response: httpx2.Response | None = None
    handed: list[bool] = [] if _marks_handed(client) else [True]
    _handed.set(handed)  # for this call; the next one sets its own
    try:
        deadlines = _Deadlines(call_timeout_s, idle_timeout_s)
        create = client.messages.create
        stream = await deadlines.run(create(**_create_arguments(create, request), stream=True))
        response = stream.response
        if response.headers.get("content-type", "").startswith("application/json"):
            for item in seen.whole(await deadlines.run(response.aread())):
                yield item
        else:
            # The raw events, as the API sent them: the SDK's typed events drop fields it
            # does not model yet (usage.iterations, diagnostics, new block types).
            events = AsyncStream.raw_events(response)
            while not seen.stopped:
                sse = await deadlines.run(anext(events, None))
                if sse is None:
                    break
                items, progress = seen.feed(sse.event, sse.data)
                if progress:
                    deadlines.progress()
                for item in items:
                    yield item
        result = seen.result(_header(response, "request-id"), clock() - started)
    except Exception as exc:
        raise _failure(exc, seen, response, clock() - started, bool(handed)) from exc
    finally:
        await _close(response)
    yield result


class AnthropicProvider:
    """The Anthropic API (or any compatible base URL, or the offline model as the client's
    transport) behind the model seam (llm/provider.py)."""

    def __init__(self, client: anthropic.AsyncAnthropic, name: str = "anthropic") -> None:
        self.client = client
        self.name = name  # anthropic | offline
        self.simulated = name == "offline"
        self.counts_tokens = True  # until the endpoint says it has no count_tokens

    def stream(
        self,
        request: dict[str, Any],
        *,
        clock: Callable[[], float] = time.monotonic,
        call_timeout_s: float = 600.0,
        idle_timeout_s: float = 90.0,
    ) -> AsyncGenerator[StreamItem, None]:
        return stream_message(
            self.client,
            request,
            clock=clock,
            call_timeout_s=call_timeout_s,
            idle_timeout_s=idle_timeout_s,
        )

    async def count_tokens(self, request: dict[str, Any]) -> int | None:
        """The API's free count (the offline model's own, offline); None where there is
        none: a gateway without count_tokens (asked no more), an error, a count that is not
        one. A key refused (401, 403) raises: the call would fail the same way."""
        try:
            return await count_tokens(self.client, request)
        except CallFailed as failure:
            if failure.status in (401, 403):
                raise
            if failure.status == 404:
                self.counts_tokens = False  # this endpoint has none: stop asking
        except Exception:
            pass
        return None
