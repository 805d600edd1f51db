"""The HTTP face of the proxy: starlette on uvicorn, httpx2 streaming to the upstream.

`/v1/messages` is metered (see `meter`); `/v1/messages/count_tokens` and every other path
are passed through unmetered. Requests go upstream with the client's own headers (its key
included) minus hop-by-hop ones; responses come back with the upstream's status and headers
and its body byte for byte as it arrives. No header is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tuiagent.errors import UsageError
from tuiagent.proxy import DEFAULT_UPSTREAM
from tuiagent.proxy.meter import Admitted, Meter, Refused
from tuiagent.proxy.sse import UsageScanner

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
COUNT_TIMEOUT_S = 20.0


def _request_headers(request: Request) -> list[tuple[bytes, bytes]]:
    headers = [(k, v) for k, v in request.headers.raw if k.decode().lower() not in HOP_BY_HOP]
    # Asked for uncompressed, so the stream can be read for usage as it passes.
    headers = [(k, v) for k, v in headers if k.lower() != b"accept-encoding"]
    return [*headers, (b"accept-encoding", b"identity")]


def _response_headers(response: httpx2.Response) -> list[tuple[str, str]]:
    drop = HOP_BY_HOP - {"content-length"}
    return [(k, v) for k, v in response.headers.multi_items() if k.lower() not in drop]


def _client_name(request: Request) -> str:
    agent = request.headers.get("user-agent", "")
    return agent.split(" ")[0][:60] or "unknown"


class _Passed(StreamingResponse):
    """The upstream's response streamed on; `done` runs once however it ends (whole, cut
    by the upstream, or the client gone), and the upstream response is closed."""

    def __init__(self, upstream: httpx2.Response, body: AsyncIterator[bytes], done: Any) -> None:
        super().__init__(body, status_code=upstream.status_code)
        self.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in _response_headers(upstream)
        ]
        self._upstream = upstream
        self._done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                self._done()
                await self._upstream.aclose()


class ProxyApp:
    def __init__(self, meter: Meter, upstream: str = DEFAULT_UPSTREAM) -> None:
        self.meter = meter
        self.upstream = upstream.rstrip("/")
        self.client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(600.0, connect=30.0),
            limits=httpx2.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route(
                    "/{path:path}",
                    self.passthrough,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                ),
            ]
        )

    def _url(self, request: Request) -> str:
        query = request.url.query
        return self.upstream + request.url.path + (f"?{query}" if query else "")

    async def passthrough(self, request: Request) -> Response:
        """Unmetered: count_tokens (free) and any path that is not a Messages call."""
        upstream = self.client.build_request(
            request.method,
            self._url(request),
            headers=_request_headers(request),
            content=await request.body(),
        )
        try:
            response = await self.client.send(upstream, stream=True)
        except httpx2.TransportError as exc:
            return _unreachable(exc)
        return _Passed(response, response.aiter_raw(), lambda: None)

    async def messages(self, request: Request) -> Response:
        raw = await request.body()
        headers = _request_headers(request)
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        max_tokens = payload.get("max_tokens") if isinstance(payload, dict) else None
        if not isinstance(payload, dict) or not isinstance(max_tokens, int) or max_tokens < 1:
            return await self.passthrough(request)  # the upstream refuses it, billing nothing

        async def count(body: dict[str, Any]) -> object:
            """The answer's input_tokens as sent (the meter checks it), or None."""
            url = self._url(request).replace("/v1/messages", "/v1/messages/count_tokens", 1)
            try:
                answer = await self.client.post(
                    url, headers=headers, content=json.dumps(body), timeout=COUNT_TIMEOUT_S
                )
                data = answer.json() if answer.status_code == 200 else None
            except (httpx2.HTTPError, ValueError):
                return None
            return data.get("input_tokens") if isinstance(data, dict) else None

        call = await self.meter.admit(raw, payload, _client_name(request), count)
        if isinstance(call, Refused):
            return JSONResponse(call.body(), status_code=400, headers={"x-should-retry": "false"})
        return await self._send(call, request, headers)

    async def _send(
        self, call: Admitted, request: Request, headers: list[tuple[bytes, bytes]]
    ) -> Response:
        upstream = self.client.build_request(
            "POST", self._url(request), headers=headers, content=call.body
        )
        try:
            response = await self.client.send(upstream, stream=True)
        except httpx2.TransportError as exc:
            # A failed connect never sent the request; any later failure may have been billed.
            sent = not isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout)
            self.meter.settle(
                call,
                status=None,
                scanner=UsageScanner(False),
                transport_error=_what(exc),
                sent=sent,
            )
            return _unreachable(exc)
        streamed = "text/event-stream" in response.headers.get("content-type", "")
        scanner = UsageScanner(streamed)
        state: dict[str, Any] = {"ttft": None, "error": None}
        clock = self.meter.clock

        length = response.headers.get("content-length")
        expected = int(length) if length and length.isdigit() else None

        async def pump(queue: asyncio.Queue[bytes | None]) -> None:
            received = 0
            try:
                async for chunk in response.aiter_raw():
                    if state["ttft"] is None:
                        state["ttft"] = clock() - call.started
                    scanner.feed(chunk)
                    received += len(chunk)
                    last = scanner.completed or scanner.error is not None
                    if last or (expected is not None and received >= expected):
                        # Settled before the client has the last byte: its next request
                        # finds this one's cost settled, not still in flight.
                        done()
                    queue.put_nowait(chunk)
            except httpx2.TransportError as exc:  # cut by the upstream: the client sees it cut
                state["error"] = _what(exc)
            finally:
                done()  # a cut stream too is settled before the client sees its end
                queue.put_nowait(None)

        async def body() -> AsyncIterator[bytes]:
            """Each chunk goes on as soon as it is read; chunks that came in while the last
            write was going out go together in one (fewer writes when the client lags)."""
            queue: asyncio.Queue[bytes | None] = asyncio.Queue()
            reader = asyncio.create_task(pump(queue))
            try:
                ended = False
                while not ended:
                    parts = [await queue.get()]
                    while not queue.empty():
                        parts.append(queue.get_nowait())
                    ended = parts[-1] is None
                    data = b"".join(p for p in parts if p is not None)
                    if data:
                        yield data
            finally:
                reader.cancel()

        settled: list[bool] = []

        def done() -> None:
            if settled:
                return
            settled.append(True)
            self.meter.settle(
                call,
                status=response.status_code,
                scanner=scanner,
                request_id=response.headers.get("request-id"),
                ttft_s=state["ttft"],
                transport_error=state["error"],
            )

        return _Passed(response, body(), done)

    async def aclose(self) -> None:
        await self.client.aclose()


def _what(exc: httpx2.TransportError) -> str:
    return f"cannot reach the upstream: {type(exc).__name__}"


def _unreachable(exc: httpx2.TransportError) -> Response:
    body = {
        "type": "error",
        "error": {"type": "api_error", "message": f"tuiagent proxy: {_what(exc)}"},
    }
    return JSONResponse(body, status_code=502)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the server starts (port 0 picks a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    # With its protocol named (IPPROTO_TCP), asyncio sets TCP_NODELAY on every accepted
    # connection; without it, Nagle holds each response's body back ~40 ms behind its head.
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class ProxyServer:
    """uvicorn serving a ProxyApp on a socket bound at once, in this thread or another."""

    def __init__(self, proxy: ProxyApp, sock: socket.socket, host: str = "127.0.0.1") -> None:
        self.proxy = proxy
        self.socket = sock
        self.host = host
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(
            proxy.app,
            log_level="warning",
            access_log=False,  # paths and queries only, but nothing of the traffic is logged
            server_header=False,  # the upstream's own server and date headers pass through
            date_header=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def run(self) -> None:
        """Serve until stopped (Ctrl-C in the main thread, or `stop()`)."""
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.socket])
        finally:
            await self.proxy.aclose()

    def start(self) -> ProxyServer:
        self._thread = threading.Thread(target=self.run, name="tuiagent-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self.socket.close()
