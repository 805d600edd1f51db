"""Prices for every call, from genai-prices. Money is Decimal; nothing is ever priced at $0 by default.

A model genai-prices does not know is an error before any call, naming the config key
(`[prices."MODEL"]`) that sets its price by hand; a hand-set price takes genai-prices' own
shape (tiers by input tokens, 1-hour writes) and is still computed by genai-prices'
`ModelPrice.calc_price`. Cache prices a hand-set price leaves out are derived by Anthropic's
multipliers of the input price (5-minute write 1.25x, 1-hour write 2x, read 0.1x), and
`Pricer.notices` says so.

Every price modifier a request can carry is priced, in the hold and in the settlement
(`Modifiers`): `speed: "fast"` and Message Batches (`processing: batch`) from genai-prices'
`price_variants`, `inference_geo: "us"` and what genai-prices lacks from the ONE table of
published facts, `PUBLISHED_OVERRIDES` below, with its sources. A modifier the meter cannot
price for a model (fast mode where no fast price is published, US-only inference on a model
older than Opus 4.6, a value it does not know) is refused (`UnpricedModifierError`), never
priced at the base rate.

How Anthropic bills what this prices:
- a request above a long-context threshold pays the higher rate on all its tokens (the
  threshold counts every input token, cached ones included);
- a compaction response (`usage.iterations`) is priced as ONE request of all its passes'
  tokens: the documentation says the summarising pass is billed, not whether a long-context
  tier is decided per pass or per request, so the conservative reading is taken (the sum
  decides the tier; never less than pass by pass);
- server tools are billed per use on top of tokens: web search at genai-prices'
  `web_searches_kcount` ($10 per 1,000); web fetch has no charge beyond its tokens
  (Anthropic's web fetch tool documentation), so its count is shown and priced at $0; tool
  search likewise carries no fee (and the wire reports no count of it: shared/wire/
  stream_tool_use_input_json_delta.yaml), but each search adds a pass of the whole input,
  with its result and the definitions it loads, to the request's input tokens (the same
  recording: 702 before, 1,591 after); code execution is free beside `web_search_20260209` or
  `web_fetch_20260209`, and otherwise billed by container time that no response reports:
  such a request is refused;
- the modifiers multiply token prices only (a web search costs $10 per 1,000 at any speed);
  where a response reports where and how it ran (`usage.inference_geo`, `usage.speed`,
  `usage.service_tier`), that is what it is priced as.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from genai_prices import Usage, calc_price
from genai_prices.types import ModelInfo, ModelPrice, Tier, TieredPrices, calc_unit_price

from tuiagent.config import PRICE_KEYS, PriceValue, TieredRate
from tuiagent.errors import UsageError
from tuiagent.llm.tokens import TokenUsage

MTOK = 1_000_000
ZERO = Decimal(0)

# Anthropic's prompt-caching multipliers of the base input price (pricing page, "Prompt
# caching"): what a hand-set price without its own cache prices is billed at.
CACHE_MULTIPLIERS = {
    "cache_write_mtok": Decimal("1.25"),
    "cache_write_1h_mtok": Decimal(2),
    "cache_read_mtok": Decimal("0.1"),
}
TOKEN_PRICES = ("input_mtok", "output_mtok", *CACHE_MULTIPLIERS)


@dataclass(frozen=True)
class Published:
    """What Anthropic publishes for one model that genai-prices (0.2.5) lacks.

    long_context: {price key: (input tokens above which it applies, USD per MTok)}, added
    only to a price genai-prices gives flat (so it goes quiet once upstream has the tier);
    batch: the Message Batches factor of every token price, used only where genai-prices has
    no `processing: batch` variant; us_only: the factor of every token price of a request
    run only in the US (`inference_geo: "us"`).
    """

    long_context: Mapping[str, tuple[int, Decimal]] = field(default_factory=dict)
    batch: Decimal | None = None
    us_only: Decimal | None = None


# --- The ONE table of published prices genai-prices lacks, by genai-prices' model id (so
# every alias and dated id of a model is covered). Sources:
# - Long context: Anthropic's pricing page (platform.claude.com/docs/en/about-claude/pricing,
#   "Long context pricing"): Claude Sonnet 4 and 4.5 prompts over 200K input tokens bill
#   input at $6 (2x) and output at $22.50 (1.5x) per MTok; cache prices keep their
#   multipliers of the long-context input rate. genai-prices has the tier for Sonnet 4.5 but
#   not Sonnet 4 (`claude-sonnet-4-0`, which `claude-sonnet-4-20250514` matches).
# - Batch: the same page, "Batch processing": the Message Batches API bills 50% of the
#   standard input and output prices. genai-prices has the variant for Haiku 4.5 and every
#   model after it; the older models still served are below.
# - US-only inference: the pricing page's "Data residency pricing" and the support article
#   "Enable US-only inference for your organization" (support.claude.com/en/articles/
#   15422948): with `inference_geo: "us"`, usage is billed at 1.1x standard rates on every
#   token category (input, output, cache writes and reads) for Claude Opus 4.6, Sonnet 4.6
#   and every later model; the data residency page (platform.claude.com/docs/en/
#   manage-claude/data-residency) adds that older models refuse the parameter with a 400.
#   The response's `usage.inference_geo` says where it ran.
# - Fast mode (`speed: "fast"`) comes from genai-prices' variants (Opus 4.8, Opus 5, Opus
#   5.5, Fable 5.2, Mythos 5.2: platform.claude.com/docs/en/build-with-claude/fast-mode,
#   "Pricing"; it stacks with the caching and data residency multipliers); a model without a
#   published fast price is refused. `usage.speed` says which speed ran (a model whose fast
#   mode was removed runs at standard speed and price).
_US_ONLY = Decimal("1.1")
_HALF = Decimal("0.5")
_SONNET_4_LONG = {
    "input_mtok": (200_000, Decimal(6)),
    "output_mtok": (200_000, Decimal("22.5")),
    "cache_write_mtok": (200_000, Decimal("7.5")),
    "cache_write_1h_mtok": (200_000, Decimal(12)),
    "cache_read_mtok": (200_000, Decimal("0.6")),
}
PUBLISHED_OVERRIDES: dict[str, Published] = {
    "claude-sonnet-4-0": Published(long_context=_SONNET_4_LONG, batch=_HALF),
    "claude-opus-4-0": Published(batch=_HALF),
    "claude-opus-4-1": Published(batch=_HALF),
    "claude-3-7-sonnet-latest": Published(batch=_HALF),
    "claude-3-5-haiku-latest": Published(batch=_HALF),
    "claude-3-opus-latest": Published(batch=_HALF),
    "claude-3-haiku": Published(batch=_HALF),
    **{
        model: Published(us_only=_US_ONLY)
        for model in (
            "claude-opus-4-6",
            "claude-sonnet-4-6",
            "claude-opus-4-7",
            "claude-opus-4-8",
            "claude-opus-5",
            "claude-sonnet-5",
            "claude-fable-5",
            "claude-fable-5-1",
            "claude-opus-5-5",
            "claude-sonnet-5-5",
            "claude-haiku-5-5",
            "claude-fable-5-2",
            "claude-mythos-5-2",
        )
    },
}

# Per web search (Anthropic: $10 per 1,000 searches), when a price has no
# `web_searches_kcount` of its own (hand-set prices).
WEB_SEARCH_KCOUNT = Decimal(10)
# The fewest output tokens one server tool call can take (its tool name and input): bounds
# how many calls a request can make when its tool sets no `max_uses`.
MIN_SERVER_TOOL_CALL_TOKENS = 5
# The passes the API's server-side loop samples in one request before it stops with
# `pause_turn` ("default 10 iterations": handling stop reasons, pause_turn). Each server
# tool call is followed by one more pass over the whole input.
SERVER_LOOP_ITERATIONS = 10
# The tools beside which code execution bills nothing (code execution tool documentation:
# "free when used with web search or web fetch").
CODE_EXECUTION_FREE_BESIDE = ("web_search_20260209", "web_fetch_20260209")

SPEEDS = ("standard", "fast")
GEOS = ("global", "us")
PROCESSING = ("standard", "batch")


class UnpricedModifierError(UsageError):
    """A request modifier the meter cannot price for this model: refused before sending."""


@dataclass(frozen=True)
class Modifiers:
    """What changes a request's token prices besides its model and its size.

    `speed` ("standard" | "fast"), `processing` ("standard" | "batch": the Message Batches
    API), `inference_geo` ("global" | "us"). Taken from the request before it is sent
    (`of_request`), and from what the response reports when it is settled (`as_billed`).
    """

    speed: str = "standard"
    processing: str = "standard"
    inference_geo: str = "global"

    @classmethod
    def of_request(cls, request: Mapping[str, Any], *, processing: str = "standard") -> Modifiers:
        """A request's modifiers; one it sets to a value this cannot price is refused."""
        speed = request.get("speed")
        geo = request.get("inference_geo")
        if speed is not None and speed not in SPEEDS:
            raise UnpricedModifierError(f"speed {speed!r} has no published price")
        if geo is not None and geo not in GEOS:
            raise UnpricedModifierError(f"inference_geo {geo!r} has no published price")
        return cls(str(speed or "standard"), processing, str(geo or "global"))

    def as_billed(self, usage: TokenUsage) -> Modifiers:
        """What the response says it ran as wins: its `inference_geo`, `speed`, and a
        `service_tier` of batch (a value it does not know leaves the request's own)."""
        geo = usage.inference_geo if usage.inference_geo in GEOS else self.inference_geo
        speed = usage.speed if usage.speed in SPEEDS else self.speed
        processing = "batch" if usage.service_tier == "batch" else self.processing
        return Modifiers(str(speed), processing, str(geo))

    @property
    def standard(self) -> bool:
        return self == STANDARD

    def as_record(self) -> dict[str, str]:
        """The modifiers that are not the default, for a record."""
        return {k: v for k, v in vars(self).items() if v != getattr(STANDARD, k)}

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.as_record().items()) or "standard"


STANDARD = Modifiers()


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


@dataclass
class Spending:
    """What a run has spent, call by call, with every token kind (its cache savings too)."""

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
        # each call prices its tokens several times
        self._rates: dict[tuple[str, int, Modifiers], Rates] = {}
        self._prices: dict[tuple[str, Modifiers], ModelPrice] = {}
        self.notices: list[str] = []
        for model, spec in (overrides or {}).items():
            price, derived = _hand_set_price(spec)
            self._overrides[model] = price
            if derived:
                self.notices.append(
                    f'prices."{model}": {", ".join(derived)} not given, derived from input_mtok '
                    "by Anthropic's multipliers (5m write 1.25x, 1h write 2x, read 0.1x)"
                )

    def model_price(self, model: str, modifiers: Modifiers = STANDARD) -> ModelPrice:
        """The model's prices with `modifiers` applied; `UnpricedModelError` for a model
        without a price, `UnpricedModifierError` for a modifier without one."""
        key = (model, modifiers)
        if (known := self._prices.get(key)) is not None:
            return known
        if model in self._overrides:
            if not modifiers.standard:
                raise UnpricedModifierError(
                    f"{modifiers} has no price for {model!r}: its price is set by hand "
                    f'([prices."{model}"]), which prices standard requests only'
                )
            price = self._overrides[model]
        else:
            price = _genai_model_price(model, modifiers)
        if len(self._prices) >= 256:
            self._prices.clear()
        self._prices[key] = price
        return price

    def ensure_priced(self, model: str, modifiers: Modifiers = STANDARD) -> None:
        self.model_price(model, modifiers)

    def check_request(
        self, model: str, request: Mapping[str, Any], modifiers: Modifiers = STANDARD
    ) -> None:
        """Refuse (`UsageError`) a request this cannot price exactly: its model, its
        modifiers, and code execution where it bills container time."""
        self.ensure_priced(model, modifiers)
        types = [str(t.get("type", "")) for t in _tools(request)]
        if any(t.startswith("code_execution") for t in types) and not any(
            t in CODE_EXECUTION_FREE_BESIDE for t in types
        ):
            raise UnpricedModifierError(
                "the code execution tool bills container time, which no response reports "
                f"(it is free beside {' or '.join(CODE_EXECUTION_FREE_BESIDE)})"
            )

    def rates(
        self, model: str, total_input_tokens: int = 0, modifiers: Modifiers = STANDARD
    ) -> Rates:
        """Per-token rates for a request of this many input tokens."""
        key = (model, total_input_tokens, modifiers)
        if (known := self._rates.get(key)) is not None:
            return known
        if len(self._rates) >= 1024:
            self._rates.clear()
        mp = self.model_price(model, modifiers)

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

    def price(self, model: str, usage: TokenUsage, modifiers: Modifiers = STANDARD) -> Cost:
        """The exact cost of one call's usage, split by kind: a compaction response's passes
        as one request (see above); server tools per use."""
        # A compaction response's usage holds the sum of its passes (TokenUsage.from_api).
        cost = Cost(server_tools=self._server_tools(model, usage))
        return cost + self._price_tokens(model, usage, modifiers)

    def without_cache(
        self, model: str, usage: TokenUsage, modifiers: Modifiers = STANDARD
    ) -> Decimal:
        """What the same call would cost with every input token at the plain input price."""
        plain = TokenUsage(input_tokens=usage.total_input_tokens, output_tokens=usage.output_tokens)
        return self._server_tools(model, usage) + self._price_tokens(model, plain, modifiers).total

    def server_tool_worst_case(self, model: str, request: Mapping[str, Any]) -> Decimal:
        """The most the server tools a request offers can bill on top of its tokens: each
        billed tool (web search) used `max_uses` times, or, without `max_uses`, as often as
        `max_tokens` of output can ask for it. Zero when the request offers none."""
        searches = 0
        for tool in _tools(request):
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

    def _price_tokens(self, model: str, usage: TokenUsage, modifiers: Modifiers) -> Cost:
        """The tokens of one request (one pass). The total is genai-prices' own."""
        mp = self.model_price(model, modifiers)
        total = Decimal(mp.calc_price(_genai_usage(usage))["total_price"])
        r = self.rates(model, usage.total_input_tokens, modifiers)
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


def _tools(request: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tools = request.get("tools")
    return [t for t in tools if isinstance(t, Mapping)] if isinstance(tools, list) else []


def _tiered(value: PriceValue) -> Decimal | TieredPrices:
    if isinstance(value, TieredRate):
        return TieredPrices(base=value.base, tiers=[Tier(start=s, price=p) for s, p in value.tiers])
    return value


def _scaled(value: PriceValue, factor: Decimal) -> PriceValue:
    if isinstance(value, TieredRate):
        return TieredRate(value.base * factor, tuple((s, p * factor) for s, p in value.tiers))
    return value * factor


def _times(value: Decimal | TieredPrices, factor: Decimal) -> Decimal | TieredPrices:
    """A genai-prices price (flat or tiered) times `factor`."""
    if isinstance(value, TieredPrices):
        return TieredPrices(
            base=value.base * factor,
            tiers=[Tier(start=t.start, price=t.price * factor) for t in value.tiers],
        )
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


def _with_published_tiers(price: ModelPrice, published: Published) -> ModelPrice:
    """genai-prices' price with the published long-context tiers added where it has none."""
    if not published.long_context:
        return price
    values = {k: v for k, v in vars(price).items() if v is not None}
    for key, (start, rate) in published.long_context.items():
        base = values.get(key)
        if isinstance(base, Decimal):
            values[key] = TieredPrices(base=base, tiers=[Tier(start=start, price=rate)])
    return ModelPrice(**values)


def _scaled_tokens(price: ModelPrice, factor: Decimal) -> ModelPrice:
    """Every token price times `factor` (per-use prices such as web search unchanged)."""
    values = {k: v for k, v in vars(price).items() if v is not None}
    for key in TOKEN_PRICES:
        if key in values:
            values[key] = _times(values[key], factor)
    return ModelPrice(**values)


def _has_variant(info: ModelInfo, key: str, value: str) -> bool:
    now = datetime.now(tz=UTC)
    return any(
        v.when == {key: value} and (v.constraint is None or v.constraint.active(now))
        for v in info.price_variants or ()
    )


@lru_cache(maxsize=256)
def _genai_model_price(model: str, modifiers: Modifiers = STANDARD) -> ModelPrice:
    """genai-prices' price of `model` with its variants for `modifiers`, then what the one
    table of published facts adds: long-context tiers, batch where genai-prices has no
    variant, the US-only multiplier."""
    result = _genai_price(model)
    info: ModelInfo = result.model
    published = PUBLISHED_OVERRIDES.get(str(info.id), Published())
    context: dict[str, str] = {}
    if modifiers.speed == "fast":
        if modifiers.processing != "standard":
            raise UnpricedModifierError("fast mode has no published Message Batches price")
        if not _has_variant(info, "speed", "fast"):
            raise UnpricedModifierError(f"fast mode has no published price for {model!r}")
        context["speed"] = "fast"
    batch_factor = None
    if modifiers.processing == "batch":
        if _has_variant(info, "processing", "batch"):
            context["processing"] = "batch"
        elif published.batch is not None:
            batch_factor = published.batch
        else:
            raise UnpricedModifierError(f"Message Batches have no published price for {model!r}")
    elif modifiers.processing != "standard":
        raise UnpricedModifierError(f"processing {modifiers.processing!r} has no price")
    price: ModelPrice = (
        info.get_prices(datetime.now(tz=UTC), context) if context else result.model_price
    )
    price = _with_published_tiers(price, published)
    if batch_factor is not None:
        price = _scaled_tokens(price, batch_factor)
    if modifiers.inference_geo == "us":
        if published.us_only is None:
            raise UnpricedModifierError(
                f'inference_geo "us" is priced for Claude Opus 4.6 and later models only, '
                f"not {model!r} (the API refuses it there)"
            )
        price = _scaled_tokens(price, published.us_only)
    elif modifiers.inference_geo != "global":
        raise UnpricedModifierError(f"inference_geo {modifiers.inference_geo!r} has no price")
    return price


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
