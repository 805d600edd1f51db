"""One settings model in sections (run, router, cache, tools, ui, offline), frozen, read
from config.toml. Each field's metadata names its config key, how a value is read and what
it means: one loop validates a file with it, and the manual's config table (docs/config.md)
is made of it.
The file's keys stay flat (`max_cost_usd = 0.5`, `[tiers]`): sections organise the code.
Unknown keys and bad values are one line that names the key."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from tuiagent.errors import ConfigError, UsageError
from tuiagent.ledger import DEFAULT_LEASE_S, SCOPES, BudgetSpec, Window, check_url
from tuiagent.llm.endpoints import unbilled_entry_error
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


# --- how a config value is read --------------------------------------------------------
# A parser takes the TOML value, its config key and the file it came from, and returns the
# setting or raises a ConfigError of one line that names the key.
Parse = Callable[[object, str, str], Any]


def _bad(key: str, what: str, value: object) -> ConfigError:
    return ConfigError(f"config key {key!r} must be {what}, got {value!r}")


def _expect(cond: bool, key: str, what: str, value: object) -> None:
    if not cond:
        raise _bad(key, what, value)


def _checked(
    ok: Callable[[Any], bool], what: str, convert: Callable[[Any], Any] | None = None
) -> Parse:
    """A parser that accepts a value when `ok(value)`, as `convert(value)` if given."""

    def parse(value: object, key: str, source: str) -> Any:
        if not ok(value):
            raise _bad(key, what, value)
        return value if convert is None else convert(value)

    return parse


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def choice(options: tuple[str, ...], what: str | None = None) -> Parse:
    return _checked(lambda v: v in options, what or " | ".join(options))


def whole(what: str, ok: Callable[[int], bool]) -> Parse:
    """A whole number (not a bool, not 2.0) for which `ok` holds."""
    return _checked(lambda v: _is_whole(v) and ok(v), what)


def number(what: str, ok: Callable[[float], bool], convert: Callable[[Any], Any] = float) -> Parse:
    """A finite TOML int or float for which `ok` holds, as a float (or `convert` of it)."""
    return _checked(
        lambda v: _is_number(v) and (isinstance(v, int) or math.isfinite(v)) and ok(v),
        what,
        convert,
    )


def _money(value: object, key: str, source: str) -> Decimal:
    return parse_money(value, f"config key {key!r}")


def _expand(value: str) -> Path:
    return Path(value).expanduser()


_FLAG = _checked(lambda v: isinstance(v, bool), "true or false")
_TEXT = _checked(lambda v: isinstance(v, str), "a string")
_PATH = _checked(lambda v: isinstance(v, str) and bool(v), "a path", _expand)
_SECONDS = number("a number of seconds > 0, up to a day (86400)", lambda v: 0 < v <= 86400)
_POSITIVE = whole("a positive whole number", lambda v: v > 0)
_POSITIVE_UP_TO = whole(
    f"a positive whole number up to {MAX_WHOLE:,}", lambda v: 0 < v <= MAX_WHOLE
)


def _table(value: object, key: str, what: str) -> dict[str, Any]:
    _expect(isinstance(value, dict), key, what, value)
    assert isinstance(value, dict)
    return value


def _tiers(value: object, key: str, source: str) -> Mapping[str, str]:
    """`[tiers]`: a model per tier; a tier not given keeps its default model."""
    tiers = dict(DEFAULT_TIER_MODELS)
    for tier, model in _table(value, key, "a table").items():
        if tier not in TIERS:
            raise ConfigError(f"unknown config key {f'{key}.{tier}'!r} in {source}")
        _expect(isinstance(model, str) and bool(model), f"{key}.{tier}", "a model id", model)
        tiers[tier] = model
    return MappingProxyType(tiers)


def _prices(value: object, key: str, source: str) -> Mapping[str, Mapping[str, PriceValue]]:
    rates = _table(value, key, "a table of models")
    return MappingProxyType({model: _parse_price(model, r, source) for model, r in rates.items()})


def _keymap(value: object, key: str, source: str) -> Mapping[str, str]:
    """`[keymap]`: binding id -> keys. The ids are the app's commands (ui/commands.py): the
    app checks them, and the key names, as it starts."""
    keymap: dict[str, str] = {}
    for binding_id, keys in _table(value, key, "a table of binding ids").items():
        ok = isinstance(keys, str) and bool(keys.strip())
        _expect(ok, f"{key}.{binding_id}", "key names like 'f3' or 'ctrl+up,f3'", keys)
        keymap[binding_id] = keys.strip()
    return MappingProxyType(keymap)


@dataclass(frozen=True)
class McpServer:
    """An MCP server (config `[mcp_servers.NAME]`): a command started with stdio, or a
    streamable HTTP `url`. Its tools are offered as `mcp__NAME__TOOL`; each call asks first
    unless `allow` (headless: `--allow-mcp` is the approval)."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # added to the SDK's plain environment
    url: str | None = None
    allow: bool = False


MCP_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
MCP_KEYS = ("command", "args", "env", "url", "allow")


def _mcp_servers(value: object, key: str, source: str) -> tuple[McpServer, ...]:
    servers: list[McpServer] = []
    for name, table in _table(value, key, "a table of servers").items():
        at = f"{key}.{name}"
        _expect(bool(MCP_NAME.fullmatch(name)), at, "a name of letters, digits, _ and -", name)
        spec = _table(table, at, "a table with `command` or `url`")
        for unknown in set(spec) - set(MCP_KEYS):
            raise ConfigError(f"unknown config key {f'{at}.{unknown}'!r}")
        command, url = spec.get("command"), spec.get("url")
        _expect((command is None) != (url is None), at, "one of `command` or `url`", spec)
        if command is not None:
            _expect(
                isinstance(command, str) and bool(command), f"{at}.command", "a command", command
            )
        if url is not None:
            ok = isinstance(url, str) and re.match(r"https?://[^\s/]+", url) is not None
            _expect(ok, f"{at}.url", "an http(s) URL", url)
        args = spec.get("args", [])
        ok = isinstance(args, list) and all(isinstance(a, str) for a in args)
        _expect(ok, f"{at}.args", "an array of strings", args)
        env = spec.get("env", {})
        ok = isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
        _expect(ok, f"{at}.env", "a table of strings", env)
        allow = spec.get("allow", False)
        _expect(isinstance(allow, bool), f"{at}.allow", "true or false", allow)
        servers.append(McpServer(name, command, tuple(args), tuple(env.items()), url, allow))
    return tuple(servers)


def _rules(value: object, key: str, source: str) -> tuple[RouterRule, ...]:
    _expect(isinstance(value, list), key, "an array of tables ([[router_rules]])", value)
    assert isinstance(value, list)
    return tuple(_rule(rule, f"{key}[{i}]") for i, rule in enumerate(value))


@dataclass(frozen=True)
class Option:
    """What a settings field is to a user: its config key, how a value is read, what it means
    (the manual's config table is made of these), and how its default is shown there when
    the value itself would not say it."""

    key: str | None  # None: the field's own name
    parse: Parse
    help: str
    shown_default: str | None = None
    shown_key: str | None = None  # a table's key as written in the file, e.g. `[tiers]`


def option(
    *,
    parse: Parse,
    help: str,
    key: str | None = None,
    shown_default: str | None = None,
    shown_key: str | None = None,
) -> dict[str, Option]:
    """A settings field's metadata: `field(default=..., metadata=option(...))`."""
    return {"option": Option(key, parse, help, shown_default, shown_key)}


# --- the sections ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    """A run's limits, its prompt and log, the calls' retries and deadlines, long sessions."""

    max_cost_usd: Decimal = field(
        default=Decimal("1.00"), metadata=option(parse=_money, help="the run's spending cap")
    )
    max_turns: int = field(
        default=20,
        metadata=option(
            parse=_POSITIVE_UP_TO,
            help="most model calls per request (resets with each message)",
        ),
    )
    max_tokens: int = field(
        default=4096,
        metadata=option(parse=_POSITIVE_UP_TO, help="output limit per call"),
    )
    system_prompt: str = field(
        default=DEFAULT_SYSTEM_PROMPT,
        metadata=option(parse=_TEXT, help="the system prompt", shown_default="built in"),
    )
    system_prompt_file: Path | None = field(
        default=None,
        metadata=option(
            parse=_PATH,
            help="the system prompt from a file (instead of `system_prompt`)",
            shown_default="none",
        ),
    )
    log_dir: Path | None = field(
        default=None,
        metadata=option(parse=_PATH, help="where run logs go", shown_default="data dir `runs/`"),
    )
    max_retries: int = field(
        default=3,
        metadata=option(
            parse=whole(f"a whole number from 0 to {MAX_RETRIES}", lambda v: 0 <= v <= MAX_RETRIES),
            help="retries of failed calls per request (`--max-retries`)",
        ),
    )
    retry_max_wait_s: float = field(
        default=60.0,
        metadata=option(
            parse=number(
                f"a number of seconds from 0 to {MAX_RETRY_WAIT_S:g}",
                lambda v: 0 <= v <= MAX_RETRY_WAIT_S,
            ),
            help="the longest wait before a retry, even if `retry-after` asks more",
        ),
    )
    # Deadlines of one attempt: the whole call, and a stream with no content or usage.
    call_timeout_s: float = field(
        default=600.0,
        metadata=option(
            parse=_SECONDS,
            help="the longest one attempt may take; past it the call is a transient failure "
            "(retried, priced, logged)",
        ),
    )
    stream_idle_timeout_s: float = field(
        default=90.0,
        metadata=option(
            parse=_SECONDS,
            help="the longest a stream may go without content or usage (pings do not count); "
            "past it, the same",
        ),
    )
    min_useful_tokens: int = field(
        default=256,
        metadata=option(
            parse=_POSITIVE_UP_TO,
            help="below this much room for output, a call is not sent",
        ),
    )
    hold_wait_s: float = field(
        default=30.0,
        metadata=option(
            parse=_SECONDS,
            help="the longest a call that does not fit only because of calls in flight waits "
            "for them to settle before it is refused",
        ),
    )
    # Long sessions (agent/context.py): old tool results cleared when it pays, the
    # conversation compacted into a summary at this fraction of the context window.
    context_management: bool = field(
        default=True,
        metadata=option(
            parse=_FLAG, help="clear old tool results and compact (see [Context](context.md))"
        ),
    )
    compact_at: float = field(
        default=0.8,
        metadata=option(
            parse=number(
                "a fraction of the context window above 0 and at most 1", lambda v: 0 < v <= 1
            ),
            help="compact when a request reaches this share of the window",
        ),
    )
    compact_early_at: float = field(
        default=0.25,
        metadata=option(
            parse=number(
                "a fraction of the context window above 0 and at most 1", lambda v: 0 < v <= 1
            ),
            help="before `compact_at`, compact only a history of at least this share of the "
            "window, and only when it pays",
        ),
    )
    compact_min_saving_usd: Decimal = field(
        default=Decimal("0.001"),
        metadata=option(
            parse=_money,
            help="before `compact_at`, compact only when the summary saves at least this "
            "much (USD) on each later call",
        ),
    )
    context_keep_turns: int = field(
        default=2,
        metadata=option(
            parse=_POSITIVE,
            help="tool results of the last N calls are never cleared",
        ),
    )
    context_clear_min_tokens: int = field(
        default=200,
        metadata=option(
            parse=whole(
                f"a whole number of tokens from 0 to {MAX_WHOLE:,}", lambda v: 0 <= v <= MAX_WHOLE
            ),
            help="a tool result smaller than this is never cleared (it saves little on each "
            "call, and recalling it costs a call)",
        ),
    )
    context_window: int | None = field(
        default=None,
        metadata=option(
            parse=_POSITIVE,
            help="hold the window lower (tokens), e.g. for a gateway",
            shown_default="the model's",
        ),
    )

    def resolved_system_prompt(self) -> str:
        if self.system_prompt_file is None:
            return self.system_prompt
        return read_text_file(self.system_prompt_file, "system_prompt_file")


@dataclass(frozen=True)
class RouterSettings:
    """Which model answers: the tiers and their prices, the pinned tier, the router's rules."""

    tier: str = field(
        default="auto",
        metadata=option(parse=choice(TIER_CHOICES), help="`auto`, `fast`, `balanced` or `deep`"),
    )
    tiers: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType(dict(DEFAULT_TIER_MODELS)),
        metadata=option(
            parse=_tiers,
            help="model per tier",
            shown_key="`[tiers]`",
            shown_default="see [Models](models.md)",
        ),
    )
    prices: Mapping[str, Mapping[str, PriceValue]] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata=option(
            parse=_prices,
            help="a hand-set price for a model genai-prices does not know",
            shown_key='`[prices."MODEL"]`',
            shown_default="-",
        ),
    )
    # With less than this fraction of the cap left, auto routing steps down a tier.
    budget_floor: Decimal = field(
        default=Decimal("0.2"),
        metadata=option(
            key="router_budget_floor",
            parse=number(
                "a fraction of the cap from 0 to below 1 (0.2 = 20%)",
                lambda v: 0 <= v < 1,
                lambda v: Decimal(str(v)),
            ),
            help="auto routing steps down a tier with less than this fraction of the cap left",
        ),
    )
    classifier: bool = field(
        default=False,
        metadata=option(
            key="router_classifier",
            parse=_FLAG,
            help="ask a fast-tier classifier call for each request's tier (see [Routing](routing.md))",
        ),
    )
    # First match wins (`tuiagent replay --suggest` writes some to copy).
    rules: tuple[RouterRule, ...] = field(
        default=(),
        metadata=option(
            key="router_rules",
            parse=_rules,
            help="router rules, first match wins: `tier` (required) and one or more conditions, "
            "all of which must hold: `when_words` (any of these words in the user's request, "
            "whole words, any case, file names aside), `when_tools` (every tool called so far "
            "for the request is one of these, and one was), `max_input_tokens` (the request's "
            "estimated size is at most this)",
            shown_key="`[[router_rules]]`",
            shown_default="none",
        ),
    )

    def model_for(self, tier: str) -> str:
        return self.tiers[tier]

    def tier_of(self, model: str) -> str | None:
        """The tier a model is configured for, if any."""
        return next((t for t in TIERS if self.tiers[t] == model), None)


@dataclass(frozen=True)
class CacheSettings:
    """Prompt caching: breakpoints on the stable prefix and the end of the conversation."""

    enabled: bool = field(
        default=True,
        metadata=option(
            key="cache",
            parse=_FLAG,
            help="place prompt-cache breakpoints (`--no-cache` turns it off)",
        ),
    )
    ttl: str = field(
        default="5m",
        metadata=option(
            key="cache_ttl",
            parse=choice(("5m", "1h"), '"5m" or "1h"'),
            help='`"5m"` or `"1h"` cache entries',
        ),
    )
    # Refresh a warm cache when idle near its expiry, when that costs less than a miss.
    keep_warm: bool = field(
        default=False,
        metadata=option(parse=_FLAG, help="refresh the cache when idle near expiry, when it pays"),
    )


@dataclass(frozen=True)
class ToolSettings:
    """The agent's tools: which are offered, and how large results are compressed."""

    # Tool results: compressed over this many tokens, originals kept for expand_result.
    compress: bool = field(
        default=True,
        metadata=option(
            parse=_FLAG, help="compress large tool results (`--no-compress` turns it off)"
        ),
    )
    compress_over_tokens: int = field(
        default=1000,
        metadata=option(
            parse=whole(
                f"a whole number from 200 to {MAX_WHOLE:,}", lambda v: 200 <= v <= MAX_WHOLE
            ),
            help="results over this size are compressed to it (at least 200)",
        ),
    )
    summarize_results: bool = field(
        default=False,
        metadata=option(parse=_FLAG, help="summarise large results with a fast-tier call instead"),
    )
    allow_commands: bool = field(
        default=False,
        metadata=option(parse=_FLAG, help="offer `run_command` (asks before each command)"),
    )
    allow_fetch: bool = field(default=False, metadata=option(parse=_FLAG, help="offer `fetch_url`"))
    mcp_servers: tuple[McpServer, ...] = field(
        default=(),
        metadata=option(
            parse=_mcp_servers,
            help="MCP servers: `command` (and `args`, `env`) or `url`; `allow = true` runs "
            "their tools without asking (see [MCP servers](mcp.md))",
            shown_key="`[mcp_servers.NAME]`",
            shown_default="none",
        ),
    )
    mcp_defer_above: int = field(
        default=10_000,
        metadata=option(
            parse=whole(
                f"a whole number of tokens from 0 to {MAX_WHOLE:,}", lambda v: 0 <= v <= MAX_WHOLE
            ),
            help="MCP tool definitions of at least this many tokens in all go through the "
            "API's tool search when that pays (see [MCP servers](mcp.md#tool-search))",
        ),
    )
    allow_edits: bool = field(
        default=False,
        metadata=option(
            parse=_FLAG,
            help="headless: offer `write_file` and `edit_file` (`--allow-edits`; the app asks)",
        ),
    )
    allow_mcp: bool = field(
        default=False,
        metadata=option(parse=_FLAG, help="headless: run MCP tools without asking (`--allow-mcp`)"),
    )
    command_timeout_s: float = field(
        default=30.0,
        metadata=option(
            parse=number("a number of seconds > 0, up to a day (86400)", lambda v: 0 < v <= 86400),
            help="time limit of a command or a fetch",
        ),
    )
    subagents: bool = field(
        default=True, metadata=option(parse=_FLAG, help="offer the `delegate` tool (sub-agents)")
    )
    max_parallel_agents: int = field(
        default=4,
        metadata=option(
            parse=_POSITIVE_UP_TO,
            help="sub-agents working at once (`--max-parallel-agents`)",
        ),
    )


@dataclass(frozen=True)
class UiSettings:
    """The app: how much F2/F3 move the cap, and keys remapped by binding id."""

    budget_step_usd: Decimal = field(
        default=Decimal("0.10"),
        metadata=option(parse=_money, help="how much F2/F3 move the cap in the app"),
    )
    keymap: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata=option(
            parse=_keymap,
            help="the app's keys by binding id",
            shown_key="`[keymap]`",
            shown_default="-",
        ),
    )


@dataclass(frozen=True)
class OfflineSettings:
    """The built-in offline model."""

    tokens_per_second: float = field(
        default=0.0,
        metadata=option(
            key="offline_tokens_per_second",
            parse=number("a number >= 0", lambda v: 0 <= v <= 1e9),
            help="pace of the offline model's stream, every output token (text, thinking, tool "
            "input) alike (0: as fast as it can; in the app 80)",
        ),
    )


def _strings(check: Callable[[str], str | None], what: str) -> Parse:
    """An array of strings, each of which `check` finds nothing wrong with."""

    def parse(value: object, key: str, source: str) -> tuple[str, ...]:
        _expect(isinstance(value, list), key, what, value)
        assert isinstance(value, list)
        for item in value:
            _expect(isinstance(item, str) and bool(item), key, what, item)
            problem = check(item)
            if problem:
                raise ConfigError(f"config key {key!r}: {item!r} {problem}")
        return tuple(value)

    return parse


def _origin_error(origin: str) -> str | None:
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
        return "must be an origin: scheme://host[:port], no path"
    return None


def _host_error(host: str) -> str | None:
    if any(c in host for c in "/@ ") or not host.strip("[]"):
        return "must be a host name or address, no scheme, path or port"
    return None


@dataclass(frozen=True)
class ProxySettings:
    """`tuiagent proxy`: what it lets through besides what it meters."""

    unbilled_paths: tuple[str, ...] = field(
        default=(),
        metadata=option(
            key="proxy_unbilled_paths",
            parse=_strings(unbilled_entry_error, 'an array of paths like "/v1/files"'),
            help="paths that bill nothing, which the proxy passes through unmetered for any "
            "method (`/v1/files/*` covers the paths under it); a POST to any other path it "
            "does not meter is refused",
            shown_default="none",
        ),
    )
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata=option(
            key="proxy_allowed_origins",
            parse=_strings(_origin_error, 'an array of origins like "http://localhost:3000"'),
            help="web pages (by `Origin`) the proxy serves; a request with any other "
            "`Origin` is refused",
            shown_default="none",
        ),
    )
    allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata=option(
            key="proxy_allowed_hosts",
            parse=_strings(_host_error, 'an array of host names like "proxy.lan"'),
            help="`Host` names (or addresses) the proxy answers besides its own address and "
            "`localhost`: with `--host 0.0.0.0`, the address clients use",
            shown_default="none",
        ),
    )


BUDGET_KEYS = ("scope", "window", "max_cost_usd", "timezone", "match", "name")


def _budget(data: object, name: str) -> BudgetSpec:
    """One `[[budgets]]` table."""
    _expect(isinstance(data, dict), name, "a table", data)
    assert isinstance(data, dict)
    for key in data:
        if key not in BUDGET_KEYS:
            raise ConfigError(
                f"unknown config key {f'{name}.{key}'!r} (known: {', '.join(BUDGET_KEYS)})"
            )
    for required in ("scope", "window", "max_cost_usd"):
        if required not in data:
            raise ConfigError(f"config key '{name}.{required}' is missing")
    scope = data["scope"]
    _expect(scope in SCOPES, f"{name}.scope", " | ".join(SCOPES), scope)
    window, tz = data["window"], data.get("timezone", "UTC")
    _expect(isinstance(tz, str), f"{name}.timezone", "an IANA time zone like 'Europe/Paris'", tz)
    _expect(isinstance(window, str), f"{name}.window", "a string", window)
    try:
        parsed = Window.parse(window, tz)
    except ValueError as exc:
        if "time zone" in str(exc):
            raise ConfigError(f"config key '{name}.timezone': {exc}") from None
        raise ConfigError(f"config key '{name}.window' must be {exc}") from None
    if "timezone" in data and parsed.kind not in ("day", "week", "month"):
        raise ConfigError(
            f"config key '{name}.timezone' applies to day, week and month windows, not {window!r}"
        )
    cap = parse_money(data["max_cost_usd"], f"config key '{name}.max_cost_usd'")
    texts = {}
    for key in ("match", "name"):
        value = data.get(key)
        ok = value is None or (isinstance(value, str) and value.strip() != "")
        _expect(ok, f"{name}.{key}", "a non-empty string", value)
        texts[key] = None if value is None else value.strip()
    if texts["match"] is not None and scope == "global":
        raise ConfigError(f"config key '{name}.match' does not apply to the global scope")
    return BudgetSpec(scope, parsed, cap, texts["match"], texts["name"] or "")


def _budgets(value: object, key: str, source: str) -> tuple[BudgetSpec, ...]:
    _expect(isinstance(value, list), key, "an array of tables ([[budgets]])", value)
    assert isinstance(value, list)
    specs = tuple(_budget(b, f"{key}[{i}]") for i, b in enumerate(value))
    titles = [s.title for s in specs]
    for i, title in enumerate(titles):
        if title in titles[:i]:
            raise ConfigError(
                f"config key '{key}[{i}]': two budgets are named {title!r} (give one a `name`)"
            )
    return specs


def budget_flag(text: str) -> BudgetSpec:
    """A budget from the command line: `SCOPE[=MATCH]:WINDOW:USD[:TIMEZONE]`, e.g.
    `global:day:20`, `session:run:0.20`, `model=claude-opus-4-1:5h:5`,
    `global:day:20:Europe/Paris`. UsageError (one line) if it is not one."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise UsageError(
            f"--budget must be SCOPE[=MATCH]:WINDOW:USD[:TIMEZONE] (like global:day:20 or "
            f"session:run:0.20), got {text!r}"
        )
    scope, _, match = parts[0].partition("=")
    table: dict[str, Any] = {"scope": scope, "window": parts[1], "max_cost_usd": parts[2]}
    if match:
        table["match"] = match
    if len(parts) == 4:
        table["timezone"] = parts[3]
    try:
        return _budget(table, "budget")
    except ConfigError as exc:  # "config key 'budget.scope' must be ..." -> "--budget X: scope ..."
        why = re.sub(r"^config key 'budget\.(\w+)'(:?) ", r"\1\2 ", str(exc))
        raise UsageError(f"--budget {text}: {why}") from None


def with_ledger_flags(settings: Settings, ledger: str | None, budgets: list[str]) -> Settings:
    """`--ledger URL` and `--budget ...` over the config's (a flag's budget replaces the
    config's of the same title)."""
    changes: dict[str, Any] = {}
    if ledger is not None:
        try:
            changes["ledger_url"] = _ledger_url(ledger, "--ledger", "")
        except ConfigError as exc:
            raise UsageError(str(exc).replace("config key '--ledger'", "--ledger")) from None
    if budgets:
        flags = [budget_flag(b) for b in budgets]
        titles = {f.title for f in flags}
        kept = [b for b in settings.ledger.budgets if b.title not in titles]
        changes["budgets"] = (*kept, *{f.title: f for f in flags}.values())
    return settings.with_changes(**changes) if changes else settings


def _ledger_url(value: object, key: str, source: str) -> str:
    _expect(isinstance(value, str), key, '"", "sqlite:////PATH" or "postgresql://..."', value)
    assert isinstance(value, str)
    try:
        return check_url(value.strip())
    except ValueError as exc:
        raise _bad(key, str(exc), value) from None


@dataclass(frozen=True)
class LedgerSettings:
    """Where every process's holds are kept, and the budgets stacked on them."""

    url: str = field(
        default="",
        metadata=option(
            key="ledger_url",
            parse=_ledger_url,
            help="the ledger every tuiagent process holds against: SQLite in the data dir, "
            "or `\"postgresql://...\"` for a team (`pip install 'tuiagent[postgres]'`)",
            shown_default="SQLite in the data dir",
        ),
    )
    lease_s: float = field(
        default=DEFAULT_LEASE_S,
        metadata=option(
            key="ledger_lease_s",
            parse=number("a number of seconds from 1 to 3600", lambda v: 1 <= v <= 3600),
            help="a process that has not renewed its lease in this long is dead: its holds are "
            "settled at their worst case",
        ),
    )
    budgets: tuple[BudgetSpec, ...] = field(
        default=(),
        metadata=option(
            key="budgets",
            parse=_budgets,
            help="budgets stacked on the run's cap, each `scope` (global, session, agent, key, "
            "user, client, model, tier) `window` (run, day, week, month, or rolling like "
            '`"5h"`) `max_cost_usd`, and optional `timezone` (calendar windows; UTC), `match` '
            "(one value of the scope), `name` (see [Budgets](budgets.md))",
            shown_key="`[[budgets]]`",
            shown_default="none",
        ),
    )


@dataclass(frozen=True)
class Settings:
    """Everything a run can be told, in sections. Defaults first, then config.toml (flat keys,
    as docs/config.md lists them), then flags; a change is a copy (`with_changes`)."""

    run: RunSettings = field(default_factory=RunSettings)
    router: RouterSettings = field(default_factory=RouterSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    tools: ToolSettings = field(default_factory=ToolSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    offline: OfflineSettings = field(default_factory=OfflineSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with settings changed, named by their config keys (`max_cost_usd=...`,
        `cache=False`), as config.toml names them."""
        by_section: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            setting = SETTINGS_BY_KEY.get(key)
            if setting is None:
                raise TypeError(f"no setting has the config key {key!r}")
            by_section.setdefault(setting.section, {})[setting.name] = value
        sections = {
            name: dataclasses.replace(getattr(self, name), **fields)
            for name, fields in by_section.items()
        }
        return dataclasses.replace(self, **sections)


@dataclass(frozen=True)
class Setting:
    """One settings field as config.toml knows it."""

    key: str
    section: str  # the Settings field that holds it
    name: str  # its field in that section
    option: Option
    default: Any


def _settings_by_key() -> dict[str, Setting]:
    found: dict[str, Setting] = {}
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        values = getattr(defaults, section.name)
        for f in dataclasses.fields(values):
            opt = f.metadata["option"]
            key = opt.key or f.name
            assert key not in found, f"two settings have the config key {key!r}"
            found[key] = Setting(key, section.name, f.name, opt, getattr(values, f.name))
    return found


SETTINGS_BY_KEY = _settings_by_key()


def _shown(value: object) -> str:
    """A default as config.toml would write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_table() -> str:
    """The table of config keys in docs/config.md, made from the settings' metadata."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for s in SETTINGS_BY_KEY.values():
        shown_key = s.option.shown_key or f"`{s.key}`"
        default = s.option.shown_default or f"`{_shown(s.default)}`"
        rows.append(f"| {shown_key} | {default} | {s.option.help} |")
    return "\n".join(rows)


def settings_from_toml(data: dict[str, Any], source: str) -> Settings:
    """Settings from a parsed config.toml: each key read by its setting's parser."""
    changes = {}
    for key, value in data.items():
        setting = SETTINGS_BY_KEY.get(key)
        if setting is None:
            raise ConfigError(f"unknown config key {key!r} in {source}")
        changes[key] = setting.option.parse(value, key, source)
    return Settings().with_changes(**changes)


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
            raise ConfigError(
                f"unknown config key {f'{name}.{key}'!r} (known: {', '.join(RULE_KEYS)})"
            )
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
    source = "--config" if path is not None else CONFIG_ENV if os.environ.get(CONFIG_ENV) else ""
    path = path or default_config_file()
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if source:
            raise ConfigError(f"config file not found: {path} (from {source})") from None
        return Settings()
    except OSError:
        pass  # read_text_file says what is wrong
    return settings_from_toml(read_toml(path, "config file"), str(path))


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A small TOML file (read_text_file's rules), or a ConfigError naming `what`."""
    text = read_text_file(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} is not valid TOML: nested too deeply") from None
