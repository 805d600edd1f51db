"""Prices for every call, from genai-prices. Money is Decimal; nothing is ever priced at $0 by default.

A model genai-prices does not know is an error before any call, naming the config key
(`[prices."MODEL"]`) that sets its price by hand; a hand-set price is still computed by
genai-prices' own `ModelPrice.calc_price`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from genai_prices import Usage, calc_price
from genai_prices.types import ModelPrice, calc_unit_price

from tuiagent.errors import UsageError
from tuiagent.llm.usage import TokenUsage

MTOK = 1_000_000
ZERO = Decimal(0)


class UnpricedModelError(UsageError):
    def __init__(self, model: str) -> None:
        super().__init__(
            f"no price for model {model!r} in genai-prices; set one by hand with the config key "
            f'[prices."{model}"] (input_mtok, output_mtok, cache_read_mtok, cache_write_mtok)'
        )


@dataclass(frozen=True)
class Cost:
    input: Decimal = ZERO
    output: Decimal = ZERO
    cache_write: Decimal = ZERO
    cache_read: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.input + self.output + self.cache_write + self.cache_read

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.input + other.input,
            self.output + other.output,
            self.cache_write + other.cache_write,
            self.cache_read + other.cache_read,
        )

    def as_record(self) -> dict[str, float]:
        return {
            "input": usd(self.input),
            "output": usd(self.output),
            "cache_write": usd(self.cache_write),
            "cache_read": usd(self.cache_read),
        }


def usd(amount: Decimal) -> float:
    """Money for the log: a JSON number in USD (exact to the 1e-12 dollar)."""
    return float(round(amount, 12))


@dataclass(frozen=True)
class Rates:
    """Per-token prices at a given input size (tiered prices depend on it)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal


class Pricer:
    """Prices usage for a model. One instance per run; hand-set prices from config win."""

    def __init__(self, overrides: Mapping[str, Mapping[str, Decimal]] | None = None) -> None:
        self._overrides = {m: ModelPrice(**dict(r)) for m, r in (overrides or {}).items()}

    def model_price(self, model: str) -> ModelPrice:
        if model in self._overrides:
            return self._overrides[model]
        return _genai_model_price(model)

    def ensure_priced(self, model: str) -> None:
        self.model_price(model)

    def rates(self, model: str, total_input_tokens: int = 0) -> Rates:
        """Per-token rates for a request of this many input tokens."""
        mp = self.model_price(model)

        def per_token(key: str, fallback: Decimal | None = None) -> Decimal:
            price = getattr(mp, key, None)
            if price is None:
                return fallback if fallback is not None else ZERO
            one_m = calc_unit_price(price, MTOK, total_input_tokens, MTOK)
            return Decimal(one_m) / MTOK

        inp = per_token("input_mtok")
        write_5m = per_token("cache_write_mtok", inp)
        return Rates(
            input=inp,
            output=per_token("output_mtok"),
            cache_read=per_token("cache_read_mtok", inp),
            cache_write_5m=write_5m,
            cache_write_1h=per_token("cache_write_1h_mtok", write_5m),
        )

    def price(self, model: str, usage: TokenUsage) -> Cost:
        """The exact cost of one call's usage, split by kind. The total is genai-prices' own."""
        mp = self.model_price(model)
        total_in = usage.total_input_tokens
        gp_usage = _genai_usage(usage)
        total = Decimal(mp.calc_price(gp_usage)["total_price"])
        r = self.rates(model, total_in)
        cost = Cost(
            input=r.input * usage.input_tokens,
            output=r.output * usage.output_tokens,
            cache_write=r.cache_write_5m * usage.cache_creation_5m_input_tokens
            + r.cache_write_1h * usage.cache_creation_1h_input_tokens,
            cache_read=r.cache_read * usage.cache_read_input_tokens,
        )
        if cost.total != total:
            # genai-prices knows something the per-kind split does not (a unit we do not
            # split out): trust its total and put the difference on input.
            cost = Cost(
                cost.input + total - cost.total, cost.output, cost.cache_write, cost.cache_read
            )
        return cost

    def without_cache(self, model: str, usage: TokenUsage) -> Decimal:
        """What the same call would cost with every input token at the plain input price."""
        plain = TokenUsage(input_tokens=usage.total_input_tokens, output_tokens=usage.output_tokens)
        return self.price(model, plain).total


def _genai_usage(usage: TokenUsage) -> Usage:
    values: dict[str, Any] = {
        "input_tokens": usage.total_input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_input_tokens,
        "cache_write_tokens": usage.cache_creation_input_tokens,
        "cache_write_1h_tokens": usage.cache_creation_1h_input_tokens,
        "cache_write_5m_tokens": usage.cache_creation_5m_input_tokens,
    }
    return Usage(**values)


@lru_cache(maxsize=64)
def _genai_model_price(model: str) -> ModelPrice:
    try:
        result = calc_price(
            Usage(input_tokens=0, output_tokens=0), model_ref=model, provider_id="anthropic"
        )
    except LookupError:
        raise UnpricedModelError(model) from None
    price: ModelPrice = result.model_price
    return price
