"""The proxy's client to the upstream: httpx2's client (what the proxy is written against),
its requests carried by aiohttp.

httpx2's own transport reads a response with h11, in pure Python, one event per HTTP chunk,
and a streamed answer comes in many small chunks (an SSE event or a few each): that parsing
was two thirds of the proxy's CPU per MB relayed (bench_proxy's 9.4 MB stream: 8.1 ms/MB,
against 3.4 ms/MB with aiohttp's C parser, which also hands over all that one read brought).
The anthropic SDK offers the same pairing (`DefaultAioHttpClient`); this one is ours so that
what a failure means for money is exact (`_failure`): only a connection never made is a
`ConnectError` or `ConnectTimeout`, which the proxy takes as never sent, nothing billed; any
failure after the connection was made may have been billed, and is another TransportError.
The environment's proxies (`HTTPS_PROXY`, ...) are honoured as httpx2 honours them; the body
is passed byte for byte (nothing decompressed, no redirect followed).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx2
import yarl

_LIMITS = httpx2.Limits()


class UpstreamClient(httpx2.AsyncClient):
    """An httpx2 client whose requests aiohttp carries (its proxies' requests too)."""

    def _init_transport(  # type: ignore[override]
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        limits: httpx2.Limits = _LIMITS,
        transport: httpx2.AsyncBaseTransport | None = None,
        **_: Any,
    ) -> httpx2.AsyncBaseTransport:
        return transport or AiohttpTransport(
            httpx2.create_ssl_context(verify, cert, trust_env), limits
        )

    def _init_proxy_transport(  # type: ignore[override]
        self,
        proxy: httpx2.Proxy,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        limits: httpx2.Limits = _LIMITS,
        **_: Any,
    ) -> httpx2.AsyncBaseTransport:
        context = httpx2.create_ssl_context(verify, cert, trust_env)
        return AiohttpTransport(context, limits, proxy)


class AiohttpTransport(httpx2.AsyncBaseTransport):
    def __init__(
        self, context: ssl.SSLContext, limits: httpx2.Limits, proxy: httpx2.Proxy | None = None
    ) -> None:
        self.context = context
        self.limits = limits
        self.proxy = proxy
        self._session: aiohttp.ClientSession | None = None  # made in the event loop

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self.context,
                limit=self.limits.max_connections or 0,
                keepalive_timeout=self.limits.keepalive_expiry or 5.0,
            )
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout", {})
        proxy = self.proxy
        try:
            data: Any = request.content or None
        except httpx2.RequestNotRead:
            data = request.stream  # sent as it is read (with its content-length)
        with _failure():
            response = await self._client().request(
                request.method,
                # As httpx2 built it, not re-quoted; its userinfo is the Authorization header.
                yarl.URL(str(request.url.copy_with(userinfo=b"")), encoded=True),
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                data=data,
                skip_auto_headers=("Content-Type",),  # none added to a body sent without
                allow_redirects=False,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
                proxy=str(proxy.url) if proxy else None,
                proxy_auth=aiohttp.BasicAuth(*proxy.auth) if proxy and proxy.auth else None,
                proxy_headers=dict(proxy.headers) if proxy else None,
            )
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx2.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_Body(response),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx2.AsyncByteStream):
    """A response's body: whatever each read brought, as it comes."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _failure():
            async for chunk in self.response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        if self.response.content.at_eof():
            self.response.release()  # the connection goes back to the pool
        else:
            self.response.close()  # left unread: the connection is not reused


# Never sent: the connection was not made (refused, DNS, TLS, the proxy's CONNECT). Checked
# before the broader classes below, since aiohttp's classes overlap.
_NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ClientHttpProxyError, aiohttp.InvalidURL)


@contextlib.contextmanager
def _failure() -> Iterator[None]:
    """aiohttp's errors as httpx2's, by what they mean for money (see the module)."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx2.ConnectTimeout(str(exc)) from exc
    except _NOT_CONNECTED as exc:
        raise httpx2.ConnectError(str(exc)) from exc
    except aiohttp.SocketTimeoutError as exc:
        raise httpx2.ReadTimeout(str(exc)) from exc
    except aiohttp.ServerTimeoutError as exc:
        raise httpx2.ReadTimeout(str(exc)) from exc
    except aiohttp.ClientResponseError as exc:  # a response that is not HTTP
        raise httpx2.RemoteProtocolError(str(exc)) from exc
    except (aiohttp.ClientError, OSError) as exc:  # cut, reset, disconnected: maybe billed
        raise httpx2.ReadError(str(exc) or type(exc).__name__) from exc
