"""The ledger: what the run has spent, call by call, with every token kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tuiagent.cost.pricing import Cost
from tuiagent.llm.usage import TokenUsage


@dataclass
class Ledger:
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost: Cost = field(default_factory=Cost)
    turn_costs: list[Decimal] = field(default_factory=list)
    # The same calls' tokens all at the plain input price: what they would cost uncached.
    cost_without_cache: Decimal = Decimal(0)
    cost_of_completed: Decimal = Decimal(0)

    @property
    def spent(self) -> Decimal:
        return self.cost.total

    def add(
        self,
        usage: TokenUsage,
        cost: Cost,
        *,
        counts_as_turn: bool = True,
        without_cache: Decimal | None = None,
    ) -> None:
        """Settle a call's real usage. A failed attempt adds its cost but is not a turn."""
        self.usage = self.usage + usage
        self.cost = self.cost + cost
        if counts_as_turn:
            self.turn_costs.append(cost.total)
        if without_cache is not None:
            self.cost_without_cache += without_cache
            self.cost_of_completed += cost.total

    @property
    def saved_by_cache(self) -> Decimal:
        """Negative while the cache has only been written, not yet read back."""
        return self.cost_without_cache - self.cost_of_completed

    @property
    def cache_hit_rate(self) -> float:
        """Cache reads as a share of all input tokens."""
        total = self.usage.total_input_tokens
        return self.usage.cache_read_input_tokens / total if total else 0.0
