"""Prices for every call, from genai-prices. Money is Decimal; nothing is ever priced at $0 by default.

A model genai-prices does not know is an error before any call, naming the config key
(`[prices."MODEL"]`) that sets its price by hand; a hand-set price takes genai-prices' own
shape (tiers by input tokens, 1-hour writes) and is still computed by genai-prices'
`ModelPrice.calc_price`. Cache prices a hand-set price leaves out are derived by Anthropic's
multipliers of the input price (5-minute write 1.25x, 1-hour write 2x, read 0.1x), and
`Pricer.notices` says so.

Where genai-prices' data differs from what Anthropic bills, the fix is in ONE place,
`PUBLISHED_OVERRIDES` below, with its source.

How Anthropic bills what this prices:
- a request above a long-context threshold pays the higher rate on all its tokens (the
  threshold counts every input token, cached ones included);
- a compaction response (`usage.iterations`) is priced as ONE request of all its passes'
  tokens: the documentation says the summarising pass is billed, not whether a long-context
  tier is decided per pass or per request, so the conservative reading is taken (the sum
  decides the tier; never less than pass by pass);
- server tools are billed per use on top of tokens: web search at genai-prices'
  `web_searches_kcount` ($10 per 1,000); web fetch has no charge beyond its tokens
  (Anthropic's web fetch tool documentation), so its count is shown and priced at $0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from genai_prices import Usage, calc_price
from genai_prices.types import ModelPrice, Tier, TieredPrices, calc_unit_price

from tuiagent.config import PRICE_KEYS, PriceValue, TieredRate
from tuiagent.errors import UsageError
from tuiagent.llm.usage import TokenUsage

MTOK = 1_000_000
ZERO = Decimal(0)

# Anthropic's prompt-caching multipliers of the base input price (pricing page, "Prompt
# caching"): what a hand-set price without its own cache prices is billed at.
CACHE_MULTIPLIERS = {
    "cache_write_mtok": Decimal("1.25"),
    "cache_write_1h_mtok": Decimal(2),
    "cache_read_mtok": Decimal("0.1"),
}

# Published facts genai-prices (0.2.3) lacks, keyed by genai-prices' model id (so every
# alias of the model is covered): {price key: (input tokens above which it applies, USD per
# MTok)}. Source: Anthropic's pricing page (docs.anthropic.com/en/docs/about-claude/pricing,
# "Long context pricing"): Claude Sonnet 4 and 4.5 prompts over 200K input tokens bill input
# at $6 (2x) and output at $22.50 (1.5x) per MTok; cache prices keep their multipliers of
# the long-context input rate. genai-prices has the tier for Sonnet 4.5 but not Sonnet 4
# (`claude-sonnet-4-0`, which `claude-sonnet-4-20250514` matches). An entry is applied only
# to a price genai-prices gives flat, so it goes quiet once upstream has the tier.
PUBLISHED_OVERRIDES: dict[str, dict[str, tuple[int, Decimal]]] = {
    "claude-sonnet-4-0": {
        "input_mtok": (200_000, Decimal(6)),
        "output_mtok": (200_000, Decimal("22.5")),
        "cache_write_mtok": (200_000, Decimal("7.5")),
        "cache_write_1h_mtok": (200_000, Decimal(12)),
        "cache_read_mtok": (200_000, Decimal("0.6")),
    },
}

# Per web search (Anthropic: $10 per 1,000 searches), when a price has no
# `web_searches_kcount` of its own (hand-set prices).
WEB_SEARCH_KCOUNT = Decimal(10)
# The fewest output tokens one server tool call can take (its tool name and input): bounds
# how many calls a request can make when its tool sets no `max_uses`.
MIN_SERVER_TOOL_CALL_TOKENS = 5


class UnpricedModelError(UsageError):
    def __init__(self, model: str) -> None:
        super().__init__(
            f"no price for model {model!r} in genai-prices; set one by hand with the config key "
            f'[prices."{model}"] ({", ".join(PRICE_KEYS)})'
        )


@dataclass(frozen=True)
class Cost:
    input: Decimal = ZERO
    output: Decimal = ZERO
    cache_write: Decimal = ZERO
    cache_read: Decimal = ZERO
    server_tools: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.input + self.output + self.cache_write + self.cache_read + self.server_tools

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.input + other.input,
            self.output + other.output,
            self.cache_write + other.cache_write,
            self.cache_read + other.cache_read,
            self.server_tools + other.server_tools,
        )

    def as_record(self) -> dict[str, float]:
        return {
            "input": usd(self.input),
            "output": usd(self.output),
            "cache_write": usd(self.cache_write),
            "cache_read": usd(self.cache_read),
            "server_tools": usd(self.server_tools),
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

    def __init__(self, overrides: Mapping[str, Mapping[str, PriceValue]] | None = None) -> None:
        self._overrides: dict[str, ModelPrice] = {}
        self._rates: dict[tuple[str, int], Rates] = {}  # each call prices its tokens twice
        self.notices: list[str] = []
        for model, spec in (overrides or {}).items():
            price, derived = _hand_set_price(spec)
            self._overrides[model] = price
            if derived:
                self.notices.append(
                    f'prices."{model}": {", ".join(derived)} not given, derived from input_mtok '
                    "by Anthropic's multipliers (5m write 1.25x, 1h write 2x, read 0.1x)"
                )

    def model_price(self, model: str) -> ModelPrice:
        if model in self._overrides:
            return self._overrides[model]
        return _genai_model_price(model)

    def ensure_priced(self, model: str) -> None:
        self.model_price(model)

    def rates(self, model: str, total_input_tokens: int = 0) -> Rates:
        """Per-token rates for a request of this many input tokens."""
        key = (model, total_input_tokens)
        if (known := self._rates.get(key)) is not None:
            return known
        if len(self._rates) >= 1024:
            self._rates.clear()
        mp = self.model_price(model)

        def per_token(key: str, fallback: Decimal | None = None) -> Decimal:
            price = getattr(mp, key, None)
            if price is None:
                return fallback if fallback is not None else ZERO
            one_m = calc_unit_price(price, MTOK, total_input_tokens, MTOK)
            return Decimal(one_m) / MTOK

        inp = per_token("input_mtok")
        write_5m = per_token("cache_write_mtok", inp)
        rates = self._rates[key] = Rates(
            input=inp,
            output=per_token("output_mtok"),
            cache_read=per_token("cache_read_mtok", inp),
            cache_write_5m=write_5m,
            cache_write_1h=per_token("cache_write_1h_mtok", write_5m),
        )
        return rates

    def price(self, model: str, usage: TokenUsage) -> Cost:
        """The exact cost of one call's usage, split by kind: a compaction response's passes
        as one request (see above); server tools per use."""
        # A compaction response's usage holds the sum of its passes (TokenUsage.from_api).
        cost = Cost(server_tools=self._server_tools(model, usage))
        return cost + self._price_tokens(model, usage)

    def without_cache(self, model: str, usage: TokenUsage) -> Decimal:
        """What the same call would cost with every input token at the plain input price."""
        plain = TokenUsage(input_tokens=usage.total_input_tokens, output_tokens=usage.output_tokens)
        return self._server_tools(model, usage) + self._price_tokens(model, plain).total

    def server_tool_worst_case(self, model: str, request: Mapping[str, Any]) -> Decimal:
        """The most the server tools a request offers can bill on top of its tokens: each
        billed tool (web search) used `max_uses` times, or, without `max_uses`, as often as
        `max_tokens` of output can ask for it. Zero when the request offers none."""
        tools = [t for t in request.get("tools") or [] if isinstance(t, Mapping)]
        searches = 0
        for tool in tools:
            if not str(tool.get("type", "")).startswith("web_search"):
                continue
            max_uses = tool.get("max_uses")
            if isinstance(max_uses, int) and not isinstance(max_uses, bool) and max_uses >= 0:
                searches += max_uses
            else:
                searches += int(request.get("max_tokens") or 0) // MIN_SERVER_TOOL_CALL_TOKENS
        return self._server_tools(model, TokenUsage(web_search_requests=searches))

    def _server_tools(self, model: str, usage: TokenUsage) -> Decimal:
        if not usage.web_search_requests:
            return ZERO
        per_k = getattr(self.model_price(model), "web_searches_kcount", None)
        if per_k is None:  # a hand-set price: Anthropic's published rate
            per_k = WEB_SEARCH_KCOUNT
        return Decimal(per_k) * usage.web_search_requests / 1000

    def _price_tokens(self, model: str, usage: TokenUsage) -> Cost:
        """The tokens of one request (one pass). The total is genai-prices' own."""
        mp = self.model_price(model)
        total = Decimal(mp.calc_price(_genai_usage(usage))["total_price"])
        r = self.rates(model, usage.total_input_tokens)
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


def _tiered(value: PriceValue) -> Decimal | TieredPrices:
    if isinstance(value, TieredRate):
        return TieredPrices(base=value.base, tiers=[Tier(start=s, price=p) for s, p in value.tiers])
    return value


def _scaled(value: PriceValue, factor: Decimal) -> PriceValue:
    if isinstance(value, TieredRate):
        return TieredRate(value.base * factor, tuple((s, p * factor) for s, p in value.tiers))
    return value * factor


def _hand_set_price(spec: Mapping[str, PriceValue]) -> tuple[ModelPrice, list[str]]:
    """A ModelPrice from a `[prices."MODEL"]` table; missing cache prices derived from the
    input price by Anthropic's multipliers (tiers and all). Returns what was derived."""
    values = dict(spec)
    derived = [k for k in CACHE_MULTIPLIERS if k not in values]
    for key in derived:
        values[key] = _scaled(values["input_mtok"], CACHE_MULTIPLIERS[key])
    return ModelPrice(**{k: _tiered(v) for k, v in values.items()}), derived


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


def _with_published_tiers(model_id: str, price: ModelPrice) -> ModelPrice:
    """genai-prices' price with PUBLISHED_OVERRIDES' tiers added where it has none."""
    extra = PUBLISHED_OVERRIDES.get(model_id)
    if not extra:
        return price
    values = {k: v for k, v in vars(price).items() if v is not None}
    for key, (start, rate) in extra.items():
        base = values.get(key)
        if isinstance(base, Decimal):
            values[key] = TieredPrices(base=base, tiers=[Tier(start=start, price=rate)])
    return ModelPrice(**values)


@lru_cache(maxsize=64)
def _genai_model_price(model: str) -> ModelPrice:
    result = _genai_price(model)
    price: ModelPrice = result.model_price
    return _with_published_tiers(str(result.model.id), price)


@lru_cache(maxsize=64)
def _genai_price(model: str) -> Any:
    try:
        return calc_price(
            Usage(input_tokens=0, output_tokens=0), model_ref=model, provider_id="anthropic"
        )
    except LookupError:
        raise UnpricedModelError(model) from None


def context_window(model: str) -> int | None:
    """The model's context window in tokens, as genai-prices lists it (None if unknown)."""
    try:
        window = _genai_price(model).model.context_window
    except UnpricedModelError:
        return None
    return int(window) if window else None
