"""`tuiagent serve`: the offline model as an Anthropic-compatible HTTP server (starlette on
uvicorn), for any client, a CI job, or `tuiagent proxy --offline` in front of it.

Each request goes to the same `OfflineModel` transport the app plugs into the SDK, so a
client over HTTP gets exactly what the SDK in this process gets: the Messages API's JSON and
SSE, its rules and its errors. Every response says it is simulated
(`x-tuiagent-simulated: true`). A key is needed as it is by the API (`x-api-key` or
`Authorization: Bearer`), but any value will do: nothing leaves the machine.
"""

from __future__ import annotations

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tuiagent.offline.transport import OfflineModel

SIMULATED_HEADER = ("x-tuiagent-simulated", "true")
# What the API answers a request with no credentials (as it words it).
NO_KEY = "x-api-key header is required"
# The API's request size limit for Messages and count_tokens (its API overview: "32 MB",
# answered 413 `request_too_large` by its front, Cloudflare, before the API reads the body).
MAX_REQUEST_BYTES = 32 * 1024 * 1024
TOO_LARGE = "Request exceeds the maximum allowed number of bytes."
# Headers of the model's answer that the HTTP server sets itself.
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


class OfflineAPI:
    """The ASGI app: every path goes to the offline model, as the API's host would take it.
    Served by the proxy's server class (`tuiagent.proxy.server.ProxyServer`)."""

    def __init__(self, model: OfflineModel | None = None) -> None:
        self.model = model or OfflineModel()
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def aclose(self) -> None:
        """Nothing to close: the model lives in this process."""

    async def handle(self, request: Request) -> Response:
        if "x-api-key" not in request.headers and "authorization" not in request.headers:
            return _refused(401, "authentication_error", NO_KEY)
        content = bytearray()
        async for chunk in request.stream():  # read no more than the API would
            content += chunk
            if len(content) > MAX_REQUEST_BYTES:
                return _refused(413, "request_too_large", TOO_LARGE)
        query = request.url.query
        answer = await self.model.handle_async_request(
            httpx2.Request(
                request.method,
                "http://offline" + request.url.path + (f"?{query}" if query else ""),
                headers=[(k, v) for k, v in request.headers.raw if k.lower() != b"host"],
                content=bytes(content),
            )
        )
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in _OWN_HEADERS}
        headers.update([SIMULATED_HEADER])
        if "text/event-stream" in answer.headers.get("content-type", ""):
            return StreamingResponse(
                answer.aiter_raw(), status_code=answer.status_code, headers=headers
            )
        return Response(await answer.aread(), status_code=answer.status_code, headers=headers)


def _refused(status: int, kind: str, message: str) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status, headers=dict([SIMULATED_HEADER]))
