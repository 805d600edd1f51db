"""The hard cap: every call is reserved at its worst case before it is sent.

Worst case of a call = its input tokens priced at the highest rate they can be billed at
given its cache breakpoints (tokens up to the last breakpoint may be written to the cache,
at the write rate of that breakpoint's lifetime; the rest at the input rate), plus
`max_tokens` at the output rate. Cache reads only ever lower the bill, so they are not
counted on. If the worst case does not fit what is left of the cap, `max_tokens` is
lowered to what fits; below a useful minimum the call is not sent.

Input tokens come from the API's free `count_tokens` (the offline model's own count
offline); where no count can be had, from the local estimate times its safety margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from tuiagent.cost.ledger import Ledger
from tuiagent.cost.pricing import Pricer
from tuiagent.llm.tokens import ESTIMATE_SAFETY_MARGIN, REQUEST_OVERHEAD, request_blocks


@dataclass(frozen=True)
class Reservation:
    """What a call may cost at most, and the max_tokens that keeps it within the cap."""

    model: str
    input_tokens: int
    token_source: str  # count_tokens | estimate
    max_tokens: int
    requested_max_tokens: int
    worst_case_usd: Decimal
    remaining_usd: Decimal


def _writable_tokens(request: dict[str, Any], input_tokens: int) -> tuple[int, int]:
    """Tokens that may be billed as 1h and as 5m cache writes.

    The local estimate says where the breakpoints fall; the counted total sets the scale
    (never scaled down, so a count below the estimate cannot shrink the reservation).
    """
    running = REQUEST_OVERHEAD
    last_1h = last_any = 0
    for block, n in request_blocks(request):
        running += n
        marker = block.get("cache_control")
        if isinstance(marker, dict):
            last_any = running
            if marker.get("ttl") == "1h":
                last_1h = running
    auto = request.get("cache_control")
    if isinstance(auto, dict):  # automatic caching marks the last block
        last_any = running
        if auto.get("ttl") == "1h":
            last_1h = running
    scale = max(Decimal(input_tokens) / Decimal(max(running, 1)), Decimal(1))

    def scaled(n: int) -> int:
        return min(input_tokens, int((n * scale).to_integral_value(rounding=ROUND_CEILING)))

    w1h = scaled(last_1h)
    return w1h, max(0, scaled(last_any) - w1h)


class BudgetGuard:
    def __init__(self, pricer: Pricer, ledger: Ledger, min_useful_tokens: int = 256) -> None:
        self.pricer = pricer
        self.ledger = ledger
        self.min_useful_tokens = min_useful_tokens

    def worst_case(
        self, model: str, request: dict[str, Any], input_tokens: int, max_tokens: int
    ) -> Decimal:
        return (
            self._input_worst_case(model, request, input_tokens)
            + self._output_rate(model, input_tokens) * max_tokens
        )

    def _input_worst_case(self, model: str, request: dict[str, Any], input_tokens: int) -> Decimal:
        r = self.pricer.rates(model, input_tokens)
        w1h, w5m = _writable_tokens(request, input_tokens)
        rest = input_tokens - w1h - w5m
        return (
            max(r.cache_write_1h, r.input) * w1h
            + max(r.cache_write_5m, r.input) * w5m
            + r.input * rest
        )

    def _output_rate(self, model: str, input_tokens: int) -> Decimal:
        return self.pricer.rates(model, input_tokens).output

    def least_useful(self, model: str, request: dict[str, Any], input_tokens: int) -> Decimal:
        """What the smallest useful call of this request may cost: its input at worst plus
        the useful minimum of output (what the cap must leave for it to be sent)."""
        out = min(self.min_useful_tokens, int(request["max_tokens"]))
        return (
            self._input_worst_case(model, request, input_tokens)
            + self._output_rate(model, input_tokens) * out
        )

    def reserve(
        self,
        model: str,
        request: dict[str, Any],
        input_tokens: int,
        token_source: str,
        remaining: Decimal,
    ) -> Reservation | None:
        """The reservation for this call within `remaining`, or None if no useful call fits."""
        requested = int(request["max_tokens"])
        input_cost = self._input_worst_case(model, request, input_tokens)
        out_rate = self._output_rate(model, input_tokens)
        if input_cost >= remaining:
            return None
        fits = int((remaining - input_cost) / out_rate) if out_rate > 0 else requested
        max_tokens = min(requested, fits)
        if max_tokens < min(self.min_useful_tokens, requested):
            return None
        return Reservation(
            model=model,
            input_tokens=input_tokens,
            token_source=token_source,
            max_tokens=max_tokens,
            requested_max_tokens=requested,
            worst_case_usd=input_cost + out_rate * max_tokens,
            remaining_usd=remaining,
        )


def estimated_with_margin(estimate: int) -> int:
    return int(estimate * ESTIMATE_SAFETY_MARGIN) + 1
