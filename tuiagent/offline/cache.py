"""The offline model's prompt cache, applying Anthropic's rules.

A cache per model, keyed on the exact prefix up to a breakpoint; each breakpoint also looks
back over up to 20 earlier block boundaries for an entry; a breakpoint whose prefix is below
the model's minimum caches nothing; entries live 5 minutes or 1 hour on a clock the caller
controls, refreshed on each read. Usage is reported the way the API reports it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuiagent.llm.tokens import (
    LOOKBACK_BLOCKS,
    MAX_BREAKPOINTS,
    REQUEST_OVERHEAD,
    TTL_SECONDS,
    min_cacheable_tokens,
    request_blocks,
)


class CacheRuleError(ValueError):
    """A request the real API would reject (400 invalid_request_error)."""


@dataclass
class _Entry:
    tokens: int
    ttl: str
    expires_at: float


@dataclass(frozen=True)
class CacheOutcome:
    read: int
    write_5m: int
    write_1h: int
    total_input: int
    miss_reason: str | None
    cached_prefix_tokens: int
    missed_tokens: int = 0

    @property
    def write(self) -> int:
        return self.write_5m + self.write_1h

    @property
    def uncached(self) -> int:
        return self.total_input - self.read - self.write


@dataclass(frozen=True)
class _Snapshot:
    """What a previous call looked like, for diagnostics.cache_miss_reason."""

    model: str
    tools: str
    system: str
    block_hashes: tuple[str, ...]
    cached_prefix_tokens: int


def _strip_markers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_markers(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_markers(v) for v in value]
    return value


def _canonical(block: Any) -> str:
    """A block as the cache sees it: its content, not where the markers sit."""
    return json.dumps(_strip_markers(block), sort_keys=True, separators=(",", ":"))


class PromptCache:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._snapshots: dict[str, _Snapshot] = {}

    def process(
        self, model: str, request: dict[str, Any], message_id: str, previous_message_id: str | None
    ) -> CacheOutcome:
        now = self._clock()
        blocks = request_blocks(request)
        hashes: list[str] = []
        prefix: list[int] = []
        h, running = hashlib.sha256(model.encode()), REQUEST_OVERHEAD
        for block, n in blocks:
            h.update(_canonical(block).encode())
            hashes.append(h.copy().hexdigest())
            running += n
            prefix.append(running)
        total = running
        breakpoints = [
            (i, str(b["cache_control"].get("ttl", "5m")))
            for i, (b, _) in enumerate(blocks)
            if isinstance(b.get("cache_control"), dict)
        ]
        if isinstance(request.get("cache_control"), dict) and blocks:
            auto = (len(blocks) - 1, str(request["cache_control"].get("ttl", "5m")))
            if auto[0] not in {i for i, _ in breakpoints}:
                breakpoints.append(auto)
        if len(breakpoints) > MAX_BREAKPOINTS:
            raise CacheRuleError(
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                f"Found {len(breakpoints)}."
            )
        seen_5m = False
        for _, ttl in breakpoints:
            if ttl not in TTL_SECONDS:
                raise CacheRuleError(
                    f"cache_control.ttl: Input should be '5m' or '1h', got {ttl!r}"
                )
            if ttl == "1h" and seen_5m:
                raise CacheRuleError(
                    "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block"
                )
            seen_5m = seen_5m or ttl == "5m"

        minimum = min_cacheable_tokens(model)
        hit = -1
        expired_seen = False
        for b, _ in breakpoints:
            for j in range(b, max(-1, b - LOOKBACK_BLOCKS - 1), -1):
                entry = self._entries.get((model, hashes[j]))
                if entry is None:
                    continue
                if entry.expires_at <= now:
                    expired_seen = True
                    continue
                hit = max(hit, j)
                break
        read = prefix[hit] if hit >= 0 else 0
        if hit >= 0:
            entry = self._entries[(model, hashes[hit])]
            entry.expires_at = now + TTL_SECONDS[entry.ttl]

        write_5m = write_1h = 0
        covered = read
        cached_prefix = read
        for b, ttl in breakpoints:
            if b <= hit or prefix[b] < minimum:
                continue
            self._entries[(model, hashes[b])] = _Entry(prefix[b], ttl, now + TTL_SECONDS[ttl])
            new = prefix[b] - covered
            if ttl == "1h":
                write_1h += new
            else:
                write_5m += new
            covered = prefix[b]
            cached_prefix = prefix[b]

        miss_reason = self._miss_reason(
            model,
            request,
            hashes,
            read,
            breakpoints,
            prefix,
            minimum,
            expired_seen,
            previous_message_id,
        )
        prev = self._snapshots.get(previous_message_id or "")
        missed = max(0, prev.cached_prefix_tokens - read) if prev and miss_reason else 0
        self._snapshots[message_id] = _Snapshot(
            model=model,
            tools=_canonical(request.get("tools") or []),
            system=_canonical(request.get("system") or ""),
            block_hashes=tuple(hashes),
            cached_prefix_tokens=cached_prefix,
        )
        return CacheOutcome(read, write_5m, write_1h, total, miss_reason, cached_prefix, missed)

    def _miss_reason(
        self,
        model: str,
        request: dict[str, Any],
        hashes: list[str],
        read: int,
        breakpoints: list[tuple[int, str]],
        prefix: list[int],
        minimum: int,
        expired_seen: bool,
        previous_message_id: str | None,
    ) -> str | None:
        """Why this call did not read what the previous call cached, with the reasons the
        API's diagnostics use. (What only the client can tell, an entry that outlived its
        lifetime or a prefix below the minimum, the client adds itself.)"""
        if previous_message_id is None:
            return None
        prev = self._snapshots.get(previous_message_id)
        if prev is None:
            return "previous_message_not_found"
        if prev.cached_prefix_tokens and read >= prev.cached_prefix_tokens:
            return None
        if breakpoints and all(prefix[b] < minimum for b, _ in breakpoints):
            return None
        if not prev.cached_prefix_tokens:
            return None
        if prev.model != model:
            return "model_changed"
        if prev.tools != _canonical(request.get("tools") or []):
            return "tools_changed"
        if prev.system != _canonical(request.get("system") or ""):
            return "system_changed"
        if expired_seen:
            return "unavailable"
        return "messages_changed"
