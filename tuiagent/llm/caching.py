"""Prompt caching: where the breakpoints go, and the rules both the planner and the offline
model follow.

The minimum cacheable prefix of each model (below it a breakpoint silently caches nothing)
is in the one table of model rules, `tuiagent.llm.models`, with its sources.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tuiagent.llm.models import rules_like
from tuiagent.llm.tokens import REQUEST_OVERHEAD, TokenUsage, prompt_tools, request_blocks

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}

DEFAULT_MIN_CACHEABLE_TOKENS = 1024


def min_cacheable_tokens(model: str) -> int:
    """The model's minimum, or 1,024 (the most common one) for a model not in the table."""
    rules = rules_like(model)
    return rules.min_cacheable if rules else DEFAULT_MIN_CACHEABLE_TOKENS


def marker(ttl: str) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": ttl}


def plan_breakpoints(
    request: dict[str, Any], model: str, ttl: str = "5m", hold: Iterable[int] = ()
) -> dict[str, Any]:
    """A copy of `request` with cache_control breakpoints placed.

    One at the end of the stable prefix (the tools in the prompt, deferred ones aside, and
    system) when that alone is above the model's minimum; one at the last block of each
    message index in `hold` (the end of the history's settled part, which clearing old tool
    results no longer edits: an edit after it rewrites only what follows); one rolling at
    the last block of the conversation, so every call reads everything the previous call
    wrote. Never more than MAX_BREAKPOINTS;
    none below the minimum (it would cache nothing, and on the API a marker there is
    silently ignored).
    """
    out = _with_own_blocks(request)
    # Markers go on blocks, so plain-string system and content become block lists.
    if isinstance(out.get("system"), str):
        out["system"] = [{"type": "text", "text": out["system"]}] if out["system"] else []
    for message in out.get("messages", []):
        if isinstance(message.get("content"), str):
            message["content"] = [{"type": "text", "text": message["content"]}]
    minimum = min_cacheable_tokens(model)
    n_stable = len(prompt_tools(out)) + len(out.get("system") or [])
    blocks = request_blocks(out)
    running = REQUEST_OVERHEAD
    prefix_tokens: list[int] = []
    for _, n in blocks:
        running += n
        prefix_tokens.append(running)
    chosen: list[int] = []
    if n_stable and prefix_tokens[n_stable - 1] >= minimum:
        chosen.append(n_stable - 1)
    ends, at = [], n_stable
    for message in out.get("messages", []):
        at += len(message.get("content") or [])
        ends.append(at - 1)
    for index in sorted(set(hold)):
        end = ends[index] if 0 <= index < len(ends) - 1 else -1
        if end >= 0 and prefix_tokens[end] >= minimum and end not in chosen:
            chosen.append(end)
    last = len(blocks) - 1
    if last >= 0 and prefix_tokens[last] >= minimum and last not in chosen:
        chosen.append(last)
    # Too many: the rolling end and the latest held ones are kept.
    if len(chosen) > MAX_BREAKPOINTS:
        chosen = chosen[:1] + chosen[len(chosen) - MAX_BREAKPOINTS + 1 :]
    for idx in chosen:
        blocks[idx][0]["cache_control"] = marker(ttl)
    return out


def _with_own_blocks(request: dict[str, Any]) -> dict[str, Any]:
    """A copy of `request` whose lists, messages and blocks are its own, for markers to be
    set on; what the blocks hold (texts, tool inputs, schemas) is shared and never changed.
    A deep copy of the whole conversation on every call cost more than all the rest."""

    def own(blocks: Any) -> Any:
        return (
            [dict(b) if isinstance(b, dict) else b for b in blocks]
            if isinstance(blocks, list)
            else blocks
        )

    out = dict(request)
    for key in ("tools", "system"):
        if key in out:
            out[key] = own(out[key])
    if isinstance(out.get("messages"), list):
        out["messages"] = [
            {**m, "content": own(m.get("content"))} if isinstance(m, dict) and "content" in m else m
            for m in out["messages"]
        ]
    return out


def without_breakpoints(request: dict[str, Any]) -> dict[str, Any]:
    """A copy of `request` with every cache_control marker removed: it can write nothing to
    the cache, so none of its input can be billed at the write premium."""
    out = copy.deepcopy(request)
    out.pop("cache_control", None)
    for block, _ in request_blocks(out):
        block.pop("cache_control", None)
    return out


def api_miss_reason(diagnostics: dict[str, Any] | None) -> str | None:
    """`diagnostics.cache_miss_reason` as the API sends it: an object with a `type`."""
    reason = (diagnostics or {}).get("cache_miss_reason")
    if isinstance(reason, dict):
        kind = reason.get("type")
        return str(kind) if kind else None
    return str(reason) if isinstance(reason, str) else None


def count_breakpoints(request: dict[str, Any]) -> int:
    return sum(1 for b, _ in request_blocks(request) if "cache_control" in b) + (
        1 if "cache_control" in request else 0
    )


@dataclass
class ModelCache:
    """What one model's prompt cache holds for this conversation, as the client sees it."""

    cached_prefix_tokens: int = 0
    ttl: str = "5m"
    last_write_at: float | None = None
    last_read_at: float | None = None
    expires_at: float | None = None


class CacheTracker:
    """Per model: cached prefix tokens, last write and read, expiry (wall-clock seconds).

    Built from the usage the API reports after each call: reads refresh an entry's lifetime,
    writes start one. The router asks it what is warm; the UI counts down to expiry.
    """

    def __init__(self) -> None:
        self.models: dict[str, ModelCache] = {}
        self.last_model: str | None = None
        # The previous call's message id: the API's diagnostics compare against it.
        self.last_message_id: str | None = None

    def cached_prefix_tokens(self, model: str, now: float) -> int:
        state = self.models.get(model)
        if state is None or state.expires_at is None or now >= state.expires_at:
            return 0
        return state.cached_prefix_tokens

    def note(
        self, model: str, usage: TokenUsage, ttl: str, now: float, message_id: str | None
    ) -> ModelCache:
        state = self.models.setdefault(model, ModelCache())
        cached = usage.cache_read_input_tokens + usage.cache_creation_input_tokens
        if usage.cache_read_input_tokens:
            state.last_read_at = now
        if usage.cache_creation_input_tokens:
            state.last_write_at = now
        if cached:
            state.cached_prefix_tokens = cached
            state.ttl = "1h" if usage.cache_creation_1h_input_tokens else ttl
            state.expires_at = now + TTL_SECONDS[state.ttl]
        self.last_message_id = message_id or self.last_message_id
        self.last_model = model
        return state

    def miss_reason(
        self,
        model: str,
        usage: TokenUsage,
        now: float,
        request: dict[str, Any],
        api_reason: str | None,
        enabled: bool = True,
    ) -> str | None:
        """Why this call did not read what this conversation had cached (None on a full hit,
        or when nothing was cached yet). The API's diagnosis where it gives one; what only
        the client knows (an entry that outlived its lifetime, a prefix below the minimum)
        first."""
        if not enabled:
            return None
        before = self.models.get(model)
        expected = before.cached_prefix_tokens if before else 0
        if count_breakpoints(request) == 0:
            if _prefix_tokens(request) < min_cacheable_tokens(model):
                return "below_minimum"
            # Caching is on and the prefix was warm, yet the call went without markers: close
            # to the cap, they were dropped so that its worst case fit (no write premium).
            warm = before is not None and before.expires_at is not None and now < before.expires_at
            return "dropped_to_fit_cap" if warm and expected else None
        if self.last_model is not None and self.last_model != model and not expected:
            return "model_changed"
        if not expected or usage.cache_read_input_tokens >= expected:
            return None
        if before is not None and before.expires_at is not None and now >= before.expires_at:
            return "expired"
        return api_reason or "unavailable"


def _prefix_tokens(request: dict[str, Any]) -> int:
    return REQUEST_OVERHEAD + sum(n for _, n in request_blocks(request))
