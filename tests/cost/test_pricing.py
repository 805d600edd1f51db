"""Prices against Anthropic's published rates, written from the published tables (not from
genai-prices): every model the tiers can be set to that the pricing page lists, long-context
and 1-hour cases, server tools, compaction, and hand-set prices.

Sources (USD per million tokens; Anthropic's pricing page, platform.claude.com/docs/en/
about-claude/pricing, as quoted by the tools that track it):
- Haiku 5.5: prompt (input + cache reads + writes) up to 100K: $0.10 in, $0.50 out, 5m write
  $0.125, 1h write $0.20, read $0.01; over 100K, every token of the request: $0.50, $2.50,
  $0.625, $1.00, $0.05.
- Sonnet 5.5: $2, $10, $2.50, $4, read $0.10 (cut from $0.20 on 2026-10-07).
- Fable 5.2: $8, $40, $10, $16, read $0.20.
- Fable 5 / Mythos 5: $10, $50, read 0.1x; Fable 5.1 / Mythos 5.1: read 0.025x; Opus 5.5:
  $4, $20, read 0.05x; Opus 4.5 to 5: $5, $25; Sonnet 5: $2, $10; Sonnet 4.6: $3, $15 with
  no long-context surcharge; Haiku 4.5: $1, $5; 5m write 1.25x, 1h write 2x, read 0.1x input
  unless said.
- Sonnet 4 and 4.5: $3, $15, $3.75, $6, $0.30; over 200K input tokens $6 in, $22.50 out
  (cache prices keep their multipliers of the long-context input rate).
- Web search: $10 per 1,000 searches.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tuiagent.config import load_settings
from tuiagent.cost.budget import Bounds, plan_reservation
from tuiagent.cost.pricing import SERVER_LOOP_ITERATIONS, Pricer, UnpricedModelError
from tuiagent.errors import ConfigError
from tuiagent.llm.tokens import FETCH_FRAME_TOKENS, TokenUsage

D = Decimal


def rates(inp: str, out: str, read: str | None = None) -> tuple[Decimal, ...]:
    """(input, output, 5m write, 1h write, read) from input and output by the multipliers."""
    i = D(inp)
    return (i, D(out), i * D("1.25"), i * 2, D(read) if read is not None else i * D("0.1"))


PUBLISHED: dict[str, tuple[Decimal, ...]] = {
    # the default tiers
    "claude-haiku-5-5": (D("0.10"), D("0.50"), D("0.125"), D("0.20"), D("0.01")),
    "claude-sonnet-5-5": (D(2), D(10), D("2.50"), D(4), D("0.10")),
    "claude-fable-5-2": (D(8), D(40), D(10), D(16), D("0.20")),
    # the other models the SDK lists that a tier can be set to (Mythos 5 and 5.1, for
    # approved organisations only, are not in genai-prices: they stop a run before any call,
    # naming the config key that prices them, see the last test)
    "claude-fable-5-1": rates("10", "50", "0.25"),
    "claude-fable-5": rates("10", "50"),
    "claude-opus-5-5": rates("4", "20", "0.20"),
    "claude-opus-5": rates("5", "25"),
    "claude-opus-4-8": rates("5", "25"),
    "claude-opus-4-7": rates("5", "25"),
    "claude-opus-4-6": rates("5", "25"),
    "claude-opus-4-5": rates("5", "25"),
    "claude-sonnet-5": rates("2", "10"),
    "claude-sonnet-4-6": rates("3", "15"),
    "claude-haiku-4-5": rates("1", "5"),
    "claude-haiku-4-5-20251001": rates("1", "5"),
    "claude-sonnet-4-5": rates("3", "15"),
    "claude-sonnet-4-20250514": rates("3", "15"),
}

# Long context: (threshold, rates above it) as published.
LONG: dict[str, tuple[int, tuple[Decimal, ...]]] = {
    "claude-haiku-5-5": (100_000, (D("0.50"), D("2.50"), D("0.625"), D(1), D("0.05"))),
    "claude-sonnet-4-20250514": (200_000, (D(6), D("22.5"), D("7.5"), D(12), D("0.6"))),
    "claude-sonnet-4-5": (200_000, (D(6), D("22.5"), D("7.5"), D(12), D("0.6"))),
}


def usage(uncached: int, out: int, w5: int = 0, w1: int = 0, read: int = 0) -> TokenUsage:
    return TokenUsage(
        input_tokens=uncached,
        output_tokens=out,
        cache_read_input_tokens=read,
        cache_creation_input_tokens=w5 + w1,
        cache_creation_5m_input_tokens=w5,
        cache_creation_1h_input_tokens=w1,
    )


def expected(r: tuple[Decimal, ...], u: TokenUsage) -> Decimal:
    i, o, w5, w1, rd = r
    tokens = (
        i * u.input_tokens
        + o * u.output_tokens
        + w5 * u.cache_creation_5m_input_tokens
        + w1 * u.cache_creation_1h_input_tokens
        + rd * u.cache_read_input_tokens
    )
    return tokens / 1_000_000


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_every_kind_of_token_at_the_published_rate(model: str) -> None:
    u = usage(10_000, 2_000, w5=3_000, w1=4_000, read=20_000)  # 37K input: below every tier
    cost = Pricer().price(model, u)
    assert cost.total == expected(PUBLISHED[model], u)
    _, _, w5, w1, rd = PUBLISHED[model]
    assert cost.cache_write == (w5 * 3_000 + w1 * 4_000) / 1_000_000  # 1h at its own rate
    assert cost.cache_read == rd * 20_000 / 1_000_000


@pytest.mark.parametrize("model", list(LONG))
def test_long_context_rate_above_the_threshold(model: str) -> None:
    threshold, long_rates = LONG[model]
    at = usage(threshold - 10_000, 1_000, read=10_000)  # exactly at the threshold: base
    above = usage(threshold - 10_000, 1_000, w1=5_000, read=10_001)  # over it: all tokens
    pricer = Pricer()
    assert pricer.price(model, at).total == expected(PUBLISHED[model], at)
    assert pricer.price(model, above).total == expected(long_rates, above)


def test_sonnet_4_long_context_costs_twice_the_base_input() -> None:
    # the case of the issue: 250K input on claude-sonnet-4-20250514
    cost = Pricer().price("claude-sonnet-4-20250514", usage(250_000, 2_000))
    assert cost.input == D("1.5") and cost.output == D("0.045")


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "claude-opus-4-6", "claude-sonnet-5-5"])
def test_no_long_context_surcharge_where_anthropic_has_none(model: str) -> None:
    u = usage(300_000, 1_000)
    assert Pricer().price(model, u).total == expected(PUBLISHED[model], u)


def test_web_searches_at_ten_dollars_per_thousand() -> None:
    u = TokenUsage.from_api(
        {"input_tokens": 1_000, "output_tokens": 100, "server_tool_use": {"web_search_requests": 3}}
    )
    assert u.web_search_requests == 3 and u.as_record()["web_search_requests"] == 3
    cost = Pricer().price("claude-sonnet-5-5", u)
    assert cost.server_tools == D("0.03")
    assert cost.total == D("0.03") + expected(PUBLISHED["claude-sonnet-5-5"], u)
    assert cost.as_record()["server_tools"] == 0.03


def test_server_tool_worst_case_reserves_for_offered_searches() -> None:
    pricer = Pricer()
    plain = {"max_tokens": 1000, "tools": [{"name": "read_file", "input_schema": {}}]}
    assert pricer.server_tool_worst_case("claude-sonnet-5-5", plain) == 0
    capped = {"max_tokens": 1000, "tools": [{"type": "web_search_20250305", "max_uses": 5}]}
    assert pricer.server_tool_worst_case("claude-sonnet-5-5", capped) == D("0.05")
    # without max_uses: as many as max_tokens of output can ask for (5 tokens a call)
    open_ended = {"max_tokens": 1000, "tools": [{"type": "web_search_20250305"}]}
    assert pricer.server_tool_worst_case("claude-sonnet-5-5", open_ended) == D(2)


def test_compaction_passes_are_priced_as_one_request() -> None:
    # The documentation does not say whether Haiku 5.5's 100K tier is decided per pass or per
    # request: the conservative reading, a 90K and a 60K pass are one request of 150K, all of
    # it above the tier (pass by pass would be two requests below it).
    u = TokenUsage.from_api(
        {
            "input_tokens": 60_000,
            "output_tokens": 500,
            "iterations": [
                {"type": "compaction", "input_tokens": 90_000, "output_tokens": 1_000},
                {"type": "message", "input_tokens": 60_000, "output_tokens": 500},
            ],
        }
    )
    assert u.input_tokens == 150_000 and u.output_tokens == 1_500
    base = PUBLISHED["claude-haiku-5-5"]
    by_pass = expected(base, usage(90_000, 1_000)) + expected(base, usage(60_000, 500))
    pricer = Pricer()
    one = pricer.price("claude-haiku-5-5", usage(150_000, 1_500)).total
    assert pricer.price("claude-haiku-5-5", u).total == one > by_pass
    assert pricer.without_cache("claude-haiku-5-5", u) == one  # nothing cached here


def test_hand_set_price_derives_cache_prices_by_anthropics_multipliers(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[prices."my-model"]\ninput_mtok = 4\noutput_mtok = 20\n')
    pricer = Pricer(load_settings(cfg).router.prices)
    u = usage(1_000, 1_000, w5=1_000, w1=1_000, read=1_000)
    assert pricer.price("my-model", u).total == expected(rates("4", "20"), u)
    assert pricer.notices and "cache_write_1h_mtok" in pricer.notices[0]


def test_hand_set_tiers_in_genai_prices_shape(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[prices."gateway-sonnet"]\n'
        "input_mtok = { base = 3, tiers = [{ start = 200000, price = 6 }] }\n"
        "output_mtok = { base = 15, tiers = [{ start = 200000, price = 22.5 }] }\n"
        "cache_read_mtok = 0.3\n"
        "cache_write_mtok = 3.75\n"
        "cache_write_1h_mtok = 6\n"
    )
    pricer = Pricer(load_settings(cfg).router.prices)
    assert not pricer.notices
    small, big = usage(100_000, 1_000, w1=1_000), usage(250_000, 1_000)
    assert pricer.price("gateway-sonnet", small).total == expected(rates("3", "15"), small)
    long_in_out = (D(6), D("22.5"), D("3.75"), D(6), D("0.3"))  # flat keys stay flat
    assert pricer.price("gateway-sonnet", big).total == expected(long_in_out, big)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("input_mtok = 1\n", "prices.m.output_mtok' is missing"),
        ("input_mtok = 1\noutput_mtok = 2\ncache_write_1m_mtok = 3\n", "cache_write_1h_mtok"),
        ("input_mtok = -1\noutput_mtok = 2\n", "a number >= 0"),
        ("input_mtok = { base = 1, tier = [] }\noutput_mtok = 2\n", "tiers"),
        (
            "input_mtok = { base = 1, tiers = [{ start = 0, price = 2 }] }\noutput_mtok = 2\n",
            "positive whole number",
        ),
    ],
)
def test_bad_hand_set_prices_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[prices."m"]\n' + toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg)


@pytest.mark.parametrize("model", ["claude-nonexistent-9", "claude-mythos-5-1"])
def test_the_unpriced_error_names_every_key(model: str) -> None:
    with pytest.raises(UnpricedModelError, match="cache_write_1h_mtok") as info:
        Pricer().ensure_priced(model)
    assert f'[prices."{model}"]' in str(info.value)


def test_streamed_server_tool_counts_come_from_message_delta() -> None:
    start = TokenUsage.from_api({"input_tokens": 500, "output_tokens": 1})
    final = start.with_delta(
        {
            "output_tokens": 80,
            "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 1},
        }
    )
    assert (final.web_search_requests, final.web_fetch_requests) == (2, 1)
    assert final.with_delta({"output_tokens": 90}).web_search_requests == 2  # cumulative
    assert Pricer().price("claude-haiku-5-5", final).server_tools == D("0.02")


def test_a_reservation_holds_the_searches_a_request_offers() -> None:
    """plan_reservation (the agent's metered call and the proxy) reserves the server tools'
    worst case on top of the tokens: each search's fee, and a pass of the server's loop per
    search (its results, which nothing bounds, read back as input: up to the whole window).
    A request whose searches do not fit is not sent, and an open-ended search lowers
    max_tokens until output and searches fit together."""
    pricer, model = Pricer(), "claude-sonnet-5-5"
    base: dict[str, Any] = {
        "model": model,
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "find it"}],
    }
    window = Bounds.of(model).window
    per_pass = pricer.rates(model, window).input * window
    tokens_only = plan_reservation(pricer, model, base, 100, "count_tokens", D(1), 256)
    assert tokens_only is not None
    capped = {**base, "tools": [{"type": "web_search_20250305", "max_uses": 5}]}
    held = plan_reservation(pricer, model, capped, 100, "count_tokens", D(100), 256)
    assert held is not None
    assert held.worst_case_usd == tokens_only.worst_case_usd + D("0.05") + 5 * per_pass
    tight = held.worst_case_usd - D("0.01")  # the tokens and the passes fit, a search does not
    assert plan_reservation(pricer, model, base, 100, "count_tokens", tight, 256) is not None
    assert plan_reservation(pricer, model, capped, 100, "count_tokens", tight, 256) is None
    open_ended = {**base, "tools": [{"type": "web_search_20250305"}]}
    passes = SERVER_LOOP_ITERATIONS * per_pass
    room = passes + D(1)  # 1000 tokens could ask for 200 searches ($2): max_tokens comes down
    res = plan_reservation(pricer, model, open_ended, 100, "count_tokens", room, 256)
    assert res is not None and 256 <= res.max_tokens < 1000
    sent = {**open_ended, "max_tokens": res.max_tokens}
    searches = pricer.server_tool_worst_case(model, sent)
    assert searches > 0 and res.worst_case_usd <= room
    assert (
        res.worst_case_usd >= passes + searches + pricer.rates(model, 100).output * res.max_tokens
    )
    assert plan_reservation(pricer, model, open_ended, 100, "count_tokens", passes, 256) is None


@pytest.mark.parametrize(
    ("tools", "mcp", "passes", "results"),
    [
        # A fetch with both limits: its pages at their largest, one pass per fetch.
        (
            [{"type": "web_fetch_20250910", "max_uses": 2, "max_content_tokens": 5000}],
            False,
            2,
            2 * (5000 + FETCH_FRAME_TOKENS),
        ),
        # No max_content_tokens, no max_uses, code's output, an MCP server: only the window.
        ([{"type": "web_fetch_20250910", "max_uses": 2}], False, 2, None),
        (
            [{"type": "web_fetch_20260209", "max_content_tokens": 5000}],
            False,
            SERVER_LOOP_ITERATIONS,
            None,
        ),
        (
            [{"type": "web_search_20260209", "max_uses": 3}, {"type": "code_execution_20250825"}],
            False,
            SERVER_LOOP_ITERATIONS,
            None,
        ),
        ([{"type": "mcp_toolset", "mcp_server_name": "x"}], False, SERVER_LOOP_ITERATIONS, None),
        ([], True, SERVER_LOOP_ITERATIONS, None),
    ],
)
def test_the_results_a_server_tool_reads_back_are_held_pass_by_pass(
    tools: list[dict[str, Any]], mcp: bool, passes: int, results: int | None
) -> None:
    """Web fetch, web search, code execution and an MCP server's tools run inside the
    request: each call's result is read back as input on one more pass of the server's
    loop. Each pass is held as reading the input, max_tokens and every result at its largest
    (a fetched page's `max_content_tokens`); where nothing bounds a result, the model's
    whole window."""
    pricer, model = Pricer(), "claude-sonnet-5-5"
    base: dict[str, Any] = {
        "model": model,
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "go"}],
    }
    body = {
        **base,
        "tools": tools,
        **({"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]} if mcp else {}),
    }
    fees = pricer.server_tool_worst_case(model, body)
    plain = plan_reservation(pricer, model, base, 100, "count_tokens", D(1000), 256)
    held = plan_reservation(pricer, model, body, 100, "count_tokens", D(1000), 256)
    assert plain is not None and held is not None and held.max_tokens == 1000
    per_pass = Bounds.of(model).window if results is None else 100 + 1000 + results
    rate = pricer.rates(model, per_pass).input
    assert held.worst_case_usd - plain.worst_case_usd == fees + rate * passes * per_pass


@pytest.mark.parametrize(
    ("asks", "input_tokens", "extra"),
    [
        (
            {
                "context_management": {
                    "edits": [
                        {
                            "type": "compact_20260112",
                            "trigger": {"type": "input_tokens", "value": 50_000},
                        }
                    ]
                }
            },
            60_000,
            True,
        ),
        (
            {
                "context_management": {
                    "edits": [
                        {
                            "type": "compact_20260112",
                            "trigger": {"type": "input_tokens", "value": 50_000},
                        }
                    ]
                }
            },
            40_000,
            False,
        ),
        (
            {"context_management": {"edits": [{"type": "compact_20260112"}]}},
            140_000,
            False,
        ),  # default 150,000
        ({"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}}, 400_000, False),
        ({"compaction": {"type": "auto"}}, 1_000, True),  # on demand: whatever the input
    ],
)
def test_compaction_holds_its_summary_and_the_pass_that_reads_it(
    asks: dict[str, Any], input_tokens: int, extra: bool
) -> None:
    """Compaction is one more billed pass inside the request (recorded: a 55,196-token input
    read by the compaction pass, 131 tokens of summary, then a 229-token pass): held as the
    summary at the model's most output and the answer's pass re-reading the input and the
    summary, wherever the input reaches the trigger. It was held as the input once."""
    pricer, model = Pricer(), "claude-sonnet-4-6"
    base: dict[str, Any] = {"model": model, "max_tokens": 1000, "messages": [{"role": "user", "content": "go"}]}  # fmt: skip
    plain = plan_reservation(pricer, model, base, input_tokens, "count_tokens", D(1000), 256)
    held = plan_reservation(pricer, model, {**base, **asks}, input_tokens, "count_tokens", D(1000), 256)  # fmt: skip
    assert plain is not None and held is not None
    summary = 128_000  # Sonnet 4.6's most output
    again = input_tokens + summary
    r = pricer.rates(model, again)
    added = r.output * summary + max(r.input, r.cache_write_5m, r.cache_write_1h) * again
    assert held.worst_case_usd - plain.worst_case_usd == (added if extra else 0)
