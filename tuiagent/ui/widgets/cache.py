"""The cache panel: hit rate, dollars saved, what each model has cached and for how long."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from tuiagent.ui.format import money, tokens
from tuiagent.ui.widgets.panel import Panel

if TYPE_CHECKING:
    from tuiagent.agent.events import CacheStateChanged, TurnFinished
    from tuiagent.runs.records import ProxyTurn, Turn


@dataclass
class CachedPrefix:
    """One model's cached prefix as the panel shows it: its tokens and when it expires."""

    prefix_tokens: int = 0
    expires_at: float | None = None


class CachePanel(Panel):
    """Hit rate, savings and the last miss from turn records; each model's cached prefix and
    its countdown from the agent's CacheStateChanged events."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, markup=False)
        self.border_title = "Cache"
        self.clock = clock
        self.models: dict[str, CachedPrefix] = {}
        self.read_tokens = 0
        self.input_tokens = 0
        self.saved = Decimal(0)
        self.last_miss: str | None = None

    def on_mount(self) -> None:
        self.set_interval(1.0, self._render_panel)
        self._render_panel()

    def when_turn_finished(self, event: TurnFinished) -> None:
        self.add_turn(event.record)

    def when_cache_state_changed(self, event: CacheStateChanged) -> None:
        self.set_state(event)

    def add_turn(self, record: Turn | ProxyTurn) -> None:
        """Totals from the turn record; the agent says why a call missed the cache."""
        u = record.usage
        self.read_tokens += u.cache_read_input_tokens
        self.input_tokens += u.total_input_tokens
        self.saved += record.saved_by_cache_usd or 0
        reason = record.cache_miss_reason
        if reason:
            model = _short(record.model)
            self.last_miss = f"turn {record.turn} {model}: {reason.replace('_', ' ')}"
        self._render_panel()

    def set_state(self, event: CacheStateChanged) -> None:
        """The agent's exact view of one model's cache wins over the estimate from records."""
        state = self.models.setdefault(event.model, CachedPrefix())
        state.prefix_tokens = event.cached_prefix_tokens
        state.expires_at = event.expires_at
        self._render_panel()

    def clear_cache_view(self) -> None:
        self.models.clear()
        self.read_tokens = self.input_tokens = 0
        self.saved = Decimal(0)
        self.last_miss = None
        self._render_panel()

    @property
    def hit_rate(self) -> str:
        return f"{self.read_tokens / self.input_tokens:.0%}" if self.input_tokens else "-"

    def _render_panel(self) -> None:
        if not self.input_tokens and not self.models:
            self.show(
                "After the first call: the share of input read from the prompt cache, what "
                "it saved, and each model's cached prefix with its time to expiry."
            )
            return
        saved = (
            f"saved {money(self.saved)}"
            if self.saved >= 0
            else f"writes cost {money(-self.saved)} more"  # till the entry is read back
        )
        lines = [f"hit rate {self.hit_rate}  {saved}"]
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
        self.show("\n".join(lines))


def _short(model: str) -> str:
    return model.removeprefix("claude-")
