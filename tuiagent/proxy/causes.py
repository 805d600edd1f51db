"""Why a proxied call did not read the cache its session's previous call left: computed
from the two requests, as the client sent them (the coding agent asks for no diagnostics,
so the API names no cause). The causes are the API's own words for them:

- `model_changed`: the session's first call on a model while another model's cache was
  warm (the cache is per model);
- `tools_changed`, `system_changed`: they come first in the prefix: a change there starts
  it cold;
- `messages_changed`: an earlier message than the newest differs from what was sent before
  (a history edited, compacted or cleared);
- `expired`: longer than the entry's lifetime (5 minutes, or 1 hour) since the last call;
- `below_minimum`: the request marks breakpoints but nothing was read or written (its
  prefix is below the model's minimum cacheable length, so the markers cache nothing);
- `unavailable`: less was read than was cached, and nothing above explains it.

A session is the coding agent's (`X-Claude-Code-Session-Id`, or `metadata.user_id`'s
session_id) and its sub-agent; a client that names none is followed by its first message.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tuiagent.llm.tokens import TTL_SECONDS, TokenUsage

SESSIONS = 256  # the sessions (and sub-agents) whose last call is remembered


def _digest(value: Any) -> str:
    text = json.dumps(_unmarked(value), sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _unmarked(value: Any) -> Any:
    """A request part as the cache keys it: the cache markers of its blocks (a list's items,
    a message's content blocks) aside, a plain string as a text block."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}] if value else []
    if isinstance(value, list):
        return [
            {k: v for k, v in b.items() if k != "cache_control"} if isinstance(b, dict) else b
            for b in value
        ]
    if isinstance(value, dict) and "content" in value:  # a message
        return {**value, "content": _unmarked(value["content"])}
    return value


@dataclass(frozen=True)
class _Sent:
    """What a session's last call sent and left in the cache."""

    model: str
    tools: str
    system: str
    messages: tuple[str, ...]
    cached: int  # prefix tokens it read or wrote: what the next call can read
    ttl_s: float
    at: float


def _marker_ttls(request: Mapping[str, Any]) -> list[str]:
    """The lifetimes the request's cache markers ask for (the request's own, for automatic
    caching, too), in order; empty when it marks none."""
    blocks: list[Any] = [request]
    for part in (request.get("tools"), request.get("system")):
        if isinstance(part, list):
            blocks.extend(part)
    messages = request.get("messages")
    for m in messages if isinstance(messages, list) else ():
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, list):
            blocks.extend(content)
    return [
        str(b["cache_control"].get("ttl", "5m"))
        for b in blocks
        if isinstance(b, Mapping) and isinstance(b.get("cache_control"), Mapping)
    ]


def session_key(session: str | None, agent: str | None, request: Mapping[str, Any]) -> str:
    """The key a call's conversation is followed by: its session and agent, else its first
    message."""
    if session:
        return f"s:{session}/{agent or ''}"
    messages = request.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    return "c:" + _digest([request.get("system"), first])


class MissCauses:
    """Each session's last call on each model, to name why the next one missed. (Per model:
    the coding agent interleaves small calls on another model, which leave the main
    model's cache as it was.)"""

    def __init__(self, clock: Callable[[], float] = time.monotonic, size: int = SESSIONS) -> None:
        self.clock = clock
        self.size = size
        self._last: OrderedDict[str, dict[str, _Sent]] = OrderedDict()

    def cause(self, key: str, request: Mapping[str, Any], usage: TokenUsage) -> str | None:
        """Why this call (of `key`'s session, billed `usage`) did not read what the
        session's previous call on its model cached; None on a hit, a first call, or a call
        that asks for no caching. The call is remembered as the session's last."""
        now = self.clock()
        ttls = _marker_ttls(request)
        messages = request.get("messages")
        sent = _Sent(
            model=str(request.get("model", "")),
            tools=_digest(request.get("tools") or []),
            system=_digest(request.get("system") or ""),
            messages=tuple(_digest(m) for m in messages) if isinstance(messages, list) else (),
            cached=usage.cache_read_input_tokens + usage.cache_creation_input_tokens,
            ttl_s=max((TTL_SECONDS.get(t, 300.0) for t in ttls), default=300.0),
            at=now,
        )
        models = self._last.pop(key, {})
        before = models.pop(sent.model, None)
        others = [m for m in models.values() if m.cached and now - m.at < m.ttl_s]
        models[sent.model] = sent
        self._last[key] = models
        while len(self._last) > self.size:
            self._last.popitem(last=False)
        read = usage.cache_read_input_tokens
        if not ttls:
            return None  # no caching asked for: nothing was missed
        if not read and not usage.cache_creation_input_tokens:
            return "below_minimum"
        if before is None:  # this model's first call in the session
            return "model_changed" if others and not read else None
        if not before.cached or read >= before.cached:
            return None
        if before.tools != sent.tools:
            return "tools_changed"
        if before.system != sent.system:
            return "system_changed"
        if now - before.at >= before.ttl_s:
            return "expired"
        # The previous call's messages are the prefix this one should start with.
        if sent.messages[: len(before.messages)] != before.messages:
            return "messages_changed"
        return "unavailable"
