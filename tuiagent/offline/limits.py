"""The offline model's rate limits, sent as the API sends its own (`anthropic-ratelimit-*`
on every Messages answer), with simulated values that go down as a key uses them.

As the API's: a token bucket per key and limit, refilled continuously, full again one
minute after it was emptied; input tokens count what was not read from the cache (cache
reads do not count), output tokens what was generated; tokens left are rounded down to the
thousand; `tokens` is the stricter of input and output; resets are RFC 3339 (UTC). The
sizes are the API's published tier 4 limits for a Sonnet-class model. Simulated: nothing is
refused for its rate (a test or a benchmark of any size runs), a bucket only reads 0.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

WINDOW_S = 60.0
LIMITS = {"requests": 4_000, "input-tokens": 2_000_000, "output-tokens": 400_000}
KEYS = 256


@dataclass
class _Bucket:
    size: int
    level: float
    at: float

    def take(self, amount: float, now: float) -> None:
        self.level = max(
            0.0, min(self.size, self.level + self.size * (now - self.at) / WINDOW_S) - amount
        )
        self.at = now

    def full_at(self) -> float:
        return self.at + WINDOW_S * (self.size - self.level) / self.size


def _rfc3339(epoch: float) -> str:
    """To the second, as the API says it: the next whole one (full by then)."""
    return datetime.fromtimestamp(math.ceil(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimulatedLimits:
    """Each key's buckets (by a hash of the key: the key itself is not kept)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, _Bucket]] = {}

    def use(self, key: str, input_tokens: int, output_tokens: int) -> dict[str, str]:
        """One answered request of `key`'s: the headers its answer carries."""
        now = self.clock()
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        with self._lock:
            buckets = self._keys.pop(digest, None) or {
                kind: _Bucket(size, float(size), now) for kind, size in LIMITS.items()
            }
            self._keys[digest] = buckets
            while len(self._keys) > KEYS:
                del self._keys[next(iter(self._keys))]
            used = {"requests": 1, "input-tokens": input_tokens, "output-tokens": output_tokens}
            for kind, bucket in buckets.items():
                bucket.take(used[kind], now)
            state = {k: (b.size, int(b.level), b.full_at()) for k, b in buckets.items()}
        # `tokens`: the stricter of the two token limits, by the share of it left.
        stricter = min(("input-tokens", "output-tokens"), key=lambda k: state[k][1] / state[k][0])
        state["tokens"] = state[stricter]
        headers = {}
        for kind, (size, left, full) in state.items():
            if kind != "requests":
                left = left // 1000 * 1000
            headers[f"anthropic-ratelimit-{kind}-limit"] = str(size)
            headers[f"anthropic-ratelimit-{kind}-remaining"] = str(left)
            headers[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(full)
        return headers
