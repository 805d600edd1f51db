"""Token usage exactly as the Messages API reports it.

Facts this follows (see shared/wire): `input_tokens` excludes cached tokens; usage in
`message_delta` is cumulative and overrides `message_start` where present; only
`message_start` carries the 5m/1h split of cache writes; when the response carries
`usage.iterations` (server-side compaction), the top level reports only the last
iteration and the billed usage is the sum of all of them (each pass is kept in
`iterations`: Anthropic bills each sampling pass as its own request, see cost/pricing.py).
Server tools the API ran for the call are counted in `usage.server_tool_use`
(`web_search_requests`, `web_fetch_requests`): they are billed per use, on top of tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
# Counts in usage.server_tool_use (ServerToolUsage in the SDK).
SERVER_TOOL_FIELDS = ("web_search_requests", "web_fetch_requests")


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    # The sampling passes of a compaction response (usage.iterations), each as billed;
    # empty for an ordinary call. Not part of the record: the sums above are.
    iterations: tuple[TokenUsage, ...] = field(default=(), init=False, compare=False, repr=False)

    @property
    def total_input_tokens(self) -> int:
        """Every input token of the request: uncached + cache writes + cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        """The sum of two usages (one usage: the passes of either are not kept)."""
        a, b = self.as_record(), other.as_record()
        return TokenUsage(**{k: a[k] + b[k] for k in a})

    def as_record(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "iterations"}

    @classmethod
    def from_api(cls, usage: Mapping[str, Any] | None) -> TokenUsage:
        """Usage from one API usage object (a response's, or message_start's)."""
        if not usage:
            return cls()
        server = usage.get("server_tool_use") or {}
        tools = {k: int(server.get(k) or 0) for k in SERVER_TOOL_FIELDS}
        iterations = usage.get("iterations")
        if iterations:
            passes = tuple(
                cls.from_api({k: v for k, v in item.items() if k != "iterations"})
                for item in iterations
            )
            total = replace(
                sum(passes, cls()),
                web_search_requests=tools["web_search_requests"],
                web_fetch_requests=tools["web_fetch_requests"],
            )
            object.__setattr__(total, "iterations", passes)  # frozen: set once, here
            return total
        values = {k: int(usage.get(k) or 0) for k in _FIELDS}
        split = usage.get("cache_creation") or {}
        five = int(split.get("ephemeral_5m_input_tokens") or 0)
        hour = int(split.get("ephemeral_1h_input_tokens") or 0)
        if not split:
            # No split reported: the API's default lifetime is 5 minutes.
            five = values["cache_creation_input_tokens"]
        return cls(
            **values,
            **tools,
            cache_creation_5m_input_tokens=five,
            cache_creation_1h_input_tokens=hour,
        )

    def with_delta(self, delta: Mapping[str, Any] | None) -> TokenUsage:
        """Apply a cumulative message_delta usage: values present override, the split stays."""
        if not delta:
            return self
        if delta.get("iterations"):
            merged = TokenUsage.from_api(delta)
            # iterations carry their own split; keep it
            return merged
        values = {k: getattr(self, k) for k in _FIELDS}
        for k in _FIELDS:
            if delta.get(k) is not None:
                values[k] = int(delta[k])
        server = delta.get("server_tool_use") or {}
        tools = {k: int(server.get(k) or getattr(self, k)) for k in SERVER_TOOL_FIELDS}
        five, hour = self.cache_creation_5m_input_tokens, self.cache_creation_1h_input_tokens
        writes = values["cache_creation_input_tokens"]
        if five + hour != writes:
            # message_delta changed the write total without a split: keep the 1h part
            # that message_start reported and put the rest on 5m.
            hour = min(hour, writes)
            five = writes - hour
        return TokenUsage(
            **values,
            **tools,
            cache_creation_5m_input_tokens=five,
            cache_creation_1h_input_tokens=hour,
        )
