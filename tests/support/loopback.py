"""A Messages API on 127.0.0.1 for tests: the offline model behind a real HTTP server, with
scripted faults in front of it (real error bodies from shared/wire).

The client under test talks to it through ANTHROPIC_BASE_URL exactly as to the real API:
real sockets, real HTTP, the SDK's own error mapping.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import yaml

from tests.support import FIXTURES
from tuiagent.config import DEFAULT_TIER_MODELS
from tuiagent.llm.tokens import estimate_request_tokens
from tuiagent.offline import OfflineModel

ERRORS = json.loads((FIXTURES / "wire/errors_from_issue_threads.json").read_text())


def recorded(name: str) -> dict[str, Any]:
    for example in ERRORS["examples"]:
        if example["name"] == name:
            return dict(example)
    raise KeyError(name)


# Real error bodies (shared/wire): recorded 400/404 cassettes and pastes from issue threads.
AUTH_ERROR = {
    "type": "error",
    "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    "request_id": "req_011CauthXYZ",
}
OVERLOADED = recorded("529_overloaded_non_streaming_with_headers")["body"]
OVERLOADED_HEADERS = {
    k: v
    for k, v in recorded("529_overloaded_non_streaming_with_headers")["headers"].items()
    if k in ("x-should-retry", "request-id")
}
RATE_LIMITED = json.loads(recorded("429_rate_limit_body_org_input_tpm")["body_raw"])
MID_STREAM_ERROR = recorded("midstream_sse_error_event_overloaded_with_request_id")["sse_data"]
API_ERROR = {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}


# A real not_found_error, as a gateway without count_tokens answers it.
NOT_FOUND = yaml.safe_load((FIXTURES / "wire/error_404_not_found_count_tokens.yaml").read_text())[
    "interactions"
][0]["response"]["parsed_body"]

COUNT_FAULTS = {
    "count_zero": {"input_tokens": 0},
    "count_negative": {"input_tokens": -10_000_000},
    "count_missing": {},
    "count_string": {"input_tokens": "12"},
}


@dataclass
class Fault:
    """What the server does instead of (or to) the next answer. Faults compose as a list:
    each applies to the next request of its endpoint (kinds `count_*` to count_tokens).

    Kinds for /v1/messages: status | drop | stream_error | slow (`delay_s` after each event)
    | cut_tool_json (`stop_block`: send content_block_stop for the cut block) | non_json_data
    | missing_message | delta_without_index | bad_usage (`value`, `at`: message_start or
    message_delta) | tool_input_list | output_above_max | input_above_count | swapped_model
    (`model`) | stall_after_ping | hold_after_stop (the connection stays open) | trickle (`of`: ping or event; a byte every `delay_s`)
    | drop_after_message_start | plain_json (`body` replaces the Message when given).
    For count_tokens: count_zero | count_negative | count_missing | count_string | count_404
    (or status). A fault that holds the connection open ends after `bound_s`, or when the
    client hangs up."""

    kind: str
    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    value: Any = None
    at: str = "message_delta"
    model: str = DEFAULT_TIER_MODELS["deep"]
    of: str = "event"
    stop_block: bool = True
    bound_s: float = 30.0

    @property
    def for_count(self) -> bool:
        return self.kind.startswith("count_")


def status(code: int, body: dict[str, Any], **headers: str) -> Fault:
    return Fault("status", code, body, {k.replace("_", "-"): v for k, v in headers.items()})


@dataclass
class Wire:
    """What the server writes: the status and headers, then each chunk with `delay_s` after
    it; then it holds the connection open `hold_s` (or until the client hangs up). `cut`:
    no content-length, the body ends when the connection closes."""

    status: int
    headers: dict[str, str]
    chunks: list[bytes]
    delay_s: float = 0.0
    hold_s: float = 0.0
    cut: bool = False

    def response(self) -> httpx2.Response:
        """The same, in-process."""
        return httpx2.Response(self.status, headers=self.headers, stream=_Paced(self))


class _Paced(httpx2.AsyncByteStream):
    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.wire.chunks:
            yield chunk
            if self.wire.delay_s:
                await asyncio.sleep(self.wire.delay_s)
        if self.wire.hold_s:
            await asyncio.sleep(self.wire.hold_s)


def _json_wire(code: int, body: object, headers: dict[str, str] | None = None) -> Wire:
    headers = {"content-type": "application/json", "request-id": "req_loopback", **(headers or {})}
    return Wire(code, headers, [json.dumps(body).encode()])


def count_answer(fault: Fault | None, code: int, headers: dict[str, str], body: bytes) -> Wire:
    """The count_tokens answer with `fault` applied to it."""
    if fault is None:
        return Wire(code, headers, [body])
    if fault.kind == "status":
        return _json_wire(fault.status, fault.body, fault.headers)
    if fault.kind == "count_404":
        return _json_wire(404, NOT_FOUND)
    return _json_wire(200, COUNT_FAULTS[fault.kind])


Event = tuple[str, Any]  # (event name, data: a dict, or raw text)


def _events(raw: bytes) -> list[Event]:
    out: list[Event] = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines.get("event", ""), json.loads(lines["data"])))
    return out


def _sse(events: list[Event]) -> list[bytes]:
    return [
        f"event: {name}\ndata: {d if isinstance(d, str) else json.dumps(d)}\n\n".encode()
        for name, d in events
    ]


def _head(events: list[Event]) -> list[Event]:
    """message_start and the ping after it."""
    return [e for e in events[:2] if e[0] in ("message_start", "ping")]


def _tool_turn(events: list[Event], pieces: list[str], stop: str, fault: Fault) -> list[Event]:
    """A short text, then a tool_use block whose input arrives as `pieces`."""
    usage = dict(events[-2][1]["usage"])
    text = {"type": "text", "text": ""}
    tool = {"type": "tool_use", "id": "toolu_loopback01", "name": "read_file", "input": {}}
    out: list[Event] = [
        *_head(events),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": text}),
        ("content_block_delta", _delta(0, {"type": "text_delta", "text": "Let me read it."})),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": tool}),
    ]
    for piece in pieces:
        out.append(
            ("content_block_delta", _delta(1, {"type": "input_json_delta", "partial_json": piece}))
        )
    if fault.stop_block:
        out.append(("content_block_stop", {"type": "content_block_stop", "index": 1}))
    delta = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}}
    return [*out, ("message_delta", {**delta, "usage": usage}), events[-1]]


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _usages(events: list[Event]) -> list[dict[str, Any]]:
    """The usage objects of message_start and message_delta, to edit in place."""
    found = []
    for name, data in events:
        if name == "message_start":
            found.append(data["message"]["usage"])
        elif name == "message_delta":
            found.append(data["usage"])
    return found


def _message(events: list[Event]) -> dict[str, Any]:
    """The whole Message a stream stands for."""
    message = dict(events[0][1]["message"])
    blocks: dict[int, dict[str, Any]] = {}
    parts: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif name == "content_block_delta" and data["delta"]["type"] == "text_delta":
            blocks[data["index"]]["text"] += data["delta"]["text"]
        elif name == "content_block_delta":
            parts[data["index"]] = parts.get(data["index"], "") + data["delta"]["partial_json"]
        elif name == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["usage"] = {**message["usage"], **data["usage"]}
    for index, text in parts.items():
        blocks[index]["input"] = json.loads(text) if text else {}
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def messages_answer(
    fault: Fault | None, request: dict[str, Any], code: int, headers: dict[str, str], raw: bytes
) -> Wire:
    """The /v1/messages answer with `fault` applied to the honest one."""
    if fault is None:
        return Wire(code, headers, [raw])
    if fault.kind == "status":
        return _json_wire(fault.status, fault.body, fault.headers)
    if code != 200:
        return Wire(code, headers, [raw])
    events = _events(raw)
    kind, max_tokens = fault.kind, int(request.get("max_tokens") or 0)
    ping: Event = ("ping", {"type": "ping"})
    if kind == "drop":
        return Wire(code, headers, _sse(events[:3]), cut=True)
    if kind == "drop_after_message_start":
        return Wire(code, headers, _sse(events[:1]), cut=True)
    if kind == "stream_error":
        error = ("error", fault.body or MID_STREAM_ERROR)
        return Wire(code, headers, _sse([*_head(events), error]), cut=True)
    if kind == "slow":
        return Wire(code, headers, _sse(events), delay_s=fault.delay_s)
    if kind == "hold_after_stop":
        return Wire(code, headers, _sse(events), hold_s=fault.bound_s, cut=True)
    if kind == "stall_after_ping":
        return Wire(code, headers, _sse(_head(events)), hold_s=fault.bound_s, cut=True)
    if kind == "trickle":
        if fault.of == "ping":
            tail = b"".join(_sse([ping])) * 1000
        else:  # an event that never finishes
            tail = b'event: content_block_delta\ndata: {"type": "content_block_delta", "text": "'
            tail += b"a" * 10_000
        delay = fault.delay_s or 1.0
        count = max(1, int(fault.bound_s / delay))
        trickled = [tail[i : i + 1] for i in range(count)]
        return Wire(code, headers, [*_sse(_head(events)), *trickled], delay_s=delay, cut=True)
    if kind == "plain_json":
        body = fault.body if fault.body is not None else _message(events)
        return _json_wire(200, body, {"request-id": headers.get("request-id", "req_loopback")})
    if kind == "cut_tool_json":
        events = _tool_turn(events, ["", '{"path": ', '"REA'], "max_tokens", fault)
        _usages(events)[-1]["output_tokens"] = max_tokens
    elif kind == "tool_input_list":
        events = _tool_turn(events, ["", "[1, 2]"], "tool_use", fault)
    elif kind == "non_json_data":
        events = [*_head(events), ("content_block_delta", "not json {"), *events[2:]]
    elif kind == "missing_message":
        events = [("message_start", {"type": "message_start"}), *events[1:]]
    elif kind == "delta_without_index":
        text = {"type": "text_delta", "text": "x"}
        events = [
            *_head(events),
            ("content_block_delta", {"type": "content_block_delta", "delta": text}),
            *events[2:],
        ]
    elif kind == "bad_usage":
        usages = _usages(events)
        if fault.at == "message_start":
            usages[0]["input_tokens"] = fault.value
        else:
            usages[-1]["output_tokens"] = fault.value
    elif kind == "output_above_max":
        _usages(events)[-1]["output_tokens"] = 3 * max_tokens
    elif kind == "input_above_count":
        for usage in _usages(events):
            cached = usage.get("cache_read_input_tokens", 0) + usage.get(
                "cache_creation_input_tokens", 0
            )
            usage["input_tokens"] = max(0, 5 * estimate_request_tokens(request) - cached)
    elif kind == "swapped_model":
        events[0][1]["message"]["model"] = fault.model
    else:
        raise ValueError(f"unknown fault {kind!r}")
    return Wire(code, headers, _sse(events))


class LoopbackAPI:
    def __init__(
        self, model: OfflineModel | None = None, faults: list[Fault] | None = None
    ) -> None:
        self.model = model or OfflineModel()
        faults = faults or []
        self.faults: deque[Fault] = deque(f for f in faults if not f.for_count)
        self.count_faults: deque[Fault] = deque(f for f in faults if f.for_count)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.hangups = 0  # connections the client closed while the server held them open
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> LoopbackAPI:
        self._loop_thread.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._loop.call_soon_threadsafe(self._loop.stop)

    def messages_calls(self) -> int:
        return sum(
            1
            for path, _, _ in self.requests
            if path.startswith("/v1/messages") and "count_tokens" not in path
        )

    async def _forward(
        self, path: str, headers: dict[str, str], body: bytes, method: str = "POST"
    ) -> tuple[int, dict[str, str], bytes]:
        request = httpx2.Request(method, "http://offline" + path, headers=headers, content=body)
        response = await self.model.handle_async_request(request)
        chunks = [chunk async for chunk in response.stream]  # type: ignore[union-attr]
        return response.status_code, dict(response.headers), b"".join(chunks)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _write(self, wire: Wire) -> None:
                self.send_response(wire.status)
                for k, v in wire.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("connection", "close")
                if not (wire.cut or wire.delay_s or wire.hold_s):
                    data = b"".join(wire.chunks)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.end_headers()  # no length: the body ends when the connection closes
                try:
                    for chunk in wire.chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        if wire.delay_s:
                            time.sleep(wire.delay_s)
                except OSError:
                    return  # the client hung up
                self._hold(wire.hold_s)

            def _hold(self, bound_s: float) -> None:
                """Keep the connection open until the client hangs up, at most bound_s."""
                end = time.monotonic() + bound_s
                while time.monotonic() < end:
                    readable, _, _ = select.select([self.connection], [], [], 0.05)
                    if readable:
                        try:
                            closed = not self.connection.recv(1, socket.MSG_PEEK)
                        except OSError:
                            closed = True
                        if closed:
                            api.hangups += 1
                            return
                        time.sleep(0.05)

            def do_GET(self) -> None:  # the models endpoints: no faults, straight through
                headers = {k.lower(): v for k, v in self.headers.items()}
                api.requests.append((self.path, headers, b""))
                future = asyncio.run_coroutine_threadsafe(
                    api._forward(self.path.split("?")[0], headers, b"", "GET"), api._loop
                )
                code, out_headers, raw = future.result(timeout=30)
                self._write(Wire(code, out_headers, [raw]))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = self.path.split("?")[0]
                api.requests.append((self.path, headers, body))
                is_count = path.endswith("count_tokens")
                queue = api.count_faults if is_count else api.faults
                fault = queue.popleft() if queue else None
                future = asyncio.run_coroutine_threadsafe(
                    api._forward(path, headers, body), api._loop
                )
                code, out_headers, raw = future.result(timeout=30)
                if is_count:
                    self._write(count_answer(fault, code, out_headers, raw))
                else:
                    self._write(messages_answer(fault, json.loads(body), code, out_headers, raw))

        return Handler


class FaultyModel(OfflineModel):
    """The offline model in-process, with the same scripted faults as the loopback server
    (for property tests that run hundreds of sessions)."""

    def __init__(self, faults: list[Fault], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.faults = deque(f for f in faults if not f.for_count)
        self.count_faults = deque(f for f in faults if f.for_count)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        is_count = request.url.path.endswith("count_tokens")
        queue = self.count_faults if is_count else self.faults
        if not queue:
            return await super().handle_async_request(request)
        fault = queue.popleft()
        response = await super().handle_async_request(request)
        raw = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        headers = dict(response.headers)
        if is_count:
            return count_answer(fault, response.status_code, headers, raw).response()
        body = json.loads(await request.aread())
        return messages_answer(fault, body, response.status_code, headers, raw).response()
