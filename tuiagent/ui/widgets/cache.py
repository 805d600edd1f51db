"""The cache panel: hit rate, dollars saved, what each model has cached and for how long."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from textual.widgets import Static

from tuiagent.agent.events import CacheStateChanged
from tuiagent.ui.format import money, tokens

FIVE_MINUTES, ONE_HOUR = 300.0, 3600.0


@dataclass
class ModelCache:
    prefix_tokens: int = 0
    expires_at: float | None = None


class CachePanel(Static):
    """Fed by turn records (always) and CacheStateChanged events (exact, when emitted)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        saved_by: Callable[[dict[str, Any]], Decimal | None] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.border_title = "Cache"
        self.clock = clock
        self.saved_by = saved_by
        self.models: dict[str, ModelCache] = {}
        self.read_tokens = 0
        self.input_tokens = 0
        self.saved = Decimal(0)
        self.last_miss: str | None = None

    def on_mount(self) -> None:
        self.set_interval(1.0, self._render_panel)
        self._render_panel()

    def add_turn(self, record: dict[str, Any]) -> None:
        model = str(record.get("model", ""))
        read = int(record.get("cache_read_input_tokens") or 0)
        write = int(record.get("cache_creation_input_tokens") or 0)
        self.read_tokens += read
        self.input_tokens += read + write + int(record.get("input_tokens") or 0)
        saved = record.get("saved_by_cache_usd")
        if saved is not None:
            self.saved += Decimal(str(saved))
        elif self.saved_by is not None:
            self.saved += self.saved_by(record) or Decimal(0)
        now = self.clock()
        known = self.models.get(model)
        if read == 0:
            reason = record.get("cache_miss_reason")
            if reason is None:
                if known is None:
                    reason = "cold: first call to this model"
                elif known.expires_at is not None and known.expires_at < now:
                    reason = "expired"
                else:
                    reason = "nothing cacheable matched"
            self.last_miss = f"turn {record.get('turn')} {_short(model)}: {reason}"
        state = self.models.setdefault(model, ModelCache())
        if read or write:
            state.prefix_tokens = read + write
            ttl = ONE_HOUR if record.get("cache_creation_1h_input_tokens") else FIVE_MINUTES
            state.expires_at = now + ttl
        self._render_panel()

    def set_state(self, event: CacheStateChanged) -> None:
        """The agent's exact view of one model's cache wins over the estimate from records."""
        state = self.models.setdefault(event.model, ModelCache())
        state.prefix_tokens = event.cached_prefix_tokens
        state.expires_at = event.expires_at
        if event.miss_reason:
            self.last_miss = f"{_short(event.model)}: {event.miss_reason}"
        self._render_panel()

    def clear_cache_view(self) -> None:
        self.models.clear()
        self.read_tokens = self.input_tokens = 0
        self.saved = Decimal(0)
        self.last_miss = None
        self._render_panel()

    def _render_panel(self) -> None:
        rate = f"{self.read_tokens / self.input_tokens:.0%}" if self.input_tokens else "-"
        lines = [f"hit rate {rate}  saved {money(self.saved)}"]
        now = self.clock()
        for model, state in self.models.items():
            if state.expires_at is None:
                left = "not cached"
            elif state.expires_at <= now:
                left = "expired"
            else:
                secs = int(state.expires_at - now)
                left = f"expires in {secs // 60}:{secs % 60:02d}"
            lines.append(f"{_short(model)}  {tokens(state.prefix_tokens)} tok  {left}")
        lines.append(f"last miss: {self.last_miss or '-'}")
        self.update("\n".join(lines))


def _short(model: str) -> str:
    return model.removeprefix("claude-")
