"""Prompt caching: where the breakpoints go, and the rules both the planner and the offline
model follow.

Minimum cacheable prefix per model, in tokens. Below it a breakpoint silently caches nothing.
Sources: Anthropic's prompt-caching guide as quoted in public docs and threads (2026):
512 for Opus 5, Fable 5, Mythos 5; 1,024 for Opus 4.8, Sonnet 5, Sonnet 4.6/4.5, Opus 4.1/4;
2,048 for Opus 4.7 and Haiku 3.5/3; 4,096 for Opus 4.6, Opus 4.5 and Haiku 4.5.
No figure was found for the 5.5 models: they take their family's 5.x figure, or 1,024
(the most common floor) where the family has none.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from tuiagent.llm.tokens import REQUEST_OVERHEAD, request_blocks

CacheTTL = Literal["5m", "1h"]
MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}

# Longest matching prefix wins.
MIN_CACHEABLE_TOKENS: dict[str, int] = {
    "claude-opus-5": 512,
    "claude-fable-5": 512,
    "claude-mythos-5": 512,
    "claude-mythos-preview": 512,
    "claude-sonnet-5": 1024,
    "claude-haiku-5": 1024,
    "claude-opus-4-8": 1024,
    "claude-opus-4-7": 2048,
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096,
    "claude-sonnet-4-6": 1024,
    "claude-sonnet-4-5": 1024,
    "claude-opus-4-1": 1024,
    "claude-opus-4": 1024,
    "claude-sonnet-4": 1024,
    "claude-3-5-haiku": 2048,
    "claude-3-haiku": 2048,
}
DEFAULT_MIN_CACHEABLE_TOKENS = 1024


def min_cacheable_tokens(model: str) -> int:
    best = ""
    for prefix in MIN_CACHEABLE_TOKENS:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return MIN_CACHEABLE_TOKENS[best] if best else DEFAULT_MIN_CACHEABLE_TOKENS


def marker(ttl: CacheTTL) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": ttl}


def plan_breakpoints(request: dict[str, Any], model: str, ttl: CacheTTL = "5m") -> dict[str, Any]:
    """A copy of `request` with cache_control breakpoints placed.

    One at the end of the stable prefix (tools and system) when that alone is above the
    model's minimum; one rolling at the last block of the conversation, so every call reads
    everything the previous call wrote. Never more than MAX_BREAKPOINTS; none below the
    minimum (it would cache nothing, and on the API a marker there is silently ignored).
    """
    out = copy.deepcopy(request)
    # Markers go on blocks, so plain-string system and content become block lists.
    if isinstance(out.get("system"), str):
        out["system"] = [{"type": "text", "text": out["system"]}] if out["system"] else []
    for message in out.get("messages", []):
        if isinstance(message.get("content"), str):
            message["content"] = [{"type": "text", "text": message["content"]}]
    minimum = min_cacheable_tokens(model)
    n_stable = len(out.get("tools") or []) + len(out.get("system") or [])
    blocks = request_blocks(out)
    running = REQUEST_OVERHEAD
    prefix_tokens: list[int] = []
    for _, n in blocks:
        running += n
        prefix_tokens.append(running)
    chosen: list[int] = []
    if n_stable and prefix_tokens[n_stable - 1] >= minimum:
        chosen.append(n_stable - 1)
    last = len(blocks) - 1
    if last >= 0 and prefix_tokens[last] >= minimum and last not in chosen:
        chosen.append(last)
    for idx in chosen[:MAX_BREAKPOINTS]:
        blocks[idx][0]["cache_control"] = marker(ttl)
    return out


def without_breakpoints(request: dict[str, Any]) -> dict[str, Any]:
    """A copy of `request` with every cache_control marker removed: it can write nothing to
    the cache, so none of its input can be billed at the write premium."""
    out = copy.deepcopy(request)
    out.pop("cache_control", None)
    for block, _ in request_blocks(out):
        block.pop("cache_control", None)
    return out


def count_breakpoints(request: dict[str, Any]) -> int:
    return sum(1 for b, _ in request_blocks(request) if "cache_control" in b) + (
        1 if "cache_control" in request else 0
    )
