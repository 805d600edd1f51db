"""A Messages API on 127.0.0.1 for tests: the offline model behind a real HTTP server, with
scripted faults in front of it (real error bodies from shared/wire).

The client under test talks to it through ANTHROPIC_BASE_URL exactly as to the real API:
real sockets, real HTTP, the SDK's own error mapping.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2

from tuiagent.llm.offline import OfflineModel

ERRORS = json.loads(
    (Path(__file__).parent / "fixtures/wire/errors_from_issue_threads.json").read_text()
)


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


@dataclass
class Fault:
    """What the server does instead of (or to) the next /v1/messages answer."""

    kind: str  # status | drop | stream_error | slow
    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def status(code: int, body: dict[str, Any], **headers: str) -> Fault:
    return Fault("status", code, body, {k.replace("_", "-"): v for k, v in headers.items()})


class LoopbackAPI:
    def __init__(
        self, model: OfflineModel | None = None, faults: list[Fault] | None = None
    ) -> None:
        self.model = model or OfflineModel()
        self.faults: deque[Fault] = deque(faults or [])
        self.count_faults: deque[Fault] = deque()
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

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
    ) -> tuple[int, dict[str, str], list[bytes]]:
        request = httpx2.Request(method, "http://offline" + path, headers=headers, content=body)
        response = await self.model.handle_async_request(request)
        chunks = [chunk async for chunk in response.stream]  # type: ignore[union-attr]
        return response.status_code, dict(response.headers), chunks

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self,
                code: int,
                headers: dict[str, str],
                chunks: list[bytes],
                delay: float = 0.0,
                cut_after: int | None = None,
            ) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("connection", "close")
                if cut_after is None and not delay:
                    data = b"".join(chunks)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.end_headers()  # no length: the body ends when the connection closes
                for i, chunk in enumerate(chunks):
                    if cut_after is not None and i >= cut_after:
                        break
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    if delay:
                        time.sleep(delay)

            def do_GET(self) -> None:  # the models endpoints: no faults, straight through
                headers = {k.lower(): v for k, v in self.headers.items()}
                api.requests.append((self.path, headers, b""))
                future = asyncio.run_coroutine_threadsafe(
                    api._forward(self.path.split("?")[0], headers, b"", "GET"), api._loop
                )
                self._send(*future.result(timeout=30))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = self.path.split("?")[0]
                api.requests.append((self.path, headers, body))
                is_count = path.endswith("count_tokens")
                queue = api.count_faults if is_count else api.faults
                fault = queue.popleft() if queue else None
                if fault is not None and fault.kind == "status":
                    data = json.dumps(fault.body).encode() if fault.body is not None else b""
                    self._send(
                        fault.status,
                        {
                            "content-type": "application/json",
                            "request-id": "req_loopback",
                            **fault.headers,
                        },
                        [data],
                    )
                    return
                future = asyncio.run_coroutine_threadsafe(
                    api._forward(path, headers, body), api._loop
                )
                code, out_headers, chunks = future.result(timeout=30)
                events = (
                    [e + b"\n\n" for e in b"".join(chunks).split(b"\n\n") if e.strip()]
                    if not is_count
                    else chunks
                )
                if fault is None:
                    self._send(code, out_headers, chunks)
                elif fault.kind == "drop":
                    self._send(code, out_headers, events, cut_after=3)
                elif fault.kind == "stream_error":
                    payload = fault.body or OVERLOADED
                    error = b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"
                    self._send(code, out_headers, [*events[:2], error], cut_after=3)
                elif fault.kind == "slow":
                    self._send(code, out_headers, events, delay=fault.delay_s)

        return Handler


class FaultyModel(OfflineModel):
    """The offline model in-process, with the same scripted faults as the loopback server
    (for property tests that run hundreds of sessions)."""

    def __init__(self, faults: list[Fault], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.faults = deque(faults)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("count_tokens") or not self.faults:
            return await super().handle_async_request(request)
        fault = self.faults.popleft()
        if fault.kind == "status":
            return httpx2.Response(fault.status, json=fault.body, headers=fault.headers)
        response = await super().handle_async_request(request)
        raw = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        events = [e + b"\n\n" for e in raw.split(b"\n\n") if e.strip()]
        kept = events[:2]
        if fault.kind == "stream_error":
            payload = fault.body or MID_STREAM_ERROR
            kept.append(b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n")
        return httpx2.Response(200, headers=dict(response.headers), content=b"".join(kept))
