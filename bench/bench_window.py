"""What a web search is held at through the proxy, before and after holds took the window a
request can reach (`Bounds`): the old rule held every pass of the server's loop, on every
model, as 1M tokens (the long-context beta header was not seen); now a pass is held as the
model's own window unless the request's `anthropic-beta` header widens it.

Each request is held by the meter the proxy runs (`CallMeter.reserve`, its whole worst case:
no cap in the way), once with the old rule's window and once as its headers allow now; the
figures print side by side. `python -m bench bench_window`
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tuiagent.cost.budget import LONG_CONTEXT_WINDOW, Bounds, Budget
from tuiagent.cost.pricing import Pricer
from tuiagent.meter import CallMeter, Held

# claude-code 2.1.197's anthropic-beta header (captured on 127.0.0.1): with claude-opus-4-8
# it asks for the long context; with claude-sonnet-4-5 it does not.
OPUS_BETAS = (
    "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14,"
    "thinking-token-count-2026-05-13,context-management-2025-06-27,"
    "prompt-caching-scope-2026-01-05,mid-conversation-system-2026-04-07,effort-2025-11-24"
)
SONNET_BETAS = (
    "claude-code-20250219,interleaved-thinking-2025-05-14,thinking-token-count-2026-05-13,"
    "context-management-2025-06-27,prompt-caching-scope-2026-01-05"
)


def _search(model: str, max_uses: int, max_tokens: int) -> dict[str, Any]:
    """A request shaped as claude-code's WebSearch tool sends it."""
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": "You are an assistant for performing a web search tool use",
        "messages": [
            {"role": "user", "content": "Perform a web search for the query: weather in Paris"}
        ],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": max_uses}],
    }


CASES = [
    ("claude-code WebSearch, opus-4-8, max_uses 8", _search("claude-opus-4-8", 8, 64_000), OPUS_BETAS),
    ("one search, sonnet-4-5, max_uses 1", _search("claude-sonnet-4-5", 1, 1024), ""),
    ("claude-code WebSearch, sonnet-4-5, max_uses 8", _search("claude-sonnet-4-5", 8, 32_000), SONNET_BETAS),
    ("one search, sonnet-4-5, context-1m beta", _search("claude-sonnet-4-5", 1, 1024), "context-1m-2025-08-07"),
]  # fmt: skip


async def _held(request: dict[str, Any], bounds: Bounds) -> Decimal:
    meter = CallMeter(Pricer(), Budget(Decimal(10_000)), min_useful_tokens=256)
    model = request["model"]
    held = await meter.reserve(model, request, None, label="bench", bounds=bounds)
    assert isinstance(held, Held), held
    held.hold.release()
    return held.reservation.worst_case_usd


def run() -> list[tuple[str, str, str]]:
    rows = []
    for name, request, header in CASES:
        model = request["model"]
        now = Bounds.of(model, [b for b in header.split(",") if b])
        own = Bounds.of(model)
        old = Bounds(max(own.window, LONG_CONTEXT_WINDOW), own.max_output)  # the old rule
        before = asyncio.run(_held(request, old))
        after = asyncio.run(_held(request, now))
        rows.append(
            (
                name,
                f"${after:.2f} (window {now.window:,})",
                f"before ${before:.2f} (window {old.window:,})",
            )
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))
