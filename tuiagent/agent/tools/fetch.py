"""fetch_url: an HTTP GET, returning status, content type and body. Off unless enabled.

Text bodies come back as text (a large one is then compressed like any result); a binary
body is described by kind and size, never dumped. Reads at most MAX_BODY_BYTES, and the
whole fetch (connect, headers, body) has one total deadline, `timeout_s`: a body trickled
byte by byte ends there with an error result, not after each slow read.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2

from tuiagent.agent.tools.base import Tool, ToolError

MAX_BODY_BYTES = 2_000_000
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")


def _is_text(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return not kind or kind.startswith(_TEXT_TYPES) or kind.endswith(("+json", "+xml"))


class Fetcher:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    async def fetch_url(self, args: dict[str, Any]) -> str:
        url = args.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ToolError(f"url must be an http:// or https:// address, got {url!r}")
        body = bytearray()
        truncated = False
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                httpx2.AsyncClient(timeout=self.timeout_s, follow_redirects=True) as client,
                client.stream("GET", url) as response,
            ):
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        truncated = True
                        del body[MAX_BODY_BYTES:]
                        break
                status = f"{response.status_code} {response.reason_phrase}".strip()
                content_type = response.headers.get("content-type", "")
                encoding = response.encoding or "utf-8"
        except (TimeoutError, httpx2.TimeoutException):
            raise ToolError(
                f"fetching {url} timed out after {self.timeout_s:g}s (its total deadline), "
                f"with {len(body):,} bytes of the body received"
            ) from None
        except httpx2.InvalidURL as exc:
            raise ToolError(f"invalid url {url!r}: {exc}") from None
        except httpx2.HTTPError as exc:
            raise ToolError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
        head = f"HTTP {status}\ncontent-type: {content_type or '(none)'}\n"
        if not _is_text(content_type) or b"\x00" in body[:8192]:
            size = f"{len(body):,}{'+' if truncated else ''} bytes"
            return head + f"\n[binary body ({content_type or 'unknown type'}), {size}; not shown]"
        try:
            text = body.decode(encoding, errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        if truncated:
            text += f"\n[body cut at {MAX_BODY_BYTES:,} bytes]"
        return head + "\n" + text

    def tool(self) -> Tool:
        return Tool(
            "fetch_url",
            "HTTP GET a URL; returns the status, content type and body (binary bodies are "
            "described, not shown).",
            {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]},
            self.fetch_url,
            deadline_s=self.timeout_s + 5,
        )
