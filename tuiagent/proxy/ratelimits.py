"""How close each key is to the API's rate limits, as the API's answers say it.

Every Messages answer carries `anthropic-ratelimit-*` headers: for requests, tokens (the
most restrictive token limit in effect), input tokens and output tokens, the window's
`-limit`, what is `-remaining` (tokens rounded to the thousand) and when it is full again
(`-reset`, RFC 3339); a 429 adds `retry-after` (seconds). The proxy keeps the last of them
per key, by the key's hash (`ledger.scopes.key_id`), never the key. Only numbers and times
are kept: a header's text never reaches a screen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from tuiagent.ledger.scopes import key_id

PREFIX = "anthropic-ratelimit-"
KINDS = ("requests", "tokens", "input-tokens", "output-tokens")
# The words a limit is shown with (the tokens limit is the stricter of input and output:
# shown only where those two are not).
WORDS = {"requests": "requests", "tokens": "tokens", "input-tokens": "in", "output-tokens": "out"}
MAX_DIGITS = 18  # a count longer than this is no count
KEYS = 64  # the keys remembered (the least recently seen goes first)


@dataclass(frozen=True)
class Limit:
    """One limit's window: its size, what is left and when it is full again (epoch s)."""

    limit: int | None
    remaining: int | None
    reset_at: float | None


@dataclass(frozen=True)
class KeyLimits:
    """A key's limits as its latest answer said them."""

    key: str  # the key's hash
    limits: dict[str, Limit]
    status: int
    seen_at: float
    retry_after_s: float | None = None  # a 429's


def _count(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS else None


def _time(value: str | None) -> float | None:
    try:
        when = datetime.fromisoformat((value or "").strip())
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None  # a time without a zone: none


def _seconds(value: str | None) -> float | None:
    value = (value or "").strip()
    try:
        seconds = float(value) if value.isascii() and len(value) <= MAX_DIGITS else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 10**9 else None


def read_limits(headers: Mapping[str, str]) -> dict[str, Limit]:
    """The limits an answer's headers state (none when it states none)."""
    found = {}
    for kind in KINDS:
        limit = Limit(
            _count(headers.get(f"{PREFIX}{kind}-limit")),
            _count(headers.get(f"{PREFIX}{kind}-remaining")),
            _time(headers.get(f"{PREFIX}{kind}-reset")),
        )
        if limit != Limit(None, None, None):
            found[kind] = limit
    return found


class RateLimits:
    """The latest limits of each key the proxy forwarded for (thread-safe: the proxy's
    thread writes, the dashboard's reads)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._by_key: dict[str, KeyLimits] = {}

    def observe(self, credential: str | None, status: int, headers: Mapping[str, str]) -> None:
        """An upstream answer to a request sent with `credential` (`x-api-key`'s value, or
        `Authorization`'s): its limits kept, if it states any."""
        limits = read_limits(headers)
        if not limits:
            return
        key = key_id((credential or "").removeprefix("Bearer ").strip() or None) or "(no key)"
        retry = _seconds(headers.get("retry-after")) if status == 429 else None
        seen = KeyLimits(key, limits, status, self.clock(), retry)
        with self._lock:
            self._by_key.pop(key, None)
            self._by_key[key] = seen
            while len(self._by_key) > KEYS:
                del self._by_key[next(iter(self._by_key))]

    def snapshot(self) -> list[KeyLimits]:
        """Each key's, the most recently seen first."""
        with self._lock:
            return list(self._by_key.values())[::-1]


def limits_line(seen: KeyLimits, now: float, *, width: int = 160) -> str:
    """A key's limits in one line: `key k-1a2b3c4d: requests 3,998/4,000 · in 1,976k/2,000k
    · out 399k/400k · full in 12s` (a limit past its reset is full again); shorter (what is
    left, not of what) within `width`."""
    kinds = [k for k in KINDS if k in seen.limits]
    if "input-tokens" in kinds or "output-tokens" in kinds:
        kinds = [k for k in kinds if k != "tokens"]
    parts, short = [], []
    for kind in kinds:
        lim = seen.limits[kind]
        full = lim.reset_at is not None and lim.reset_at <= now and lim.limit is not None
        left = _amount(lim.limit if full else lim.remaining, kind)  # full again by now
        parts.append(
            f"{WORDS[kind]} {left}" + (f"/{_amount(lim.limit, kind)}" if lim.limit else "")
        )
        short.append(f"{WORDS[kind]} {left}")
    resets = [lim.reset_at for lim in seen.limits.values() if lim.reset_at is not None]
    tail = ""
    if seen.retry_after_s is not None and now < seen.seen_at + seen.retry_after_s:
        tail = f" · 429: retry in {seen.seen_at + seen.retry_after_s - now:.0f}s"
    elif resets and max(resets) > now:
        tail = f" · full in {_duration(max(resets) - now)}"
    head = f"key {seen.key[:10]}: "
    line = head + " · ".join(parts) + tail
    return line if len(line) <= width else head + " · ".join(short) + tail


def _amount(value: int | None, kind: str) -> str:
    if value is None:
        return "?"
    if kind != "requests" and value >= 10_000:
        return f"{value // 1000:,}k"
    return f"{value:,}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"
