"""The HTTP face of the proxy: an ASGI app on uvicorn, httpx2 (over aiohttp, `upstream`)
streaming to the upstream.

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
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import httpx2
import uvicorn
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tuiagent.errors import UsageError
from tuiagent.ledger import proxy_scopes
from tuiagent.llm.endpoints import (
    MAX_BODY_BYTES,
    UNBILLED_POSTS,
    BadPath,
    Endpoint,
    Unbilled,
    endpoint,
    normalise,
    quoted,
)
from tuiagent.proxy import DEFAULT_UPSTREAM
from tuiagent.proxy.batches import Batches, ResultsReader, results_url
from tuiagent.proxy.body import BadBody, body_betas, messages_request, parse_json
from tuiagent.proxy.door import Door
from tuiagent.proxy.encoding import Decoder
from tuiagent.proxy.keptlog import writable
from tuiagent.proxy.meter import Admitted, Meter, NotAdmitted
from tuiagent.proxy.sse import UsageScanner
from tuiagent.proxy.upstream import UpstreamClient
from tuiagent.redact import remember

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
# Headers that have a server or gateway read a request as another method than it came with
# (a GET to /v1/messages carrying a body and `X-HTTP-Method-Override: POST`): the proxy routes
# and meters by the method it sees, so a request that names another is not sent.
METHOD_OVERRIDES = frozenset({b"x-http-method-override", b"x-http-method", b"x-method-override"})
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
        self.extra: list[tuple[bytes, bytes]] = []  # added to the response (CORS)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def betas(self) -> tuple[str, ...]:
        """The betas the request asks for: every `anthropic-beta` header's comma-separated
        values (they may widen what a request reaches: `Bounds`)."""
        return tuple(
            beta.strip()
            for key, value in self.headers
            if key == b"anthropic-beta"
            for beta in value.decode("latin-1").split(",")
            if beta.strip()
        )

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
        head = [*(headers or []), *self.extra]
        if not any(k == b"content-type" for k, _ in head):
            head.append((b"content-type", b"application/json"))
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
        try:  # (asyncio.timeout: 3.11's wait_for can drop a cancellation, see Stack.hold_async)
            async with asyncio.timeout(BODY_IDLE_TIMEOUT_S):
                message = await exchange.receive()
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


# Our refusals are final. The SDKs retry nothing marked so; the coding agent goes by the
# status: it stops on a 400 but retries a 529 whatever the header says, retries a 404 once
# (then blames the model) and shows a 403 as a failed login (tests/proxy/test_clients.py).
# So a refused Messages request is a 400, whatever the reason.
_FINAL = [(b"x-should-retry", b"false")]


class ProxyApp:
    def __init__(
        self,
        meter: Meter,
        upstream: str = DEFAULT_UPSTREAM,
        *,
        unbilled_paths: tuple[str, ...] = (),
        door: Door | None = None,
    ) -> None:
        self.meter = meter
        self.upstream = upstream.rstrip("/")
        self.unbilled = Unbilled.of(unbilled_paths)
        self.door = door or Door()
        self.batches = Batches(meter)
        self.credentials = Credentials()
        self.client = UpstreamClient(
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
        origin = exchange.header(b"origin")
        refusal = self.door.refusal(exchange.header(b"host"), origin)
        if refusal is not None:
            await self.refuse(exchange, 403, refusal, kind="permission_error")
            return
        if origin is not None:  # a web page the config allows: it may read the answers
            exchange.extra = [(b"access-control-allow-origin", origin), (b"vary", b"origin")]
            if method == "OPTIONS":
                await exchange.answer(204, b"", _preflight(exchange))
                return
        if not self.credentials.take(exchange.headers):
            await self.refuse(
                exchange,
                403,
                f"more than {MAX_CREDENTIALS} different API keys in one run",
                kind="permission_error",
            )
            return
        twice = _credential_twice(exchange.headers)  # (both remembered first: redacted)
        if twice is not None:
            await self.refuse(exchange, 400, twice)
            return
        override = next((k for k, _ in exchange.headers if k in METHOD_OVERRIDES), None)
        if override is not None:
            name = override.decode("latin-1")
            await self.refuse(
                exchange,
                400,
                f"{name} would have the upstream read this {method} as another method",
            )
            return
        try:
            exchange.path = normalise(exchange.raw_path)
        except BadPath as exc:
            shown = exchange.raw_path.decode("latin-1")
            await self.refuse(exchange, 400, f"the path {shown!r} has {exc}")
            return
        route = endpoint(exchange.path)
        billable = method == "POST" and route in (Endpoint.MESSAGES, Endpoint.BATCHES)
        if billable and not writable(self.meter.log):
            # The refusal itself is kept for the log with the records in flight.
            problem = getattr(self.meter.log, "problem", "")
            await self.refuse(exchange, 400, f"{problem}; the proxy cannot record a call")
            return
        if route is Endpoint.MESSAGES and method == "POST":
            await self.messages(exchange)
        elif route is Endpoint.BATCHES and method == "POST":
            await self.create_batch(exchange)
        elif (method == "GET" and route in (Endpoint.BATCHES, Endpoint.BATCH)) or (
            method == "POST" and route is Endpoint.BATCH_CANCEL
        ):
            await self.batch_objects(exchange)
        elif method == "GET" and route is Endpoint.BATCH_RESULTS:
            batch_id = exchange.path.split("/")[4]
            await self.passthrough(exchange, ResultsReader(self.batches, batch_id))
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
        """Answer with an Anthropic-shaped error, and record the refusal (in its session,
        when its headers name one: its body may be what could not be read)."""
        refused = self.meter.refuse(
            exchange.client,
            model,
            f"tuiagent proxy: refused before sending: {reason}",
            proxy_scopes(exchange.text_headers(), {}, exchange.client),
        )
        await self.answer_refused(exchange, refused, status, kind)

    @staticmethod
    async def answer_refused(
        exchange: Exchange,
        refused: NotAdmitted,
        status: int = 400,
        kind: str = "invalid_request_error",
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

    async def _forward(self, exchange: Exchange, *, stream: bool) -> httpx2.Response | None:
        """The request sent on as it came (its body read whole first); None when a refusal
        or a 502 has answered."""
        body = await self._body(exchange)
        if body is None:
            return None
        if body and exchange.method in ("GET", "HEAD"):  # it passes unmetered only bodiless
            await self.refuse(exchange, 400, f"a {exchange.method} with a body is not passed on")
            return None
        upstream = self.client.build_request(
            exchange.method, self._url(exchange), **_upload(exchange.upstream_headers(), body)
        )
        try:
            return await self.client.send(upstream, stream=stream)
        except httpx2.TransportError as exc:
            await _unreachable(exchange, exc)
            return None

    async def passthrough(self, exchange: Exchange, tap: ResultsReader | None = None) -> None:
        """Unmetered: what bills nothing (count_tokens, reads, configured unbilled paths);
        `tap` reads a batch's results on their way, settling each."""
        response = await self._forward(exchange, stream=True)
        if response is not None:
            await self._relay(exchange, response, None, tap)

    # --- Message Batches (batches.py) -----------------------------------------------------

    async def _read(
        self, exchange: Exchange, parse: Callable[[bytes | bytearray], Any]
    ) -> tuple[bytes | bytearray, Any] | None:
        """The body, and what `parse` reads of it; None when a refusal has answered (too
        large, or a field it cannot read exactly)."""
        raw = await self._body(exchange)
        if raw is None:
            return None
        try:
            return raw, parse(raw)
        except BadBody as exc:
            await self.refuse(exchange, 400, str(exc), model=exc.model)
            return None

    async def create_batch(self, exchange: Exchange) -> None:
        """A batch held whole at its worst case before it is sent, or refused."""
        read = await self._read(exchange, parse_json)
        if read is None:
            return
        raw, body = read
        headers = exchange.text_headers()
        pending = await self.batches.hold(
            body,
            exchange.client,
            lambda params: proxy_scopes(headers, params, exchange.client),
            exchange.betas(),
        )
        if isinstance(pending, NotAdmitted):
            await self.answer_refused(exchange, pending)
            return
        upstream = self.client.build_request(
            "POST", self._url(exchange), **_upload(exchange.upstream_headers(), raw)
        )
        try:
            response = await self.client.send(upstream)
        except httpx2.ConnectError as exc:  # never sent: nothing billed
            self.batches.failed(pending, _what(exc), sent=False)
            await _unreachable(exchange, exc)
            return
        except httpx2.TransportError as exc:
            # Sent, and maybe created: with no batch id its holds stay held, at worst case.
            await _unreachable(exchange, exc)
            return
        if response.status_code >= 300:
            self.batches.failed(pending, f"the upstream answered {response.status_code}")
            await _answer(exchange, response, response.content)
            return
        batch = _json(response.content)
        self.batches.created(pending, batch)
        await self._answer_batches(exchange, response, batch)

    async def batch_objects(self, exchange: Exchange) -> None:
        """A batch retrieved, listed or cancelled: seen (one that ended with nothing run
        releases its holds), its results_url pointed at the proxy."""
        response = await self._forward(exchange, stream=False)
        if response is None:
            return
        answer = _json(response.content) if response.status_code < 300 else None
        if answer is None:
            await _answer(exchange, response, response.content)
            return
        listed = answer.get("data") if isinstance(answer.get("data"), list) else [answer]
        for batch in listed:
            self.batches.seen(batch)
        await self._answer_batches(exchange, response, answer)

    async def _answer_batches(
        self, exchange: Exchange, response: httpx2.Response, answer: Any
    ) -> None:
        host = (exchange.header(b"host") or b"127.0.0.1").decode("latin-1")
        base = f"http://{host}"
        if isinstance(answer, dict) and isinstance(answer.get("data"), list):
            answer = {**answer, "data": [results_url(b, base) for b in answer["data"]]}
        else:
            answer = results_url(answer, base)
        await _answer(exchange, response, json.dumps(answer, separators=(",", ":")).encode())

    async def messages(self, exchange: Exchange) -> None:
        read = await self._read(exchange, messages_request)
        if read is None:
            return
        raw, payload = read
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
            betas = exchange.betas() + body_betas(payload)
            call = await self.meter.admit(raw, payload, exchange.client, count, scopes, betas)
        except Exception as exc:  # fail closed: what cannot be metered is not sent
            await self.refuse(
                exchange, 400, f"cannot meter this request ({_what(exc)})", model=_model(payload)
            )
            return
        if isinstance(call, NotAdmitted):
            await self.answer_refused(exchange, call)
            return
        await self._send(exchange, call, headers)

    async def _send(
        self, exchange: Exchange, call: Admitted, headers: list[tuple[bytes, bytes]]
    ) -> None:
        upstream = self.client.build_request(
            "POST", self._url(exchange), **_upload(headers, call.body)
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
        credential = exchange.header(b"x-api-key") or exchange.header(b"authorization")
        self.meter.rate_limits.observe(
            credential.decode("latin-1") if credential else None,
            response.status_code,
            response.headers,
        )
        await self._relay(exchange, response, call)

    async def _relay(
        self,
        exchange: Exchange,
        response: httpx2.Response,
        call: Admitted | None,
        tap: ResultsReader | None = None,
    ) -> None:
        """The upstream's answer, passed on as it arrives. A metered call's is read for usage
        on the way and settled once, however it ends (whole, cut by the upstream, the client
        gone): before the client has the last byte, so that its next request finds this one
        settled, not in flight."""
        kind = response.headers.get("content-type")
        streamed = "text/event-stream" in kind if kind else None  # None: as its bytes show
        encoding = response.headers.get("content-encoding")
        scanner = UsageScanner(streamed, encoding)
        results = Decoder(encoding)  # a batch's results (`tap`), as the scanner reads its own
        length = response.headers.get("content-length")
        expected = int(length) if length and length.isdigit() else None
        clock = self.meter.clock
        ttft: float | None = None
        error: str | None = None
        settled = False
        later: list[Callable[[], None]] = []  # the transcript's copy, after the last byte
        # The client hanging up cancels the relay (uvicorn's send goes quiet, not raises), once
        # the answer has named its model (an upstream may answer with a dearer one than
        # asked) or the call is settled.
        named = asyncio.Event()
        if call is None:
            named.set()

        def settle() -> None:
            nonlocal settled
            if call is None or settled:
                return
            settled = True
            named.set()  # nothing more to read for: a client that left may be let go
            self.meter.settle(
                call,
                status=response.status_code,
                scanner=scanner,
                request_id=response.headers.get("request-id"),
                ttft_s=ttft,
                transport_error=error,
                later=later,
            )

        gone = _on_disconnect(exchange.receive, asyncio.current_task(), named)
        send = exchange.send
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        *(
                            (k, v)
                            for k, v in response.headers.raw
                            if k.lower() not in _RESPONSE_DROP
                        ),
                        *exchange.extra,
                    ],
                }
            )
            exchange.started = True
            received = 0

            def arrived(chunk: bytes) -> None:
                """Each chunk read as it comes from the upstream, before it waits to go on:
                what was read is metered, even if the client leaves before it is sent."""
                nonlocal ttft, received
                if tap is not None:
                    tap.feed(results.feed(chunk))
                if call is None:
                    return
                if ttft is None:
                    ttft = clock() - call.started
                scanner.feed(chunk)
                if scanner.model:
                    named.set()
                received += len(chunk)
                if (
                    scanner.completed
                    or scanner.error is not None
                    or (expected is not None and received >= expected)
                ):
                    settle()

            try:
                async for data in coalesced(response.aiter_raw(), arrived):
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                if tap is not None:
                    tap.finish()
            except httpx2.TransportError as exc:  # cut by the upstream: the client sees it cut
                error = _what(exc)
            settle()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if error is None and not gone.done():  # not the client leaving: the server stopping
                error = "cut when the proxy stopped, before the answer ended"
            raise
        finally:
            if error is None and gone.done() and not gone.cancelled():
                error = "the client hung up before the answer ended"
            gone.cancel()
            settle()
            for keep in later:
                keep()
            await asyncio.shield(response.aclose())

    async def aclose(self) -> None:
        await self.client.aclose()


def _upload(headers: list[tuple[bytes, bytes]], body: bytes | bytearray) -> dict[str, Any]:
    """A request body for httpx as it was read (a buffer of up to 32 MB is not copied into a
    `bytes` first), with its length."""
    if not body:
        return {"headers": headers}

    async def whole() -> AsyncIterator[bytes]:
        yield body  # type: ignore[misc]  # a bytearray is written as bytes are

    length = (b"content-length", str(len(body)).encode())
    return {"headers": [*headers, length], "content": whole()}


def _preflight(exchange: Exchange) -> list[tuple[bytes, bytes]]:
    """A CORS preflight's answer, for an origin the config allows."""
    asked = exchange.header(b"access-control-request-headers") or b""
    return [
        (b"access-control-allow-methods", b"GET, POST, DELETE"),
        (b"access-control-allow-headers", asked),
        (b"access-control-max-age", b"600"),
    ]


MAX_CREDENTIALS = 256


class Credentials:
    """The credentials clients sent (`x-api-key`, `Authorization` and its token), each
    remembered by the redaction filter the first time it is seen, so that no log, transcript,
    line or screen shows it, whatever echoes it (an upstream's error quoting a gateway's
    bearer token). Bounded: a client sending endless keys would make every redaction slower."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def take(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Remember this request's credentials; False if that would be too many."""
        for name, value in headers:
            if name not in (b"x-api-key", b"authorization") or value in self._seen:
                continue
            if len(self._seen) >= MAX_CREDENTIALS:
                return False
            self._seen.add(value)
            text = value.decode("latin-1")
            remember(text)
            scheme, _, token = text.strip().partition(" ")
            if token and scheme.lower() in ("bearer", "basic"):
                remember(token.strip())
        return True


def _credential_twice(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why a request that names two different keys in one header is not sent: the budgets
    by key hold it against one, and the upstream may bill the other."""
    for name in (b"x-api-key", b"authorization"):
        if len({v.strip() for k, v in headers if k == name}) > 1:
            return f"{name.decode()} is given twice, with different values: which key pays is not known"
    return None


COALESCE_HIGH = 1 << 20  # bytes read ahead of the client at most


async def coalesced(
    chunks: AsyncIterator[bytes], arrived: Callable[[bytes], None]
) -> AsyncIterator[bytes]:
    """The chunks as they come, each batch all that arrived while the last went out.

    An upstream that streams fast sends many small chunks (one SSE event, or a few), and
    each chunk written on costs as much as its bytes; read by a task of its own, what came in
    during one write goes out in the next, joined. A chunk that comes alone goes on at once.
    `arrived` sees each chunk as it is read (the meter's scanner), not when it goes on. At
    most COALESCE_HIGH bytes are read ahead of a slow client. A failure of the reading (the
    upstream cut) is raised after what came before it."""
    parts: list[bytes] = []
    size = 0
    more = asyncio.Event()
    room = asyncio.Event()
    room.set()
    ended = False
    failure: Exception | None = None

    async def read() -> None:
        nonlocal size, ended, failure
        try:
            async for chunk in chunks:
                arrived(chunk)
                parts.append(chunk)
                size += len(chunk)
                more.set()
                if size >= COALESCE_HIGH:
                    room.clear()
                    await room.wait()
        except Exception as exc:
            failure = exc
        finally:
            ended = True
            more.set()

    reader = asyncio.ensure_future(read())
    try:
        while True:
            if not parts and not ended:
                more.clear()
                await more.wait()
            if parts:
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                parts.clear()
                size = 0
                room.set()
                yield data
            elif failure is not None:
                raise failure
            else:
                return
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader  # done with the upstream's stream before it is closed


LEFT_READ_S = 10.0  # how long an answer is still read, after its client left, for its model


def _on_disconnect(
    receive: ASGIReceiveCallable, task: asyncio.Task[Any] | None, named: asyncio.Event
) -> asyncio.Task[Any]:
    """A watcher that cancels `task` when the client disconnects, once `named` is set (the
    answer named the model that billed it) or LEFT_READ_S later: cut at once, a call would
    be settled at the asked model's worst case while the upstream billed a dearer one."""

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(named.wait(), LEFT_READ_S)
        if task is not None:
            task.cancel()

    return asyncio.ensure_future(watch())


async def _answer(exchange: Exchange, response: httpx2.Response, body: bytes) -> None:
    """The upstream's answer, read whole (a batch object), with `body` as its body: decoded
    (httpx undid its content-encoding), so that header does not pass."""
    drop = _RESPONSE_DROP | {b"content-length", b"content-type", b"content-encoding"}
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in drop]
    kind = response.headers.get("content-type", "application/json").encode("latin-1")
    await exchange.answer(response.status_code, body, [(b"content-type", kind), *headers])


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


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


HEADER_TIMEOUT_S = 10.0  # a request's head must arrive whole within this
MAX_HEADER_BYTES = 64 * 1024
MAX_CONNECTIONS = 512  # open at once; the next ones are closed as they come


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with the limits a server on a shared machine needs and it
    lacks: a request's head must come whole within HEADER_TIMEOUT_S and MAX_HEADER_BYTES (a
    client that opens connections and never finishes its headers holds none for long), and
    at most MAX_CONNECTIONS are open at once. (An idle kept-alive connection is uvicorn's
    keep-alive timeout's.)"""

    _head_timer: asyncio.TimerHandle | None = None
    _in_head = True
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > MAX_CONNECTIONS:
            transport.abort()
            return
        self._arm()

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():  # the head is not whole yet
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._disarm()
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"content-length: 0\r\nconnection: close\r\n\r\n"
                )
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_S = 5  # on stop, calls in flight get this long to finish; then they are cut and settled


class Served(Protocol):
    """An ASGI app to serve, closed when the server stops (the proxy; the offline model)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    async def aclose(self) -> None: ...


class ProxyServer:
    """uvicorn serving an app (a ProxyApp, or `tuiagent serve`'s offline model) on a socket
    bound at once, in a thread of its own.

    Stopping (`stop()`, or SIGINT, SIGTERM or SIGHUP while `serve()` waits) closes the
    listening socket, gives the calls in flight GRACE_S to finish, then cuts the rest; each
    is settled and recorded on its way out (the relay's `finally`), before `stop()` returns.
    """

    def __init__(self, proxy: Served, sock: socket.socket, host: str = "127.0.0.1") -> None:
        self.proxy = proxy
        self.socket = sock
        self.host = host
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(
            proxy,
            # Quiet: a hostile client must not fill the terminal with uvicorn's warnings (bad
            # requests), and the app answers its own errors; what matters is said by the proxy.
            log_level="critical",
            access_log=False,  # paths and queries only, but nothing of the traffic is logged
            server_header=False,  # the upstream's own server and date headers pass through
            date_header=False,
            lifespan="off",
            http=GuardedHttp,
            timeout_graceful_shutdown=GRACE_S,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.stopped_by: int | None = None  # the signal that stopped it, if one did
        self.on_stop: list[Callable[[], None]] = []  # told when a signal asks it to stop

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.socket])
        finally:
            await self.proxy.aclose()

    def start(self) -> ProxyServer:
        self._thread = threading.Thread(target=self._run, name="tuiagent-proxy", daemon=True)
        self._thread.start()
        return self

    def serve(self) -> None:
        """Serve until stopped (a signal, with `stopped_by_signals` around it)."""
        self.start()
        assert self._thread is not None
        while self._thread.is_alive():
            self._thread.join(0.2)  # a short wait, so a signal's handler runs at once

    @contextlib.contextmanager
    def stopped_by_signals(self) -> Iterator[None]:
        """SIGINT, SIGTERM and SIGHUP ask the server to stop (a second one: at once), in
        this (the main) thread, instead of ending the process where it stands."""

        def handler(signum: int, _frame: object) -> None:
            if self.stopped_by is not None:
                self.server.force_exit = True
                return
            self.stopped_by = signum
            self.server.should_exit = True
            for stop in list(self.on_stop):
                with contextlib.suppress(RuntimeError):  # a dashboard already gone
                    stop()

        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=GRACE_S + 10)
        with contextlib.suppress(OSError):
            self.socket.close()
