"""The one meter (tuiagent/meter), face-free: every price modifier in the hold and in the
settlement, fair holds, bounded waits, sizing without a round trip, the distrust rules.

Published facts these are written from (not from genai-prices):
- fast mode (platform.claude.com/docs/en/build-with-claude/fast-mode, "Pricing"): Opus 5.5
  $8 in / $40 out per MTok (2x), Fable 5.2 $16 / $80 (2x); caching multipliers on top;
  Sonnet and Haiku have no fast mode.
- US-only inference (support.claude.com/en/articles/15422948; the pricing page's data
  residency section): 1.1x every token price on Opus 4.6, Sonnet 4.6 and every later model;
  the API refuses `inference_geo` on older models.
- Message Batches (pricing page, "Batch processing"): 50% of standard prices.
- Code execution is free beside `web_search_20260209` / `web_fetch_20260209`; alone it bills
  container time no response reports.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.media import png_base64
from tuiagent.agent.call import CallSpec
from tuiagent.agent.events import TurnFinished
from tuiagent.agent.router import RouteDecision
from tuiagent.config import Settings
from tuiagent.cost.budget import LONG_CONTEXT_WINDOW, PLAIN_BETAS, Bounds, Budget
from tuiagent.cost.pricing import STANDARD, Modifiers, Pricer, UnpricedModifierError
from tuiagent.errors import UsageError
from tuiagent.llm.tokens import TokenUsage, block_tokens, estimate_request_tokens
from tuiagent.meter import CallMeter, Seen, Size, uncounted
from tuiagent.runs.log import read_records
from tuiagent.session import open_session

D = Decimal
M = 1_000_000
OPUS = "claude-opus-5-5"
EVERY_KIND = TokenUsage(
    input_tokens=M,
    output_tokens=M,
    cache_read_input_tokens=M,
    cache_creation_input_tokens=2 * M,
    cache_creation_5m_input_tokens=M,
    cache_creation_1h_input_tokens=M,
)


def published(inp: str, out: str, read: str) -> Decimal:
    """input + output + 5m write (1.25x) + 1h write (2x) + read, a million tokens each."""
    i = D(inp)
    return i + D(out) + i * D("1.25") + i * 2 + D(read)


@pytest.mark.parametrize(
    ("model", "modifiers", "expected"),
    [
        (OPUS, STANDARD, published("4", "20", "0.2")),
        (OPUS, Modifiers(speed="fast"), published("8", "40", "0.4")),
        ("claude-fable-5-2", Modifiers(speed="fast"), published("16", "80", "0.4")),
        (OPUS, Modifiers(inference_geo="us"), published("4", "20", "0.2") * D("1.1")),
        ("claude-opus-4-6", Modifiers(inference_geo="us"), published("5", "25", "0.5") * D("1.1")),
        (OPUS, Modifiers(speed="fast", inference_geo="us"), published("8", "40", "0.4") * D("1.1")),
        (OPUS, Modifiers(processing="batch"), published("2", "10", "0.1")),
    ],
)
def test_every_modifier_at_its_published_price(
    model: str, modifiers: Modifiers, expected: Decimal
) -> None:
    assert Pricer().price(model, EVERY_KIND, modifiers).total == expected


def test_batches_where_genai_prices_has_no_variant_at_the_published_half() -> None:
    """Sonnet 4 (genai-prices lacks its batch variant): 50% (the override table), below and
    above its 200K long-context tier."""
    below = TokenUsage(input_tokens=100_000, output_tokens=10_000)
    above = TokenUsage(input_tokens=300_000, output_tokens=10_000)
    batch = Modifiers(processing="batch")
    pricer = Pricer()
    sonnet_4 = "claude-sonnet-4-20250514"
    assert pricer.price(sonnet_4, below, batch).total == (D(3) * 100_000 + D(15) * 10_000) / M / 2
    assert (
        pricer.price(sonnet_4, above, batch).total == (D(6) * 300_000 + D("22.5") * 10_000) / M / 2
    )


def test_the_long_context_tier_and_us_only_stack() -> None:
    """Haiku 5.5 above 100K input: every token at the higher rate, then 1.1x."""
    usage = TokenUsage(input_tokens=150_000, output_tokens=1_000)
    plain = Pricer().price("claude-haiku-5-5", usage).total
    assert plain == (D("0.5") * 150_000 + D("2.5") * 1_000) / M
    us = Pricer().price("claude-haiku-5-5", usage, Modifiers(inference_geo="us")).total
    assert us == plain * D("1.1")


def test_web_searches_are_not_multiplied() -> None:
    usage = TokenUsage(web_search_requests=1000)
    assert Pricer().price(OPUS, usage, Modifiers(speed="fast", inference_geo="us")).total == 10


@pytest.mark.parametrize(
    ("model", "request_", "why"),
    [
        ("claude-sonnet-5-5", {"speed": "fast"}, "fast mode has no published price"),
        ("claude-haiku-4-5", {"inference_geo": "us"}, "Opus 4.6 and later"),
        ("claude-sonnet-4-5", {"inference_geo": "us"}, "Opus 4.6 and later"),
        (OPUS, {"speed": "turbo"}, "speed 'turbo'"),
        (OPUS, {"speed": 2}, "speed 2"),
        (OPUS, {"inference_geo": "eu"}, "inference_geo 'eu'"),
        (OPUS, {"tools": [{"type": "code_execution_20250825", "name": "c"}]}, "container time"),
    ],
)
def test_a_modifier_the_meter_cannot_price_is_refused(
    model: str, request_: dict[str, Any], why: str
) -> None:
    meter = CallMeter(Pricer(), Budget(D(100)), min_useful_tokens=256)
    with pytest.raises(UsageError, match=why):
        meter.modifiers(model, {"model": model, "max_tokens": 10, "messages": [], **request_})


def test_fast_batches_and_hand_set_prices_with_modifiers_are_refused() -> None:
    with pytest.raises(UnpricedModifierError, match="Batches"):
        Pricer().price(OPUS, EVERY_KIND, Modifiers(speed="fast", processing="batch"))
    hand_set = Pricer({"gw-model": {"input_mtok": D(1), "output_mtok": D(2)}})
    assert hand_set.price("gw-model", EVERY_KIND).total > 0
    with pytest.raises(UnpricedModifierError, match="set by hand"):
        hand_set.price("gw-model", EVERY_KIND, Modifiers(speed="fast"))


def test_code_execution_beside_the_free_web_tools_is_priced_as_tokens() -> None:
    tools = [
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "web_fetch_20260209", "name": "web_fetch"},
    ]
    meter = CallMeter(Pricer(), Budget(D(100)), min_useful_tokens=256)
    request = {"model": OPUS, "max_tokens": 10, "messages": [], "tools": tools}
    assert meter.modifiers(OPUS, request) == Modifiers(inference_geo="us")


# --- the hold and the settlement ---------------------------------------------------------


def request(model: str = OPUS, max_tokens: int = 1000, **more: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "hello there " * 50}]
    return {"model": model, "max_tokens": max_tokens, "messages": messages, **more}


def held(meter: CallMeter, req: dict[str, Any]) -> Any:
    outcome = asyncio.run(meter.reserve(req["model"], req, None, label="t"))
    assert not hasattr(outcome, "needed"), outcome
    return outcome


def test_a_request_without_inference_geo_is_held_at_the_us_price_and_settled_as_reported() -> None:
    pricer = Pricer()
    meter = CallMeter(pricer, Budget(D(100)), min_useful_tokens=256)
    h = held(meter, request())
    tokens = h.reservation.input_tokens
    us = Modifiers(inference_geo="us")
    expected_hold = pricer.price(OPUS, TokenUsage(input_tokens=tokens, output_tokens=1000), us)
    assert h.reservation.worst_case_usd == expected_hold.total
    billed = TokenUsage(input_tokens=100, output_tokens=10)
    # Not reported: the API's default (global).
    settled = meter.settle(h, Seen(usage=billed, updates=2, completed=True))
    assert settled.cost == pricer.price(OPUS, billed)
    h = held(meter, request())
    ran_us = TokenUsage(input_tokens=100, output_tokens=10, inference_geo="us")
    settled = meter.settle(h, Seen(usage=ran_us, updates=2, completed=True))
    assert settled.cost.total == pricer.price(OPUS, billed).total * D("1.1")
    assert settled.modifiers.as_record() == {"inference_geo": "us"}


def test_where_the_response_says_it_ran_wins_at_settlement() -> None:
    pricer = Pricer()
    meter = CallMeter(pricer, Budget(D(100)), min_useful_tokens=256)
    h = held(meter, request(speed="fast", inference_geo="us"))
    assert h.plan.modifiers == Modifiers(speed="fast", inference_geo="us")
    ran = TokenUsage(input_tokens=100, output_tokens=10, speed="standard", inference_geo="global")
    settled = meter.settle(h, Seen(usage=ran, updates=2, completed=True))
    assert settled.cost == pricer.price(OPUS, ran) and settled.modifiers == STANDARD


def test_a_client_that_leaves_after_message_start_keeps_the_most_output_allowed() -> None:
    pricer = Pricer()
    meter = CallMeter(pricer, Budget(D(100)), min_useful_tokens=256)
    h = held(meter, request(inference_geo="global"))
    start = TokenUsage(input_tokens=100, output_tokens=2)
    settled = meter.settle(h, Seen(usage=start, updates=1, output_streamed=5))
    assert settled.flags == {"output_unknown": True}
    assert settled.usage.output_tokens == 1000
    assert settled.cost == pricer.price(OPUS, TokenUsage(input_tokens=100, output_tokens=1000))


def test_usage_never_seen_keeps_the_worst_case_and_an_error_status_bills_nothing() -> None:
    budget = Budget(D(100))
    meter = CallMeter(Pricer(), budget, min_useful_tokens=256)
    h = held(meter, request())
    settled = meter.settle(h, Seen(status=None))
    assert settled.flags == {"usage_unknown": True}
    assert settled.cost.total == h.reservation.worst_case_usd == budget.settled
    assert meter.settle(held(meter, request()), Seen(status=529)).cost.total == 0
    assert meter.settle(held(meter, request()), Seen(sent=False)).flags == {"sent": False}
    assert budget.in_flight == 0 and budget.settled == h.reservation.worst_case_usd


def test_overbilling_is_recorded_flagged_and_scales_later_holds_on_that_model() -> None:
    pricer = Pricer()
    meter = CallMeter(pricer, Budget(D(100)), min_useful_tokens=256)
    first = held(meter, request(inference_geo="global"))
    # The answer names a dearer model (4x the price) with tokens within the hold.
    usage = TokenUsage(input_tokens=100, output_tokens=900)
    settled = meter.settle(
        first, Seen(usage=usage, updates=2, completed=True, response_model="claude-fable-5-2")
    )
    assert settled.priced_as == "claude-fable-5-2"
    assert settled.flags == {"model_mismatch": "claude-fable-5-2", "over_reservation": True}
    assert settled.cost.total > first.hold.amount
    again = held(meter, request(inference_geo="global"))
    ratio = settled.cost.total / first.hold.amount
    assert again.reservation.worst_case_usd == pytest.approx(
        first.reservation.worst_case_usd * ratio, rel=D("1e-6")
    )
    assert again.reservation.worst_case_usd >= first.reservation.worst_case_usd * ratio
    # Scaled holds stay exact sums: no rounding dust left in flight once they settle.
    assert again.hold.amount.as_tuple().exponent >= -18  # type: ignore[operator]
    meter.settle(again, Seen(status=529))
    assert meter.budget.in_flight == 0


def test_an_answer_naming_a_model_that_cannot_be_priced_keeps_the_worst_case() -> None:
    """Priced as the cheaper model asked, it was recorded below what a dearer unknown model
    may have billed: it keeps at least the hold's worst case, flagged."""
    budget = Budget(D(100))
    meter = CallMeter(Pricer(), budget, min_useful_tokens=256)
    h = held(meter, request(inference_geo="global"))
    usage = TokenUsage(input_tokens=100, output_tokens=10)
    settled = meter.settle(
        h, Seen(usage=usage, updates=2, completed=True, response_model="claude-unknown-9")
    )
    assert settled.flags == {"model_mismatch": "claude-unknown-9", "unpriced_model": True}
    assert settled.cost.total == h.reservation.worst_case_usd == budget.settled
    assert settled.cost.total > Pricer().price(OPUS, usage).total


# --- fair holds and bounded waits --------------------------------------------------------


def test_a_request_asking_more_than_its_share_holds_its_share_lowered() -> None:
    """The leading coding agent asks 128,000 tokens of Opus 5.5 a call ($2.56 of output):
    under a $1 cap its calls and its sub-agents' run side by side."""
    budget = Budget(D(1))
    meter = CallMeter(Pricer(), budget, min_useful_tokens=256, fair_share=D("0.5"))
    holds = [held(meter, request(max_tokens=128_000)) for _ in range(4)]
    for h in holds:
        assert h.plan.lowered == "fair share" and h.request["max_tokens"] < 128_000
        assert h.request["max_tokens"] >= 256
    amounts = [h.hold.amount for h in holds]
    assert amounts[0] <= D("0.5") and amounts == sorted(amounts, reverse=True)
    assert budget.in_flight <= budget.cap


def test_a_request_within_its_share_holds_its_worst_case_whole() -> None:
    meter = CallMeter(Pricer(), Budget(D(10)), min_useful_tokens=256, fair_share=D("0.5"))
    h = held(meter, request(max_tokens=1000))
    assert h.plan.lowered is None and h.request["max_tokens"] == 1000


def test_a_thinking_budget_is_lowered_below_the_lowered_max_tokens() -> None:
    meter = CallMeter(Pricer(), Budget(D(1)), min_useful_tokens=256, fair_share=D("0.5"))
    thinking = {"type": "enabled", "budget_tokens": 100_000}
    h = held(meter, request(max_tokens=128_000, thinking=thinking))
    assert h.request["thinking"]["budget_tokens"] == h.request["max_tokens"] - 1 >= 1024


async def test_a_request_that_fits_once_holds_in_flight_settle_waits_for_them() -> None:
    budget = Budget(D("0.05"))
    meter = CallMeter(Pricer(), budget, min_useful_tokens=256, wait_s=5.0)
    first = await meter.reserve(OPUS, request(max_tokens=2000), None, label="first")
    assert not hasattr(first, "needed") and budget.remaining < D("0.01")
    second = asyncio.create_task(meter.reserve(OPUS, request(max_tokens=2000), None, label="2"))
    await asyncio.sleep(0.2)
    assert not second.done()  # waiting, not refused
    meter.settle(
        first, Seen(usage=TokenUsage(input_tokens=10, output_tokens=5), updates=2, completed=True)
    )  # type: ignore[arg-type]
    outcome = await second
    assert not hasattr(outcome, "needed") and outcome.waited_s > 0  # type: ignore[union-attr]


async def test_money_spent_refuses_at_once_and_the_wait_is_bounded() -> None:
    budget = Budget(D("0.05"))
    meter = CallMeter(Pricer(), budget, min_useful_tokens=256, wait_s=0.3)
    h = await meter.reserve(OPUS, request(max_tokens=2000), None, label="first")
    meter.settle(h, Seen(status=None))  # type: ignore[arg-type]  # worst case spent
    refused = await meter.reserve(OPUS, request(max_tokens=2000), None, label="2")
    assert refused.waited_s is None  # type: ignore[union-attr]  # nothing in flight to wait for
    budget2 = Budget(D("0.05"))
    meter2 = CallMeter(Pricer(), budget2, min_useful_tokens=256, wait_s=0.3)
    await meter2.reserve(OPUS, request(max_tokens=2000), None, label="first")  # never settled
    bounded = await meter2.reserve(OPUS, request(max_tokens=2000), None, label="2")
    assert hasattr(bounded, "needed") and bounded.waited_s >= 0.25  # type: ignore[union-attr]


# --- sizing ------------------------------------------------------------------------------


def conversation(turns: int) -> dict[str, Any]:
    """A session's request after `turns` answers: the history grows at its end."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "question 0: " + "words " * 40}]
    for i in range(1, turns + 1):
        messages.append({"role": "assistant", "content": f"answer {i}: " + "more " * 30})
        messages.append({"role": "user", "content": f"question {i}: " + "words " * 40})
    return {"model": OPUS, "max_tokens": 128_000, "system": "you code", "messages": messages}


async def test_a_conversation_is_counted_once_then_sized_from_what_it_billed() -> None:
    meter = CallMeter(Pricer(), Budget(D(1)), min_useful_tokens=256, fair_share=D("0.5"))
    counts: list[int] = []

    async def count(body: dict[str, Any]) -> object:
        counts.append(1)
        return estimate_request_tokens(body)

    for turns in range(20):
        req = conversation(turns)
        h = await meter.reserve(OPUS, req, count, label=str(turns))
        assert not hasattr(h, "needed")
        billed = TokenUsage(input_tokens=estimate_request_tokens(req), output_tokens=60)
        settled = meter.settle(h, Seen(usage=billed, updates=2, completed=True))  # type: ignore[arg-type]
        meter.note_prefix(h, settled)  # type: ignore[arg-type]
        if turns:
            assert h.reservation.token_source == "prefix+estimate"  # type: ignore[union-attr]
            assert h.reservation.input_tokens >= billed.input_tokens  # type: ignore[union-attr]
    assert len(counts) == 1


@pytest.mark.parametrize("answer", [1, 0, -10_000_000, None, "many", True, 10**12])
async def test_a_count_below_the_estimate_or_not_a_count_is_not_believed(answer: object) -> None:
    meter = CallMeter(Pricer(), Budget(D(10)), min_useful_tokens=256)

    async def count(body: dict[str, Any]) -> object:
        return answer

    req = request()
    size = await meter.size(OPUS, req, STANDARD, count)
    estimate = estimate_request_tokens(req)
    assert size.tokens >= estimate
    if type(answer) is int and answer in (1, 0):
        assert size == Size(estimate, "count_tokens")
    else:
        assert size.source == "estimate" and size.tokens > estimate * 1.25


async def test_no_count_is_asked_when_not_even_the_estimate_could_fit() -> None:
    meter = CallMeter(Pricer(), Budget(D("0.0001")), min_useful_tokens=256)

    async def count(body: dict[str, Any]) -> object:
        raise AssertionError("a round trip that cannot change the outcome")

    outcome = await meter.reserve(OPUS, request(), count, label="t")
    assert hasattr(outcome, "needed") and meter.count_calls == 0


# --- the agent's face: the same meter ----------------------------------------------------


async def test_the_agent_holds_and_prices_a_request_s_modifiers(tmp_path: Path) -> None:
    """A replayed proxied request that asked for fast mode and US-only inference: the
    agent holds and prices it with both, and writes its `hold` record before sending."""
    settings = Settings().with_changes(log_dir=tmp_path / "logs", tier="deep")
    ws = tmp_path / "ws"
    ws.mkdir()
    agent = open_session(settings, workspace=ws, offline=True).agent
    model = "claude-fable-5-2"
    sent = request(model, max_tokens=500, speed="fast", inference_geo="us")
    spec = CallSpec(1, "agent", RouteDecision("deep", model, "test"), lambda _: dict(sent))
    agent.start()
    events = [e async for e in agent.call(spec)]
    agent.finish()
    (turn,) = [e.record for e in events if isinstance(e, TurnFinished)]
    records, _ = read_records(agent.log.path)
    kinds = [r["type"] for r in records]
    assert kinds == ["run_start", "hold", "turn", "run_end"]
    assert records[1]["hold_id"] == turn.hold_id and records[1]["reserved_usd"] > 0
    both = Modifiers(speed="fast", inference_geo="us")
    assert turn.modifiers == {"speed": "fast", "inference_geo": "us"}
    assert turn.cost_usd == Pricer().price(model, turn.usage, both).total
    assert turn.cost_usd == Pricer().price(model, turn.usage).total * 2 * D("1.1")
    rates = Pricer().rates(model, turn.input_tokens_counted, both)
    assert turn.reserved_usd == rates.input * turn.input_tokens_counted + rates.output * 500


@pytest.mark.parametrize(
    ("block", "media"),
    [
        ({"type": "text", "text": "and this"}, False),
        (
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "x"},
            },
            False,
        ),
        # an image is estimated at the most its pixels can bill (at most 4,784 tokens)
        ({"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}, False),
        (
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
            },
            False,
        ),
        ({"type": "document", "source": {"type": "file", "file_id": "file_1"}}, True),
        (
            {"type": "document", "source": {"type": "base64", "data": "JVBERi0xLjQK"}},
            True,
        ),
        (
            {
                "type": "tool_result",
                "tool_use_id": "t",
                "content": [{"type": "document", "source": {"type": "url", "url": "u"}}],
            },
            True,
        ),
    ],
)
def test_what_follows_a_known_prefix_is_estimated_only_without_documents(
    block: dict[str, Any], media: bool
) -> None:
    """The prefix a conversation's last call billed is exact and what follows it estimated:
    a document in what follows cannot be (its pages), so the request goes to count_tokens
    (or, with no count, to its window: `uncounted`). An image can: by its pixels."""
    meter = CallMeter(Pricer(), Budget(Decimal(10)), min_useful_tokens=256, conversations=8)
    first = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    meter.prefixes.note(first, TokenUsage(input_tokens=20, output_tokens=5))
    follow = [{"role": "assistant", "content": "hello"}, {"role": "user", "content": [block]}]
    request = {**first, "messages": [*first["messages"], *follow]}
    assert (meter.prefixes.known(request) is None) is media
    size = uncounted("claude-sonnet-5-5", request)
    assert (size.source, size.tokens >= 1_000_000) == (
        ("window", True) if media else ("estimate", False)
    )


# --- how far a request reaches: its model's window and output, as its betas allow -------

# What claude-code 2.1.197 sends with claude-sonnet-4-5 (captured on 127.0.0.1).
CLAUDE_CODE_BETAS = (
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "thinking-token-count-2026-05-13",
    "context-management-2025-06-27",
    "prompt-caching-scope-2026-01-05",
)


@pytest.mark.parametrize(
    ("model", "betas", "window", "max_output"),
    [
        ("claude-sonnet-4-5", (), 200_000, 64_000),
        ("claude-sonnet-4-5", CLAUDE_CODE_BETAS, 200_000, 64_000),
        ("claude-sonnet-4-5", ("context-1m-2025-08-07",), M, 64_000),
        ("claude-sonnet-4-5", (" Context-1M-2025-08-07 ",), M, 64_000),  # as the API reads it
        ("claude-sonnet-4-5", ("context-2m-2027-01-01",), 2 * M, 64_000),
        ("claude-3-7-sonnet", ("output-128k-2025-02-19",), 200_000, 128_000),
        ("claude-opus-4-5", ("output-300k-2026-03-24",), 200_000, 300_000),
        # one the meter has not met: as far as any documented beta reaches
        ("claude-sonnet-4-5", ("longer-thoughts-2027-02-02",), M, 300_000),
        ("claude-sonnet-4-5", ("server-side-fallback-2026-06-01",), M, 300_000),
        ("claude-sonnet-4-5", ("context-99999m-2027-01-01",), M, 300_000),
        ("claude-opus-4-8", (), M, 128_000),  # a 1M window of its own
        ("claude-opus-4-8", ("context-1m-2025-08-07",), M, 128_000),
    ],
)
def test_a_request_reaches_its_models_window_unless_its_betas_widen_it(
    model: str, betas: tuple[str, ...], window: int, max_output: int
) -> None:
    """Holds that nothing but the window bounds (a server tool's results read back, media
    with no count) were held at 1M tokens on every model, since the long-context beta
    header was not seen: 5x too much on a 200k model that cannot read past 200k."""
    assert Bounds.of(model, betas) == Bounds(window, max_output)


@settings(max_examples=200, deadline=None)
@given(
    model=st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-8", "x-y"]),
    betas=st.lists(
        st.one_of(
            st.sampled_from([*sorted(PLAIN_BETAS), "context-1m-2025-08-07"]),
            st.text(max_size=40),
        ),
        max_size=5,
    ),
    more=st.text(max_size=40),
)
def test_no_beta_lowers_how_far_a_request_reaches(model: str, betas: list[str], more: str) -> None:
    """Fail closed: a beta (any text) never makes the window or the output smaller than
    without it, and one the meter does not know reaches at least the long window."""
    before, after = Bounds.of(model, betas), Bounds.of(model, [*betas, more])
    assert after.window >= before.window >= Bounds.of(model).window
    assert after.max_output >= before.max_output
    name = more.strip().lower()
    if name and name not in PLAIN_BETAS:
        assert after.window >= LONG_CONTEXT_WINDOW


def test_a_document_request_with_no_count_is_held_at_its_own_window() -> None:
    request = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
    }
    assert uncounted("claude-sonnet-4-5", request).tokens == 200_000
    wide = Bounds.of("claude-sonnet-4-5", ["context-1m-2025-08-07"])
    assert uncounted("claude-sonnet-4-5", request, bounds=wide).tokens == M


@pytest.mark.parametrize(
    ("source", "counted"),
    [
        ({"type": "url", "url": "https://example.com/a.pdf"}, False),
        ({"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}, False),
        ({"type": "somewhere-new", "ref": "x"}, False),  # a source this meter has not met
        # a compressed PDF's hundred pages are a few KB: its bytes do not bound its pages
        ({"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}, False),
    ],
)
def test_a_count_of_a_document_is_not_asked(source: dict[str, Any], counted: bool) -> None:
    """A lying count_tokens (1 token for a hundred-page PDF) set the hold: nothing here can
    size a document's pages to check the count, so none is asked and it is held at its
    window."""
    meter = CallMeter(Pricer(), Budget(Decimal(100)), min_useful_tokens=256)
    request = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [{"type": "document", "source": source}]}],
    }
    asked: list[dict[str, Any]] = []

    async def count(body: dict[str, Any]) -> object:
        asked.append(body)
        return 1

    size = asyncio.run(meter.size("claude-sonnet-4-5", request, STANDARD, count))
    assert bool(asked) is counted
    if counted:
        assert size.source == "count_tokens"
    else:
        assert size == Size(200_000, "window")


@pytest.mark.parametrize(
    ("source", "most"),
    [
        ({"type": "base64", "media_type": "image/png", "data": png_base64(1024, 1024)}, 3 + 1_399),
        ({"type": "base64", "media_type": "image/png", "data": png_base64(200, 100)}, 3 + 32),
        # a screenshot's megabyte of base64 is its pixels' tokens, not its characters'
        (
            {"type": "base64", "media_type": "image/png", "data": png_base64(1568, 980, 10**6)},
            3 + 2_049,
        ),
        # scaled down by the API to at most 4,784 tokens, whatever it is or says
        ({"type": "base64", "media_type": "image/png", "data": png_base64(8000, 8000)}, 3 + 4_784),
        ({"type": "base64", "media_type": "image/png", "data": "not an image"}, 3 + 4_784),
        ({"type": "url", "url": "https://example.com/a.png"}, 3 + 4_784),
        ({"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}, 3 + 4_784),
    ],
)
def test_an_image_is_held_at_the_most_its_pixels_can_bill(
    source: dict[str, Any], most: int
) -> None:
    """An image was estimated by its base64's characters: a 1 MB screenshot as hundreds of
    thousands of tokens (a call the cap could well afford refused), and a tiny image that
    the API scales up to nothing more than its pixels as a few. It is estimated at the most
    its pixels bill on any model (its header read; 4,784 when unread), and a count below
    that is not believed (a lying upstream's 1 token)."""
    meter = CallMeter(Pricer(), Budget(Decimal(100)), min_useful_tokens=256)
    block = {"type": "image", "source": source}
    request = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [block]}],
    }
    assert block_tokens(block) == most

    async def count(body: dict[str, Any]) -> object:
        return 1

    size = asyncio.run(meter.size("claude-sonnet-4-5", request, STANDARD, count))
    assert size.source == "count_tokens" and most <= size.tokens < most + 20
