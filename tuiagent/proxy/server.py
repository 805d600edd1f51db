"""The HTTP face of the proxy: an ASGI app on uvicorn, httpx2 streaming to the upstream.

Each request is routed on its normalised path (`routes`), and that path is what goes
upstream. `/v1/messages` is metered (see `meter`); count_tokens, the models, a batch's
reads and cancel, any GET, and the paths the config lists as unbilled pass through
unmetered; a POST to any other path is refused before anything is sent, and so is a
billable body the proxy cannot read exactly (`body`). Requests go upstream with the client's
own headers (its key included) minus hop-by-hop ones; responses come back with the
upstream's status and headers and its body byte for byte as it arrives. No header is
ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
from typing import Any, Protocol

import httpx2
import uvicorn
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope

from tuiagent.errors import UsageError
from tuiagent.ledger import proxy_scopes
from tuiagent.proxy import DEFAULT_UPSTREAM
from tuiagent.proxy.body import BadBody, messages_request
from tuiagent.proxy.meter import Admitted, Meter, Refused
from tuiagent.proxy.routes import (
    MAX_BODY_BYTES,
    UNBILLED_POSTS,
    BadPath,
    Endpoint,
    Unbilled,
    endpoint,
    normalise,
    quoted,
)
from tuiagent.proxy.sse import UsageScanner

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"accept-encoding",  # asked for uncompressed, so the stream can be read for usage
    }
)
_IDENTITY = (b"accept-encoding", b"identity")
COUNT_TIMEOUT_S = 20.0
BODY_IDLE_TIMEOUT_S = 30.0  # the longest a client may pause while sending its body
# Hop-by-hop headers of a response (content-length passes: the body is passed whole).
_RESPONSE_DROP = frozenset(HOP_BY_HOP - {b"content-length", b"accept-encoding"})


class Exchange:
    """One request as it came in: its normalised path and route, its headers, and the way
    back to the client."""

    def __init__(self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable):
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method = scope["method"]
        self.headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        self.raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        self.query: bytes = scope.get("query_string", b"")
        self.path = ""  # normalised, once read
        self.started = False  # the response's head has gone out

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def text_headers(self) -> dict[str, str]:
        """The headers as text (the budgets' scopes are read from them)."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers}

    @property
    def client(self) -> str:
        """The first word of the user agent (what the records and the dashboard show)."""
        agent = (self.header(b"user-agent") or b"").decode("latin-1")
        return agent.split(" ")[0][:60] or "unknown"

    def upstream_headers(self) -> list[tuple[bytes, bytes]]:
        return [(k, v) for k, v in self.headers if k not in HOP_BY_HOP] + [_IDENTITY]

    async def answer(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        head = [(b"content-type", b"application/json"), *(headers or [])]
        head.append((b"content-length", str(len(body)).encode()))
        await self.send({"type": "http.response.start", "status": status, "headers": head})
        self.started = True
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


class ClientGone(Exception):
    """The client hung up before its request was read whole: nothing was sent."""


class TooLarge(Exception):
    """A body over MAX_BODY_BYTES."""


async def read_body(exchange: Exchange, limit: int = MAX_BODY_BYTES) -> bytes | bytearray:
    """The whole body, at most `limit` bytes. With a content-length, read into one buffer of
    that size (no chunk list joined into a second copy); refused before reading if it is over."""
    length = exchange.header(b"content-length")
    expected = int(length) if length is not None and length.isdigit() else None
    if expected is not None and expected > limit:
        raise TooLarge
    buffer = bytearray(expected or 0)
    filled = 0
    while True:
        try:
            message = await asyncio.wait_for(exchange.receive(), BODY_IDLE_TIMEOUT_S)
        except TimeoutError:
            raise ClientGone from None
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if isinstance(chunk, bytes) and chunk:
            end = filled + len(chunk)
            if end > limit:
                raise TooLarge
            buffer[filled:end] = chunk  # in place; without a length given, it grows
            filled = end
        if not message.get("more_body", False):
            break
    if filled < len(buffer):
        del buffer[filled:]
    return buffer


def error_body(kind: str, message: str) -> bytes:
    """An Anthropic-shaped error."""
    return json.dumps(
        {"type": "error", "error": {"type": kind, "message": message}}, separators=(",", ":")
    ).encode()


# Our refusals are final: the SDKs retry nothing marked so, and nothing sent can succeed later.
_FINAL = [(b"x-should-retry", b"false")]


class ProxyApp:
    def __init__(
        self,
        meter: Meter,
        upstream: str = DEFAULT_UPSTREAM,
        *,
        unbilled_paths: tuple[str, ...] = (),
    ) -> None:
        self.meter = meter
        self.upstream = upstream.rstrip("/")
        self.unbilled = Unbilled.of(unbilled_paths)
        self.client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(600.0, connect=30.0),
            limits=httpx2.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        exchange = Exchange(scope, receive, send)
        try:
            await self._route(exchange)
        except ClientGone:
            return  # nothing was sent upstream; there is no one to answer
        except Exception as exc:  # a bug of ours: the client gets an error, never a traceback
            _say_error(f"tuiagent proxy: {exchange.method} {exchange.path}: {_what(exc)}")
            if not exchange.started:
                await exchange.answer(502, error_body("api_error", f"tuiagent proxy: {_what(exc)}"))

    async def _route(self, exchange: Exchange) -> None:
        method = exchange.method
        try:
            exchange.path = normalise(exchange.raw_path)
        except BadPath as exc:
            shown = exchange.raw_path.decode("latin-1")
            await self.refuse(exchange, 400, f"the path {shown!r} has {exc}")
            return
        route = endpoint(exchange.path)
        if route is Endpoint.MESSAGES and method == "POST":
            await self.messages(exchange)
        elif route is Endpoint.BATCHES and method == "POST":
            await self.refuse(
                exchange,
                400,
                "Message Batches are not metered by this proxy yet: a batch was not created "
                "(send its requests one by one through the proxy)",
            )
        elif (
            method in ("GET", "HEAD")
            or (method == "POST" and route in UNBILLED_POSTS)
            or (method == "DELETE" and route is Endpoint.BATCH)
            or exchange.path in self.unbilled
        ):
            await self.passthrough(exchange)
        else:
            await self.refuse(
                exchange,
                404,
                f"{method} {exchange.path} is not an endpoint the proxy meters, so nothing was "
                "sent; if it bills nothing, list it in the config's proxy_unbilled_paths",
                kind="not_found_error",
            )

    async def refuse(
        self,
        exchange: Exchange,
        status: int,
        reason: str,
        *,
        model: str = "",
        kind: str = "invalid_request_error",
    ) -> None:
        """Answer with an Anthropic-shaped error, and record the refusal."""
        refused = self.meter.refuse(
            exchange.client, model, f"tuiagent proxy: refused before sending: {reason}"
        )
        await self.answer_refused(exchange, refused, status, kind)

    @staticmethod
    async def answer_refused(
        exchange: Exchange, refused: Refused, status: int = 400, kind: str = "invalid_request_error"
    ) -> None:
        await exchange.answer(status, error_body(kind, refused.message), _FINAL)

    def _url(self, exchange: Exchange, path: str | None = None) -> str:
        query = exchange.query.decode("latin-1")
        return self.upstream + quoted(path or exchange.path) + (f"?{query}" if query else "")

    async def _body(self, exchange: Exchange) -> bytes | bytearray | None:
        """The request's body, or None when a refusal has answered (too large)."""
        try:
            return await read_body(exchange)
        except TooLarge:
            mb = MAX_BODY_BYTES // (1024 * 1024)
            await self.refuse(
                exchange,
                413,
                f"the request body is over {mb} MB, the API's limit",
                kind="request_too_large",
            )
            return None

    async def passthrough(self, exchange: Exchange) -> None:
        """Unmetered: what bills nothing (count_tokens, reads, configured unbilled paths)."""
        body = await self._body(exchange)
        if body is None:
            return
        upstream = self.client.build_request(
            exchange.method,
            self._url(exchange),
            headers=exchange.upstream_headers(),
            content=bytes(body) if body else None,
        )
        try:
            response = await self.client.send(upstream, stream=True)
        except httpx2.TransportError as exc:
            await _unreachable(exchange, exc)
            return
        await self._relay(exchange, response, None)

    async def messages(self, exchange: Exchange) -> None:
        raw = await self._body(exchange)
        if raw is None:
            return
        try:
            payload = messages_request(raw)
        except BadBody as exc:
            await self.refuse(exchange, 400, str(exc))
            return
        headers = exchange.upstream_headers()
        count_url = self._url(exchange, "/v1/messages/count_tokens")

        async def count(body: dict[str, Any]) -> int | None:
            try:
                answer = await self.client.post(
                    count_url, headers=headers, content=json.dumps(body), timeout=COUNT_TIMEOUT_S
                )
                counted = answer.json()["input_tokens"] if answer.status_code == 200 else None
            except (httpx2.HTTPError, ValueError, KeyError, TypeError):
                return None
            # A count that is not a whole number of tokens is no count.
            ok = isinstance(counted, int) and not isinstance(counted, bool) and counted >= 0
            return counted if ok else None

        try:
            scopes = proxy_scopes(exchange.text_headers(), payload, exchange.client)
            call = await self.meter.admit(bytes(raw), payload, exchange.client, count, scopes)
        except Exception as exc:  # fail closed: what cannot be metered is not sent
            await self.refuse(
                exchange, 400, f"cannot meter this request ({_what(exc)})", model=_model(payload)
            )
            return
        if isinstance(call, Refused):
            await self.answer_refused(exchange, call)
            return
        await self._send(exchange, call, headers)

    async def _send(
        self, exchange: Exchange, call: Admitted, headers: list[tuple[bytes, bytes]]
    ) -> None:
        upstream = self.client.build_request(
            "POST", self._url(exchange), headers=headers, content=call.body
        )
        try:
            response = await self.client.send(upstream, stream=True)
        except BaseException as exc:
            # A failed connect never sent the request; any later failure may have been billed.
            sent = not isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout)
            self.meter.settle(
                call,
                status=None,
                scanner=UsageScanner(False),
                transport_error=_what(exc),
                sent=sent,
            )
            if isinstance(exc, httpx2.TransportError):
                await _unreachable(exchange, exc)
                return
            raise
        await self._relay(exchange, response, call)

    async def _relay(
        self, exchange: Exchange, response: httpx2.Response, call: Admitted | None
    ) -> None:
        """The upstream's answer, passed on as it arrives. A metered call's is read for usage
        on the way and settled once, however it ends (whole, cut by the upstream, the client
        gone): before the client has the last byte, so that its next request finds this one
        settled, not in flight."""
        streamed = "text/event-stream" in response.headers.get("content-type", "")
        scanner = UsageScanner(streamed)
        length = response.headers.get("content-length")
        expected = int(length) if length and length.isdigit() else None
        clock = self.meter.clock
        ttft: float | None = None
        error: str | None = None
        settled = False

        def settle() -> None:
            nonlocal settled
            if call is None or settled:
                return
            settled = True
            self.meter.settle(
                call,
                status=response.status_code,
                scanner=scanner,
                request_id=response.headers.get("request-id"),
                ttft_s=ttft,
                transport_error=error,
            )

        # The client hanging up cancels the relay (uvicorn's send goes quiet, not raises).
        gone = _on_disconnect(exchange.receive, asyncio.current_task())
        send = exchange.send
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k, v) for k, v in response.headers.raw if k.lower() not in _RESPONSE_DROP
                    ],
                }
            )
            exchange.started = True
            received = 0
            try:
                async for chunk in response.aiter_raw():
                    if call is not None:
                        if ttft is None:
                            ttft = clock() - call.started
                        scanner.feed(chunk)
                        received += len(chunk)
                        if (
                            scanner.completed
                            or scanner.error is not None
                            or (expected is not None and received >= expected)
                        ):
                            settle()
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx2.TransportError as exc:  # cut by the upstream: the client sees it cut
                error = _what(exc)
            settle()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()
            settle()
            await asyncio.shield(response.aclose())

    async def aclose(self) -> None:
        await self.client.aclose()


def _on_disconnect(
    receive: ASGIReceiveCallable, task: asyncio.Task[Any] | None
) -> asyncio.Task[Any]:
    """A watcher that cancels `task` when the client disconnects."""

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if task is not None:
            task.cancel()

    return asyncio.ensure_future(watch())


def _model(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    return model if isinstance(model, str) else ""


def _what(exc: BaseException) -> str:
    if isinstance(exc, httpx2.TransportError):
        return f"cannot reach the upstream: {type(exc).__name__}"
    return f"{type(exc).__name__}"


async def _unreachable(exchange: Exchange, exc: httpx2.TransportError) -> None:
    await exchange.answer(502, error_body("api_error", f"tuiagent proxy: {_what(exc)}"))


def _say_error(line: str) -> None:
    with contextlib.suppress(OSError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


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


class Served(Protocol):
    """An ASGI app to serve, closed when the server stops (the proxy; the offline model)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    async def aclose(self) -> None: ...


class ProxyServer:
    """uvicorn serving an app (a ProxyApp, or `tuiagent serve`'s offline model) on a socket
    bound at once, in this thread or another."""

    def __init__(self, proxy: Served, sock: socket.socket, host: str = "127.0.0.1") -> None:
        self.proxy = proxy
        self.socket = sock
        self.host = host
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(
            proxy,
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
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

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
