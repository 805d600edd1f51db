"""One settings model, read from config.toml. Unknown keys and bad values name the key."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.errors import ConfigError
from tuiagent.paths import CONFIG_ENV, default_config_file

TIERS = ("fast", "balanced", "deep")
TIER_CHOICES = ("auto", *TIERS)

# Current models that the SDK lists (anthropic.types.Model) and genai-prices prices.
DEFAULT_TIER_MODELS = {
    "fast": "claude-haiku-5-5",
    "balanced": "claude-sonnet-5-5",
    "deep": "claude-fable-5-2",
}

# Keys a hand-set price may carry, per million tokens, as genai-prices names them.
PRICE_KEYS = (
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "cache_write_1h_mtok",
)


@dataclass(frozen=True)
class TieredRate:
    """A price that changes with the request's input tokens, as genai-prices' TieredPrices:
    `base` up to the first tier, then each tier's price once input exceeds its `start`."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...]


PriceValue = Decimal | TieredRate

DEFAULT_SYSTEM_PROMPT = (
    "You are tuiagent, a careful assistant working inside the user's workspace. "
    "Use the tools to look at files before answering questions about them. "
    "Be brief: every token you read and write is paid for."
)


# Money and prices as text: plain ASCII digits with an optional decimal point (no `1_000`,
# no `1e3`, no digits of other scripts); money may start with one `$`.
_PLAIN_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
# No run needs more; above it a typo (a cap of 1e30) would make the cap meaningless.
MAX_MONEY_USD = Decimal(1_000_000)
# USD per million tokens: today's dearest models are near 100; this is a typo guard.
MAX_PRICE_MTOK = Decimal(100_000)
# Text files tuiagent reads (config, system prompt): more than this is not what was meant.
MAX_TEXT_FILE_BYTES = 1 << 20
# The longest wait before a retry that can be configured (retry-after is capped at it).
MAX_RETRY_WAIT_S = 3600.0
# Turns, tokens: beyond this a number is a typo, not a plan.
MAX_WHOLE = 10_000_000
MAX_RETRIES = 1000


def _decimal(value: object, dollar_sign: bool) -> Decimal | None:
    """A finite Decimal from a TOML number or plain text, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if dollar_sign and text.startswith("$"):
            text = text[1:]
        if _PLAIN_NUMBER.fullmatch(text):
            return Decimal(text)
    return None


@dataclass(frozen=True)
class RouterRule:
    """A router rule (config `[[router_rules]]`): an agent call that matches every condition
    given goes to `tier`. Words: any of them in the user's request (whole words, any case);
    tools: every tool called so far for the request is one of them (and one was called);
    max_input_tokens: the request's estimated size is at most this."""

    tier: str
    when_words: tuple[str, ...] = ()
    when_tools: tuple[str, ...] = ()
    max_input_tokens: int | None = None


RULE_KEYS = ("when_words", "when_tools", "max_input_tokens", "tier")


def parse_money(value: object, name: str) -> Decimal:
    """A positive amount of US dollars up to $1,000,000, or a ConfigError naming `name`."""
    amount = _decimal(value, dollar_sign=True)
    if amount is None or not 0 < amount <= MAX_MONEY_USD:
        raise ConfigError(
            f"{name} must be a positive number of US dollars up to "
            f"${MAX_MONEY_USD:,}, got {value!r}"
        )
    return amount


def read_text_file(path: Path, what: str) -> str:
    """A small UTF-8 text file (a leading BOM dropped), or a ConfigError naming `what`.

    Only regular files: a FIFO or a device would block the start or never end.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{what}: {path} is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_TEXT_FILE_BYTES + 1)
    if len(data) > MAX_TEXT_FILE_BYTES:
        raise ConfigError(f"{what}: {path} is larger than {MAX_TEXT_FILE_BYTES >> 20} MiB")
    try:
        return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: {path} is not UTF-8 text (byte {exc.start})") from None


@dataclass
class Settings:
    """Everything a run can be told. Defaults first, then config.toml, then flags."""

    tiers: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TIER_MODELS))
    tier: str = "auto"
    max_cost_usd: Decimal = Decimal("1.00")
    max_turns: int = 20
    max_tokens: int = 4096
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    system_prompt_file: Path | None = None
    prices: dict[str, dict[str, PriceValue]] = field(default_factory=dict)
    log_dir: Path | None = None
    # Prompt caching: breakpoints on the stable prefix and the end of the conversation.
    cache: bool = True
    cache_ttl: str = "5m"
    # Refresh a warm cache when idle near its expiry, when that costs less than a miss.
    keep_warm: bool = False
    max_retries: int = 3
    retry_max_wait_s: float = 60.0
    # Deadlines of one attempt: the whole call, and a stream with no content or usage.
    call_timeout_s: float = 600.0
    stream_idle_timeout_s: float = 90.0
    min_useful_tokens: int = 256
    # Offline model: tokens per second it streams at (0 = as fast as it can).
    offline_tokens_per_second: float = 0.0
    # Router: with less than this fraction of the cap left, auto routing steps down a tier.
    router_budget_floor: Decimal = Decimal("0.2")
    # Router: ask a fast-tier classifier call for each request's tier (priced and logged).
    router_classifier: bool = False
    # The app: how much F2/F3 move the cap, and keys remapped by binding id.
    budget_step_usd: Decimal = Decimal("0.10")
    keymap: dict[str, str] = field(default_factory=dict)
    # Tool results: compressed over this many tokens, originals kept for expand_result.
    compress: bool = True
    compress_over_tokens: int = 1000
    summarize_results: bool = False  # a fast-tier call summarises instead (its own turn)
    allow_commands: bool = False  # the run_command tool
    allow_fetch: bool = False  # the fetch_url tool
    command_timeout_s: float = 30.0
    # Long sessions (agent/context.py): old tool results cleared when it pays, the
    # conversation compacted into a summary at this fraction of the context window.
    context_management: bool = True
    compact_at: float = 0.8
    context_keep_turns: int = 3  # tool results of the last N model calls stay whole
    context_window: int | None = None  # a smaller window than the model's (a gateway)
    # Sub-agents: the delegate tool, and how many of them work at once.
    subagents: bool = True
    max_parallel_agents: int = 4
    # Router rules, first match wins (`tuiagent replay --suggest` writes some to copy).
    router_rules: list[RouterRule] = field(default_factory=list)

    def model_for(self, tier: str) -> str:
        return self.tiers[tier]

    def tier_of(self, model: str) -> str | None:
        """The tier a model is configured for, if any."""
        return next((t for t in TIERS if self.tiers[t] == model), None)

    def resolved_system_prompt(self) -> str:
        if self.system_prompt_file is None:
            return self.system_prompt
        return read_text_file(self.system_prompt_file, "system_prompt_file")


def _expect(cond: bool, key: str, what: str, value: object) -> None:
    if not cond:
        raise ConfigError(f"config key {key!r} must be {what}, got {value!r}")


def _is_number(value: object, low: float, high: float) -> bool:
    """A TOML int or float, finite, from `low` to `high`."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def _apply(settings: Settings, data: dict[str, Any], source: str) -> None:
    known = {f.name for f in dataclasses.fields(Settings)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown config key {key!r} in {source}")
        if key == "tiers":
            _expect(isinstance(value, dict), key, "a table", value)
            for tier, model in value.items():
                if tier not in TIERS:
                    raise ConfigError(f"unknown config key 'tiers.{tier}' in {source}")
                _expect(
                    isinstance(model, str) and bool(model), f"tiers.{tier}", "a model id", model
                )
                settings.tiers[tier] = model
        elif key == "tier":
            _expect(value in TIER_CHOICES, key, " | ".join(TIER_CHOICES), value)
            settings.tier = value
        elif key == "max_cost_usd":
            settings.max_cost_usd = parse_money(value, "config key 'max_cost_usd'")
        elif key in ("cache", "keep_warm"):
            _expect(isinstance(value, bool), key, "true or false", value)
            setattr(settings, key, value)
        elif key == "cache_ttl":
            _expect(value in ("5m", "1h"), key, '"5m" or "1h"', value)
            settings.cache_ttl = value
        elif key == "max_retries":
            ok = (
                isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_RETRIES
            )
            _expect(ok, key, f"a whole number from 0 to {MAX_RETRIES}", value)
            settings.max_retries = value
        elif key == "retry_max_wait_s":
            ok = _is_number(value, 0, MAX_RETRY_WAIT_S)
            _expect(ok, key, f"a number of seconds from 0 to {MAX_RETRY_WAIT_S:g}", value)
            settings.retry_max_wait_s = float(value)
        elif key in ("call_timeout_s", "stream_idle_timeout_s"):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            _expect(ok, key, "a number of seconds > 0", value)
            setattr(settings, key, float(value))
        elif key in ("max_turns", "max_tokens", "min_useful_tokens", "max_parallel_agents"):
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_WHOLE
            _expect(ok, key, f"a positive whole number up to {MAX_WHOLE:,}", value)
            setattr(settings, key, value)
        elif key == "system_prompt":
            _expect(isinstance(value, str), key, "a string", value)
            settings.system_prompt = value
        elif key in ("system_prompt_file", "log_dir"):
            _expect(isinstance(value, str) and bool(value), key, "a path", value)
            setattr(settings, key, Path(value).expanduser())
        elif key == "offline_tokens_per_second":
            _expect(_is_number(value, 0, 1e9), key, "a number >= 0", value)
            settings.offline_tokens_per_second = float(value)
        elif key == "router_budget_floor":
            ok = _is_number(value, 0, 1) and value < 1
            _expect(ok, key, "a fraction of the cap from 0 to below 1 (0.2 = 20%)", value)
            settings.router_budget_floor = Decimal(str(value))
        elif key == "router_classifier":
            _expect(isinstance(value, bool), key, "true or false", value)
            settings.router_classifier = value
        elif key == "router_rules":
            _expect(isinstance(value, list), key, "an array of tables ([[router_rules]])", value)
            settings.router_rules = [_rule(r, f"router_rules[{i}]") for i, r in enumerate(value)]
        elif key == "budget_step_usd":
            settings.budget_step_usd = parse_money(value, "config key 'budget_step_usd'")
        elif key == "keymap":
            # The ids are the app's commands (ui/commands.py): the app checks them.
            _expect(isinstance(value, dict), key, "a table of binding ids", value)
            for binding_id, keys in value.items():
                ok = isinstance(keys, str) and bool(keys.strip())
                _expect(ok, f"keymap.{binding_id}", "key names like 'f3' or 'ctrl+up,f3'", keys)
                settings.keymap[binding_id] = keys.strip()
        elif key == "compact_at":
            ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1
            _expect(ok, key, "a fraction of the context window above 0 and at most 1", value)
            settings.compact_at = float(value)
        elif key in ("context_keep_turns", "context_window"):
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
            _expect(ok, key, "a positive whole number", value)
            setattr(settings, key, value)
        elif key in (
            "compress",
            "summarize_results",
            "allow_commands",
            "allow_fetch",
            "context_management",
            "subagents",
        ):
            _expect(isinstance(value, bool), key, "true or false", value)
            setattr(settings, key, value)
        elif key == "compress_over_tokens":
            ok = (
                isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= MAX_WHOLE
            )
            _expect(ok, key, f"a whole number from 200 to {MAX_WHOLE:,}", value)
            settings.compress_over_tokens = value
        elif key == "command_timeout_s":
            ok = _is_number(value, 0, 86400) and value > 0
            _expect(ok, key, "a number of seconds > 0, up to a day (86400)", value)
            settings.command_timeout_s = float(value)
        elif key == "prices":
            _expect(isinstance(value, dict), key, "a table of models", value)
            for model, rates in value.items():
                settings.prices[model] = _parse_price(model, rates, source)


def _rate(value: object, key: str) -> Decimal:
    """A hand-set price: finite, from 0 to MAX_PRICE_MTOK USD per million tokens."""
    price = _decimal(value, dollar_sign=False)
    if price is None or not 0 <= price <= MAX_PRICE_MTOK:
        raise ConfigError(
            f"config key {key!r} must be a number >= 0 (USD per million tokens, up to "
            f"{MAX_PRICE_MTOK:,}), got {value!r}"
        )
    return price


def _parse_price(model: str, rates: object, source: str) -> dict[str, PriceValue]:
    """One `[prices."MODEL"]` table, in genai-prices' shape: each key a number, or
    `{base = N, tiers = [{start = TOKENS, price = N}, ...]}` for prices by input size."""
    _expect(isinstance(rates, dict), f"prices.{model}", "a table", rates)
    assert isinstance(rates, dict)
    parsed: dict[str, PriceValue] = {}
    for rate_key, rate in rates.items():
        name = f"prices.{model}.{rate_key}"
        if rate_key not in PRICE_KEYS:
            raise ConfigError(
                f"unknown config key {name!r} in {source} (known: {', '.join(PRICE_KEYS)})"
            )
        if not isinstance(rate, dict):
            parsed[rate_key] = _rate(rate, name)
            continue
        unknown = set(rate) - {"base", "tiers"}
        if unknown or "base" not in rate:
            raise ConfigError(
                f"config key {name!r} must be a number or {{base = N, tiers = "
                f"[{{start = TOKENS, price = N}}]}}, got keys {', '.join(sorted(rate))}"
            )
        tiers_value = rate.get("tiers", [])
        _expect(isinstance(tiers_value, list), f"{name}.tiers", "a list of tiers", tiers_value)
        tiers: list[tuple[int, Decimal]] = []
        for i, tier in enumerate(tiers_value):
            where = f"{name}.tiers[{i}]"
            ok = isinstance(tier, dict) and set(tier) == {"start", "price"}
            _expect(ok, where, "{start = TOKENS, price = N}", tier)
            start = tier["start"]
            ok = isinstance(start, int) and not isinstance(start, bool) and start > 0
            _expect(ok, f"{where}.start", "a positive whole number of input tokens", start)
            if tiers and start <= tiers[-1][0]:
                raise ConfigError(f"config key {where + '.start'!r} must be above the tier before")
            tiers.append((start, _rate(tier["price"], f"{where}.price")))
        parsed[rate_key] = TieredRate(_rate(rate["base"], f"{name}.base"), tuple(tiers))
    for required in ("input_mtok", "output_mtok"):
        if required not in parsed:
            raise ConfigError(f"config key 'prices.{model}.{required}' is missing")
    return parsed


def _rule(data: object, name: str) -> RouterRule:
    _expect(isinstance(data, dict), name, "a table", data)
    assert isinstance(data, dict)
    for key in data:
        if key not in RULE_KEYS:
            raise ConfigError(f"unknown config key '{name}.{key}' (known: {', '.join(RULE_KEYS)})")
    tier = data.get("tier")
    _expect(tier in TIERS, f"{name}.tier", " | ".join(TIERS), tier)
    lists = {}
    for key in ("when_words", "when_tools"):
        items = data.get(key, [])
        ok = isinstance(items, list) and all(isinstance(w, str) and w.strip() for w in items)
        _expect(ok, f"{name}.{key}", "a list of non-empty strings", items)
        lists[key] = tuple(w.strip() for w in items)
    most = data.get("max_input_tokens")
    ok = most is None or (isinstance(most, int) and not isinstance(most, bool) and most > 0)
    _expect(ok, f"{name}.max_input_tokens", "a positive whole number", most)
    if not (lists["when_words"] or lists["when_tools"] or most is not None):
        raise ConfigError(
            f"config key {name!r} needs a condition: when_words, when_tools or max_input_tokens"
        )
    return RouterRule(str(tier), lists["when_words"], lists["when_tools"], most)


def load_settings(path: Path | None = None) -> Settings:
    """Read config.toml (if any). A path given by `--config` or TUIAGENT_CONFIG must exist;
    the default one may be missing."""
    settings = Settings()
    source = "--config" if path is not None else CONFIG_ENV if os.environ.get(CONFIG_ENV) else ""
    path = path or default_config_file()
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if source:
            raise ConfigError(f"config file not found: {path} (from {source})") from None
        return settings
    except OSError:
        pass  # read_text_file says what is wrong
    text = read_text_file(path, "config file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is not valid TOML: nested too deeply") from None
    _apply(settings, data, str(path))
    return settings
