"""The proxy meters exactly what the upstream bills (issue 23's rows that are the meter's):
count_tokens that lies, a dearer model in message_start, a client that leaves mid-stream,
fast mode, US-only inference, an upstream that bills above the hold; fair holds and bounded
waits; no count_tokens round trip the client did not ask for; a `hold` record before each
call, and a killed proxy's calls in flight counted by `report`.

Each runs the proxy against `BillingUpstream` (127.0.0.1), which keeps its own books.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.billing_upstream import Bill, BillingUpstream
from tests.support.media import png_base64
from tests.support.proxy_harness import Proxied, proxy_to
from tuiagent.config import Settings
from tuiagent.cost.pricing import Modifiers, Pricer
from tuiagent.llm.tokens import TokenUsage, estimate_request_tokens
from tuiagent.proxy.lines import call_line
from tuiagent.report.build import build_report
from tuiagent.runs.records import ProxyTurn, read

D = Decimal
OPUS = "claude-opus-5-5"
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


@contextmanager
def proxied(
    tmp_path: Path,
    behaviours: list[str] | None = None,
    counts: list[str] | None = None,
    cap: str = "1.00",
    **settings: Any,
) -> Iterator[tuple[BillingUpstream, Proxied]]:
    config = Settings().with_changes(**{"hold_wait_s": 2.0, **settings})
    with (
        BillingUpstream(behaviours or [], counts or []) as upstream,
        proxy_to(upstream.base_url, tmp_path, cap, settings=config) as proxy,
    ):
        yield upstream, proxy


def body(
    model: str = OPUS, max_tokens: int = 1000, stream: bool = True, words: int = 30, **more: Any
) -> bytes:
    messages = [{"role": "user", "content": "say something " * words}]
    return json.dumps(
        {"model": model, "max_tokens": max_tokens, "stream": stream, "messages": messages, **more}
    ).encode()


def shown(record: dict[str, Any]) -> str:
    """The line a call is shown as (headless, and in the dashboard's log)."""
    typed = read(record)
    assert isinstance(typed, ProxyTurn)
    return call_line(typed)


def send(url: str, content: bytes, path: str = "/v1/messages") -> httpx2.Response:
    return httpx2.post(url + path, content=content, headers=HEADERS, timeout=30)


def cost(record: dict[str, Any]) -> Decimal:
    return D(str(record["cost_usd"]))


def by_request_id(proxy: Proxied, bills: list[Bill]) -> list[tuple[Bill, dict[str, Any]]]:
    calls = {r.get("request_id"): r for r in proxy.records("turn", "attempt")}
    return [(b, calls[b.request_id]) for b in bills]


# --- the rows of the table -------------------------------------------------------


@pytest.mark.parametrize("answer", ["low", "zero", "negative", "missing", "string"])
def test_count_tokens_that_lies_or_is_not_a_count_is_not_believed(
    tmp_path: Path, answer: str
) -> None:
    with proxied(tmp_path, counts=[answer]) as (upstream, proxy):
        response = send(proxy.url, body(stream=False))
        (record,) = proxy.records("turn")
    assert response.status_code == 200 and upstream.count_calls == 1
    (bill,) = upstream.bills
    assert record["input_tokens_counted"] >= bill.true_input
    if answer in ("negative", "missing", "string"):
        assert record["input_count_source"] == "estimate"


def test_sixteen_clients_under_lying_counts_stay_within_the_cap(tmp_path: Path) -> None:
    """count_tokens answers 1 to every client (their requests are large, their answers
    short): believed, 16 clients passed the cap 3.5x."""
    with proxied(tmp_path, ["greedy"] * 64, ["low"] * 64, cap="0.30") as (upstream, proxy):
        with ThreadPoolExecutor(16) as pool:
            ask = body(max_tokens=300, words=5000)
            list(pool.map(lambda _: send(proxy.url, ask), range(48)))
        proxy.records()
    pricer = Pricer()
    assert sum((b.allowed(pricer) for b in upstream.bills), D(0)) <= D("0.30")
    assert upstream.bills  # some were sent


def test_a_dearer_model_in_message_start_is_priced_as_billed(tmp_path: Path) -> None:
    with proxied(tmp_path, ["swapped"]) as (upstream, proxy):
        send(proxy.url, body(model="claude-sonnet-5-5"))
        ((bill, record),) = by_request_id(proxy, upstream.bills)
    assert record["model_mismatch"] == record["priced_as"] == "claude-fable-5-2"
    assert cost(record) == bill.billed(Pricer()) > bill.allowed(Pricer())
    assert record["over_reservation"] is True


def test_a_client_that_leaves_mid_stream_is_billed_the_whole_output(tmp_path: Path) -> None:
    with proxied(tmp_path, ["slow"]) as (upstream, proxy):
        with (
            httpx2.Client(timeout=30) as client,
            client.stream(
                "POST", proxy.url + "/v1/messages", content=body(max_tokens=3000), headers=HEADERS
            ) as response,
        ):
            for chunk in response.iter_raw():
                if b"message_start" in chunk:
                    break  # and hang up
        ((bill, record),) = by_request_id(proxy, upstream.bills)
    assert record["type"] == "attempt" and record["output_unknown"] is True
    assert record["error"] == "the client hung up before the answer ended"  # not "dropped"
    assert record["output_tokens"] == 3000  # the most it allowed: what it made is unknown
    assert cost(record) >= bill.billed(Pricer())


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_before_the_answer_names_its_model_is_priced_as_billed(
    tmp_path: Path, stream: bool
) -> None:
    """The client hangs up on the answer's head, before the body names the (dearer) model
    that billed it: cut there, the call was settled at the asked model's worst case, below
    the bill (found by the property test, 1 run in about 60). The proxy reads on until the
    answer names its model."""
    with proxied(tmp_path, ["swapped_late"]) as (upstream, proxy):
        with (
            httpx2.Client(timeout=30) as client,
            client.stream(
                "POST",
                proxy.url + "/v1/messages",
                content=body(model="claude-sonnet-5-5", stream=stream),
                headers=HEADERS,
            ),
        ):
            pass  # the head came: hang up
        ((bill, record),) = by_request_id(proxy, upstream.bills)
    assert record["priced_as"] == "claude-fable-5-2"
    assert cost(record) >= bill.billed(Pricer())


def test_fast_mode_is_held_and_priced_at_its_rates(tmp_path: Path) -> None:
    pricer = Pricer()
    with proxied(tmp_path, ["honest", "fast_fallback"]) as (upstream, proxy):
        send(proxy.url, body(speed="fast", inference_geo="global"))
        send(proxy.url, body(speed="fast", inference_geo="global"))
        (fast, fast_record), (fallback, fallback_record) = by_request_id(proxy, upstream.bills)
    fast_rates = pricer.rates(OPUS, 0, Modifiers(speed="fast"))
    assert fast_rates.output == 2 * pricer.rates(OPUS).output  # $40 against $20 per MTok
    assert D(str(fast_record["reserved_usd"])) >= fast_rates.output * 1000
    assert fast_record["modifiers"] == {"speed": "fast"}
    fast_price = pricer.price(OPUS, fast.usage, Modifiers(speed="fast")).total
    assert cost(fast_record) == fast.billed(pricer) == fast_price
    # It ran at standard speed (the response says so): priced so.
    assert "modifiers" not in fallback_record
    assert (
        cost(fallback_record) == fallback.billed(pricer) == pricer.price(OPUS, fallback.usage).total
    )
    # What it billed within what it allowed (the property's sum against the cap) is what it
    # billed: the fast price it did not bill is no money spent.
    assert fallback.allowed(pricer) == fallback.billed(pricer)


def test_fast_mode_without_a_published_price_is_refused_before_it_leaves(tmp_path: Path) -> None:
    with proxied(tmp_path) as (upstream, proxy):
        response = send(proxy.url, body(model="claude-sonnet-5-5", speed="fast"))
        (refused,) = proxy.records("refused")
    assert response.status_code == 400 and "fast mode has no published price" in refused["error"]
    assert upstream.messages_calls == upstream.count_calls == 0


def test_server_tools_whose_results_nothing_bounds_are_held_at_the_window(
    tmp_path: Path,
) -> None:
    """A web search's results (and a fetched page without max_content_tokens) are read back
    as input, once per pass of the server's loop: under a $5 cap an open-ended search was
    held as its tokens and fees ($0.12) and could bill the cap many times over. It needs a
    pass of the whole window per search; a fetch with both limits is held pass by pass."""
    search = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    fetch = [
        {
            "type": "web_fetch_20250910",
            "name": "web_fetch",
            "max_uses": 1,
            "max_content_tokens": 2000,
        }
    ]
    with proxied(tmp_path, cap="5.00") as (upstream, proxy):
        refused = send(proxy.url, body(tools=search))
        assert upstream.messages_calls == 0
        sent = send(proxy.url, body(tools=fetch, stream=False))
        (record,) = proxy.records("refused")
        (hold,) = proxy.records("hold")
    assert refused.status_code == 400 and upstream.messages_calls == 1
    said = refused.json()["error"]["message"]
    assert "3 more pass(es) of the server's loop" in said and "1,000,000-token window" in said
    assert said == record["error"]
    assert sent.status_code == 200
    one_pass = Pricer().rates(OPUS, 0).input * (hold["input_tokens_counted"] + 1000 + 2512)
    assert D(str(hold["reserved_usd"])) >= one_pass


SONNET_45_BETAS = (
    "claude-code-20250219,interleaved-thinking-2025-05-14,thinking-token-count-2026-05-13,"
    "context-management-2025-06-27,prompt-caching-scope-2026-01-05"  # claude-code 2.1.197's
)


@pytest.mark.parametrize(
    ("betas", "window"),
    [
        ([], None),
        ([SONNET_45_BETAS], None),
        (["context-1m-2025-08-07"], "1,000,000"),
        ([f"{SONNET_45_BETAS},context-1m-2025-08-07"], "1,000,000"),
        ([SONNET_45_BETAS, "context-1m-2025-08-07"], "1,000,000"),  # the header twice
        (["some-beta-2027-01-01"], "1,000,000"),  # unknown: the long window
    ],
)
def test_a_search_is_held_at_the_window_its_request_can_reach(
    tmp_path: Path, betas: list[str], window: str | None
) -> None:
    """Claude Sonnet 4.5 reads 200k tokens unless the request carries the long-context
    beta: its one search (a pass of the server's loop nothing but the window bounds) was held
    as a 1M-token pass ($6 at the long-context rate) and refused under a $2 cap. Held at
    200k ($0.60) it is sent; with the beta (or one the meter does not know), still 1M."""
    search = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]
    headers = [*HEADERS.items(), *(("anthropic-beta", b) for b in betas)]
    with proxied(tmp_path, cap="2.00") as (upstream, proxy):
        answer = httpx2.post(
            proxy.url + "/v1/messages",
            content=body(model="claude-sonnet-4-5", tools=search),
            headers=headers,
            timeout=30,
        )
        records = proxy.records("hold" if window is None else "refused")
    if window is None:
        assert answer.status_code == 200 and upstream.messages_calls == 1
        held = D(str(records[0]["reserved_usd"]))
        one_pass = Pricer().rates("claude-sonnet-4-5", 0).input * 200_000
        assert one_pass <= held < one_pass + D("0.10")
    else:
        assert answer.status_code == 400 and upstream.messages_calls == 0
        said = answer.json()["error"]["message"]
        assert f"each up to the {window}-token window its betas allow" in said
        assert "(the model's own: 200,000)" in said and said == records[0]["error"]


def test_betas_named_in_the_body_widen_the_window_as_the_header_does(tmp_path: Path) -> None:
    """A gateway in front of Bedrock or Vertex reads betas from the body (`anthropic_beta`;
    the SDKs' keyword is `betas`): held at 200k, such a request could read 1M. One whose
    betas are not a list of strings is not sent."""
    search = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]
    with proxied(tmp_path, cap="2.00") as (upstream, proxy):
        answers = [
            send(proxy.url, body(model="claude-sonnet-4-5", tools=search, **{key: value}))
            for key, value in [
                ("anthropic_beta", ["context-1m-2025-08-07"]),
                ("betas", ["context-1m-2025-08-07"]),
                ("anthropic_beta", "context-1m-2025-08-07"),
            ]
        ]
    said = [a.json()["error"]["message"] for a in answers]
    assert [a.status_code for a in answers] == [400, 400, 400] and upstream.messages_calls == 0
    assert all("1,000,000-token window its betas allow" in s for s in said[:2])
    assert "anthropic_beta: Input should be a valid list of strings" in said[2]


def test_a_batch_is_held_at_the_window_its_header_allows(tmp_path: Path) -> None:
    """A batch's `anthropic-beta` header is every request's: with the long-context beta, a
    Sonnet 4.5 request with a document is held at 1M tokens, without it at 200k."""
    pdf = [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://e/x.pdf"}}]}]  # fmt: skip
    params = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": pdf}
    batch = json.dumps({"requests": [{"custom_id": "a", "params": params}]}).encode()
    long = {**HEADERS, "anthropic-beta": "message-batches-2024-09-24, context-1m-2025-08-07"}
    with proxied(tmp_path, cap="0.50") as (upstream, proxy):
        refused = httpx2.post(proxy.url + "/v1/messages/batches", content=batch, headers=long)
        sent = send(proxy.url, batch, "/v1/messages/batches")
        (record,) = proxy.records("refused")
    assert refused.status_code == 400 and "does not fit the cap" in record["error"]
    assert sent.status_code == 200 and len(upstream.batches) == 1


# A hundred-page PDF by URL: the local estimate reads its URL (a dozen tokens), the API its
# pages (hundreds of thousands).
DOCUMENT = [
    {
        "role": "user",
        "content": [
            {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
            {"type": "text", "text": "summarise it"},
        ],
    }
]


def test_an_image_is_held_at_its_pixels_with_a_count_or_without(tmp_path: Path) -> None:
    """An image was held at the whole window (1M tokens on Opus: refused under $1) where no
    count came, and at its base64's characters where one did. It is held at the most its
    pixels bill (a 1568 x 980 screenshot: about 2,000 tokens), either way: sent under $1."""
    inline = {"type": "base64", "media_type": "image/png", "data": png_base64(1568, 980, 300_000)}
    messages = [{"role": "user", "content": [{"type": "image", "source": inline}]}]
    ask = json.dumps({"model": OPUS, "max_tokens": 1000, "messages": messages}).encode()
    with proxied(tmp_path, counts=["missing", "low"]) as (_, proxy):
        uncounted = send(proxy.url, ask)
        counted = send(proxy.url, ask)
        turns = proxy.records("turn")
    assert uncounted.status_code == counted.status_code == 200
    (estimated, at_estimate), (counted_by, at_count) = [
        (t["input_count_source"], t["input_tokens_counted"]) for t in turns
    ]
    pixels = 3 + 2_049  # 1568 x 980 / 750, rounded up, and the image block
    assert estimated == "estimate" and pixels < at_estimate < pixels * 1.4  # with the margin
    assert counted_by == "count_tokens" and pixels < at_count < pixels + 20  # 'low' not believed


INLINE_PDF = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}


@pytest.mark.parametrize("counts", [["low"], ["honest"], ["missing"]])
@pytest.mark.parametrize("inline", [False, True], ids=["url", "base64"])
def test_a_document_is_held_at_the_window_whatever_a_count_says(
    tmp_path: Path, counts: list[str], inline: bool
) -> None:
    """A PDF, by URL or inline: nothing here sees its pages (a compressed PDF's hundred are
    a few KB), so nothing can check a count of them. An upstream answering count_tokens with
    1 token set the hold (a few cents for a document that bills hundreds of thousands). It
    is held at the window, no count asked: refused under a $1 cap on Opus 5.5, sent under
    $10 (and the call after it, which continues the billed prefix, is sized from that
    bill)."""
    messages = copy.deepcopy(DOCUMENT)
    if inline:
        messages[0]["content"][0]["source"] = INLINE_PDF
    ask = json.dumps({"model": OPUS, "max_tokens": 1000, "messages": messages}).encode()
    with proxied(tmp_path, counts=counts) as (upstream, proxy):
        refused = send(proxy.url, ask)
        (record,) = proxy.records("refused")
    assert refused.status_code == 400 and upstream.messages_calls == upstream.count_calls == 0
    assert "1,000,000 input tokens (its document" in record["error"]
    with proxied(tmp_path / "more", counts=counts, cap="10.00") as (upstream, proxy):
        sent = send(proxy.url, ask)
        (hold,) = proxy.records("hold")
    assert sent.status_code == 200 and hold["input_tokens_counted"] >= 1_000_000


def test_a_batch_request_with_an_image_or_a_document_is_held_at_the_window(
    tmp_path: Path,
) -> None:
    """A batch's requests are held by the local estimate (no count each): one with a
    document by URL was held at its URL's tokens."""
    params = {"model": OPUS, "max_tokens": 100, "messages": DOCUMENT}
    batch = json.dumps({"requests": [{"custom_id": "a", "params": params}]}).encode()
    with proxied(tmp_path) as (upstream, proxy):
        answer = send(proxy.url, batch, "/v1/messages/batches")
        (record,) = proxy.records("refused")
    assert answer.status_code == 400 and not upstream.batches
    assert "does not fit the cap" in record["error"]


def test_us_only_inference_is_held_and_priced_at_one_point_one(tmp_path: Path) -> None:
    pricer = Pricer()
    with proxied(tmp_path, ["honest", "workspace_us"]) as (upstream, proxy):
        send(proxy.url, body(model="claude-opus-4-6", inference_geo="us"))
        send(proxy.url, body(model="claude-opus-4-6"))  # the workspace's default: the US
        refused = send(proxy.url, body(model="claude-haiku-4-5", inference_geo="us"))
        (asked, asked_record), (default, default_record) = by_request_id(proxy, upstream.bills)
    us = Modifiers(inference_geo="us")
    for bill, record in ((asked, asked_record), (default, default_record)):
        assert record["modifiers"] == {"inference_geo": "us"}
        assert cost(record) == bill.billed(pricer) == pricer.price(bill.model, bill.usage, us).total
        assert cost(record) == pricer.price(bill.model, bill.usage).total * D("1.1")
        assert D(str(record["reserved_usd"])) >= cost(record)
    assert refused.status_code == 400 and "Opus 4.6 and later" in refused.text
    assert len(upstream.bills) == 2


def test_an_upstream_that_bills_above_the_hold_is_flagged_and_learned_from(
    tmp_path: Path,
) -> None:
    with proxied(tmp_path, ["over_max", "honest"]) as (upstream, proxy):
        send(proxy.url, body(max_tokens=500))
        send(proxy.url, body(max_tokens=500))
        (over, first), (_, second) = by_request_id(proxy, upstream.bills)
    assert first["over_reservation"] is True and first["output_tokens"] == 1007
    assert cost(first) == over.billed(Pricer()) > D(str(first["reserved_usd"]))
    # The next hold on that model takes the overshoot it showed (2x max_tokens and more).
    assert D(str(second["reserved_usd"])) > 2 * D(str(first["reserved_usd"])) * D("0.9")


# --- fair holds and bounded waits --------------------------------------------------------


def test_clients_that_ask_for_everything_run_side_by_side(tmp_path: Path) -> None:
    """The leading coding agent asks 128,000 tokens of Opus 5.5 a call: under a $1 cap each
    holds its fair share, its max_tokens lowered to it; none is refused."""
    with proxied(tmp_path, ["slow"] * 4) as (upstream, proxy):
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: send(proxy.url, body(max_tokens=128_000)), range(4)))
        records = proxy.records("turn")
    assert [a.status_code for a in answers] == [200] * 4 and len(records) == 4
    assert all(r["lowered"] == "fair share" and 256 <= r["max_tokens"] < 128_000 for r in records)
    assert {b.max_tokens for b in upstream.bills} == {r["max_tokens"] for r in records}
    # The line each call is shown as (headless, and in the dashboard) says so.
    for r in records:
        lowered = f"max_tokens 128,000->{r['max_tokens']:,} (fair share)"
        assert lowered in shown(r) and "waited" not in shown(r)


# With a useful minimum of 1,500 tokens of Opus 5.5 (about $0.033), a $0.05 cap has room for
# one call at a time.
ONE_AT_A_TIME = {"cap": "0.05", "min_useful_tokens": 1500}


def test_a_request_that_fits_once_calls_in_flight_settle_waits_for_them(tmp_path: Path) -> None:
    with proxied(tmp_path, ["gated", "honest"], hold_wait_s=60.0, **ONE_AT_A_TIME) as (up, proxy):
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(send, proxy.url, body(max_tokens=1800))
            while up.messages_calls == 0:  # held, sent, and its answer held open
                time.sleep(0.01)
            second = pool.submit(send, proxy.url, body(max_tokens=1800))
            while proxy.meter.core.needed is None:  # it did not fit: it waits
                time.sleep(0.01)
            up.gate.set()  # the first settles, far below its hold
            answers = [first.result(), second.result()]
        records = proxy.records("turn")
    assert [a.status_code for a in answers] == [200, 200]
    assert [r.get("waited_s") is not None for r in records] == [False, True]
    assert re.search(r", waited \d+\.\ds for calls in flight\]", shown(records[1]))
    assert "waited" not in shown(records[0])


def test_money_spent_refuses_without_waiting(tmp_path: Path) -> None:
    with proxied(tmp_path, ["no_answer"], hold_wait_s=60.0, **ONE_AT_A_TIME) as (_, proxy):
        send(proxy.url, body(max_tokens=1800))  # its worst case stays spent
        refused = send(proxy.url, body(max_tokens=1800))
        (record,) = proxy.records("refused")
    assert refused.status_code == 400 and "waiting" not in record["error"]


def test_the_proxy_takes_the_useful_minimum_from_the_settings(tmp_path: Path) -> None:
    """A cap with room for 300 output tokens: sent at the default minimum (256), refused at
    a minimum of 1,000."""
    req = json.loads(body(model="claude-haiku-5-5", max_tokens=4000))
    rates = Pricer().rates("claude-haiku-5-5", 0, Modifiers(inference_geo="us"))
    tokens = int(estimate_request_tokens(req) * 1.3) + 1
    cap = rates.input * tokens + rates.output * 300
    for minimum, status in ((256, 200), (1000, 400)):
        with proxied(tmp_path / str(minimum), cap=str(cap), min_useful_tokens=minimum) as (_, p):
            assert send(p.url, json.dumps(req).encode()).status_code == status


# --- no round trip the client did not ask for ---------------------------------------------


def test_a_coding_session_asks_count_tokens_once(tmp_path: Path) -> None:
    """20 calls of one session, each re-sending the history with one more exchange: the
    first is counted, the rest are sized from what the previous call billed."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "fix the bug " * 20}]
    with proxied(tmp_path) as (upstream, proxy):
        for i in range(20):
            request = {
                "model": OPUS,
                "max_tokens": 128_000,
                "system": [{"type": "text", "text": "You are a coding agent. " * 40}],
                "messages": messages,
            }
            answer = send(proxy.url, json.dumps(request).encode()).json()
            messages = [
                *messages,
                {"role": "assistant", "content": answer["content"]},
                {"role": "user", "content": f"step {i} done: " + "output " * 30},
            ]
        records = proxy.records("turn")
    assert upstream.count_calls == 1 and len(records) == 20
    assert [r["input_count_source"] for r in records[1:]] == ["prefix+estimate"] * 19
    for record, bill in zip(records, upstream.bills, strict=True):
        assert record["input_tokens_counted"] >= bill.true_input


# --- the hold record ---------------------------------------------------------------------


def test_every_call_is_held_in_the_log_before_it_is_sent(tmp_path: Path) -> None:
    with proxied(tmp_path, ["honest", "overloaded"]) as (_, proxy):
        send(proxy.url, body())
        send(proxy.url, body())
        records = proxy.records()
    kinds = [r["type"] for r in records]
    assert kinds == ["run_start", "hold", "turn", "hold", "attempt"]
    for hold, call in ((records[1], records[2]), (records[3], records[4])):
        assert hold["hold_id"] == call["hold_id"] and hold["source"] == "proxy"
        assert hold["reserved_usd"] == call["reserved_usd"]


def test_a_killed_proxy_leaves_its_calls_in_flight_and_report_counts_them(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    with BillingUpstream(["stall"], stall_s=30) as upstream:
        proxy = subprocess.Popen(
            [
                *(sys.executable, "-m", "tuiagent", "proxy", "--no-ui", "--port", "0"),
                *("--upstream", upstream.base_url, "--log-dir", str(logs), "--max-cost", "1"),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        try:
            assert proxy.stdout is not None
            url = proxy.stdout.readline().strip().rsplit(" ", 1)[-1]
            client = threading.Thread(
                target=lambda: _ignore_errors(send, url, body(max_tokens=2000)), daemon=True
            )
            client.start()
            while upstream.messages_calls == 0:  # sent, so held (and its hold written)
                time.sleep(0.02)
            proxy.send_signal(signal.SIGKILL)
            proxy.wait(timeout=10)
        finally:
            if proxy.poll() is None:
                proxy.kill()
    (log,) = logs.glob("*.jsonl")
    kinds = [json.loads(line)["type"] for line in log.read_text().splitlines()]
    assert kinds == ["run_start", "hold"]
    hold = json.loads(log.read_text().splitlines()[1])
    (run,) = build_report(logs).runs
    assert run.died_in_flight_calls == 1 and run.ended == "cut off (no run_end)"
    assert run.cost == run.died_in_flight == D(str(hold["reserved_usd"])) > 0


def _ignore_errors(*call: Any) -> None:
    with suppress(httpx2.HTTPError):
        call[0](*call[1:])


def test_usage_reports_where_and_how_it_ran() -> None:
    usage = TokenUsage.from_api(
        {"input_tokens": 1, "output_tokens": 2, "inference_geo": "us", "speed": "fast"}
    )
    assert (usage.inference_geo, usage.speed) == ("us", "fast")
    assert usage.with_delta({"output_tokens": 9}).inference_geo == "us"  # message_start's


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
@pytest.mark.parametrize("stream", [True, False])
def test_an_answer_compressed_anyway_is_read_for_its_bill(
    tmp_path: Path, coding: str, stream: bool
) -> None:
    """An upstream (a gateway) that compresses its answer although the proxy asked for
    `identity`: the call was recorded as "connection dropped" at its worst case. It is read
    as it arrives, decoded, and recorded as billed; the client gets the bytes as sent."""
    pricer = Pricer()
    with (
        BillingUpstream(encoding=coding) as upstream,
        proxy_to(upstream.base_url, tmp_path, "1.00") as proxy,
        httpx2.Client() as client,
    ):
        request = client.build_request(
            "POST", proxy.url + "/v1/messages", content=body(stream=stream), headers=HEADERS
        )
        response = client.send(request, stream=True)
        raw = b"".join(response.iter_raw())
        ((bill, record),) = by_request_id(proxy, upstream.bills)
    assert response.headers["content-encoding"] == coding
    assert b"message" in zlib.decompress(raw, zlib.MAX_WBITS | 32)  # as the upstream sent it
    assert record["type"] == "turn" and not record.get("usage_unknown")
    assert cost(record) == bill.billed(pricer) < D(str(record["reserved_usd"]))


def test_an_answer_in_an_encoding_the_proxy_cannot_read_says_so(tmp_path: Path) -> None:
    with (
        BillingUpstream(encoding="br") as upstream,
        proxy_to(upstream.base_url, tmp_path, "1.00") as proxy,
        httpx2.Client() as client,
    ):
        request = client.build_request(
            "POST", proxy.url + "/v1/messages", content=body(), headers=HEADERS
        )
        b"".join(client.send(request, stream=True).iter_raw())
        ((_, record),) = by_request_id(proxy, upstream.bills)
    assert record["type"] == "attempt" and record["usage_unknown"] is True
    assert record["error_type"] == "unreadable_answer"
    assert "'br'-encoded, which the proxy cannot read" in record["error"]
    assert cost(record) == D(str(record["reserved_usd"]))  # the worst case, kept
