"""Token usage exactly as the Messages API reports it.

Facts this follows (see shared/wire): `input_tokens` excludes cached tokens; usage in
`message_delta` is cumulative and overrides `message_start` where present; only
`message_start` carries the 5m/1h split of cache writes; when the response carries
`usage.iterations` (server-side compaction), the top level reports only the last
iteration and the billed usage is the sum of all of them.

Every number is checked: a count that is not a non-negative integer below `MAX_TOKENS`
(a string, a bool, a float, a negative, 1e30) raises `BadUsage`, so no malformed usage is
ever priced as $0 or as a negative.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)

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

    @property
    def total_input_tokens(self) -> int:
        """Every input token of the request: uncached + cache writes + cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        a, b = asdict(self), asdict(other)
        return TokenUsage(**{k: a[k] + b[k] for k in a})

    def as_record(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_api(cls, usage: Mapping[str, Any] | None) -> TokenUsage:
        """Usage from one API usage object (a response's, or message_start's)."""
        if usage is None:
            return cls()
        usage = _mapping(usage, "usage")
        iterations = usage.get("iterations")
        if iterations:
            if not isinstance(iterations, list):
                raise BadUsage("usage.iterations is not a list")
            total = cls()
            for item in iterations:
                item = _mapping(item, "a usage.iterations entry")
                total = total + cls.from_api({k: v for k, v in item.items() if k != "iterations"})
            return total
        values = {k: _tokens(usage.get(k), k) for k in _FIELDS}
        # No split reported: the API's default lifetime is 5 minutes.
        five, hour = _split(usage.get("cache_creation")) or (
            values["cache_creation_input_tokens"],
            0,
        )
        return cls(
            **values, cache_creation_5m_input_tokens=five, cache_creation_1h_input_tokens=hour
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
            # iterations carry their own split; keep it
            return merged
        _split(delta.get("cache_creation"))  # checked; the split stays message_start's
        values = {k: getattr(self, k) for k in _FIELDS}
        for k in _FIELDS:
            if delta.get(k) is not None:
                values[k] = _tokens(delta[k], k)
        five, hour = self.cache_creation_5m_input_tokens, self.cache_creation_1h_input_tokens
        writes = values["cache_creation_input_tokens"]
        if five + hour != writes:
            # message_delta changed the write total without a split: keep the 1h part
            # that message_start reported and put the rest on 5m.
            hour = min(hour, writes)
            five = writes - hour
        return TokenUsage(
            **values, cache_creation_5m_input_tokens=five, cache_creation_1h_input_tokens=hour
        )
