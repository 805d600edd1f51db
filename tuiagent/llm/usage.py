"""Token usage exactly as the Messages API reports it.

Facts this follows (see shared/wire): `input_tokens` excludes cached tokens; usage in
`message_delta` is cumulative and overrides `message_start` where present; only
`message_start` carries the 5m/1h split of cache writes; when the response carries
`usage.iterations` (server-side compaction), the top level reports only the last
iteration and the billed usage is the sum of all of them (each pass is kept in
`iterations`: Anthropic bills each sampling pass as its own request, see cost/pricing.py).
Server tools the API ran for the call are counted in `usage.server_tool_use`
(`web_search_requests`, `web_fetch_requests`): they are billed per use, on top of tokens.
Where and how the call ran (`inference_geo`, `speed`, `service_tier`) is in message_start's
usage only (or the Message's): it sets the price modifiers the call is settled with.

Every number is checked: a count that is not a non-negative integer below `MAX_TOKENS`
(a string, a bool, a float, a negative, 1e30) raises `BadUsage`, so no malformed usage is
ever priced as $0 or as a negative.
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
# Where and how the call ran, as reported (strings; absent: not reported).
RAN_AS_FIELDS = ("inference_geo", "speed", "service_tier")
_LONGEST_RAN_AS = 64

MAX_TOKENS = 10**9  # more than any request can bill: a larger count is malformed


class BadUsage(ValueError):
    """A usage object from the server that cannot be what it billed."""


def _tokens(value: object, name: str) -> int:
    """A token count as the API sends it: a non-negative int; null or absent is 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise BadUsage(f"usage {name} is {value!r}, not a token count")
    return value


def _split(value: object) -> tuple[int, int] | None:
    """The 5m and 1h cache writes of a `cache_creation` object; None when there is none."""
    if not value:
        return None
    split = _mapping(value, "usage.cache_creation")
    five = _tokens(split.get("ephemeral_5m_input_tokens"), "ephemeral_5m_input_tokens")
    return five, _tokens(split.get("ephemeral_1h_input_tokens"), "ephemeral_1h_input_tokens")


def _server_tools(value: object) -> dict[str, Any]:
    """The counts of a `server_tool_use` object (absent: none used)."""
    counts = _mapping(value, "usage.server_tool_use") if value else {}
    return {k: _tokens(counts.get(k), k) for k in SERVER_TOOL_FIELDS}


def _ran_as(usage: Mapping[str, Any]) -> dict[str, Any]:
    """`inference_geo`, `speed`, `service_tier` as reported: a short string, or None."""
    out: dict[str, Any] = {}
    for key in RAN_AS_FIELDS:
        value = usage.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > _LONGEST_RAN_AS):
            raise BadUsage(f"usage {key} is {value!r}, not a name")
        out[key] = value
    return out


def _mapping(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadUsage(f"{name} is {type(value).__name__}, not an object")
    return value


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
    # Where and how it ran, when reported (written only when set).
    inference_geo: str | None = field(default=None, metadata={"omit_none": True})
    speed: str | None = field(default=None, metadata={"omit_none": True})
    service_tier: str | None = field(default=None, metadata={"omit_none": True})
    # The sampling passes of a compaction response (usage.iterations), each as billed;
    # empty for an ordinary call. Not part of the record: the sums above are.
    iterations: tuple[TokenUsage, ...] = field(default=(), init=False, compare=False, repr=False)

    @property
    def total_input_tokens(self) -> int:
        """Every input token of the request: uncached + cache writes + cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        """The sum of two usages (one usage: the passes of either are not kept; where and
        how they ran is kept where both agree)."""
        a, b = self.as_record(), other.as_record()
        values: dict[str, Any] = {k: a[k] + b[k] for k in a}
        for k in RAN_AS_FIELDS:
            if getattr(self, k) == getattr(other, k):
                values[k] = getattr(self, k)
        return TokenUsage(**values)

    def as_record(self) -> dict[str, int]:
        """The counts (where and how it ran aside)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in _COUNTS}

    def ran_as(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RAN_AS_FIELDS}

    @classmethod
    def from_api(cls, usage: Mapping[str, Any] | None) -> TokenUsage:
        """Usage from one API usage object (a response's, or message_start's)."""
        if usage is None:
            return cls()
        usage = _mapping(usage, "usage")
        tools = _server_tools(usage.get("server_tool_use"))
        iterations = usage.get("iterations")
        if iterations:
            if not isinstance(iterations, list):
                raise BadUsage("usage.iterations is not a list")
            passes = tuple(
                cls.from_api(
                    {
                        k: v
                        for k, v in _mapping(item, "a usage.iterations entry").items()
                        if k != "iterations"
                    }
                )
                for item in iterations
            )
            total = replace(
                sum(passes, cls()),
                web_search_requests=tools["web_search_requests"],
                web_fetch_requests=tools["web_fetch_requests"],
                **_ran_as(usage),
            )
            object.__setattr__(total, "iterations", passes)  # frozen: set once, here
            return total
        values: dict[str, Any] = {k: _tokens(usage.get(k), k) for k in _FIELDS}
        # No split reported: the API's default lifetime is 5 minutes.
        five, hour = _split(usage.get("cache_creation")) or (
            values["cache_creation_input_tokens"],
            0,
        )
        return cls(
            **values,
            **tools,
            **_ran_as(usage),
            cache_creation_5m_input_tokens=five,
            cache_creation_1h_input_tokens=hour,
        )

    def with_delta(self, delta: Mapping[str, Any] | None) -> TokenUsage:
        """Apply a cumulative message_delta usage: values present override, the split stays."""
        if delta is None:
            return self
        delta = _mapping(delta, "usage")
        if not delta:
            return self
        if delta.get("iterations"):
            merged = TokenUsage.from_api(delta)
            # iterations carry their own split; keep it (and where message_start ran)
            return replace(merged, **{k: v for k, v in self.ran_as().items() if v is not None})
        _split(delta.get("cache_creation"))  # checked; the split stays message_start's
        values: dict[str, Any] = {k: getattr(self, k) for k in _FIELDS}
        for k in _FIELDS:
            if delta.get(k) is not None:
                values[k] = _tokens(delta[k], k)
        tools: dict[str, Any] = {k: getattr(self, k) for k in SERVER_TOOL_FIELDS}
        if delta.get("server_tool_use"):
            tools = _server_tools(delta["server_tool_use"])
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
            **self.ran_as(),
            cache_creation_5m_input_tokens=five,
            cache_creation_1h_input_tokens=hour,
        )


_COUNTS = frozenset(
    f.name for f in fields(TokenUsage) if f.name != "iterations" and f.name not in RAN_AS_FIELDS
)
