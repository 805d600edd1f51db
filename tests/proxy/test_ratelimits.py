"""Rate limits (issue 26, item 4): the `anthropic-ratelimit-*` headers of the upstream's
answers kept per key (by its hash, never the key) and shown in one line; the offline model
sends them as the API does, going down as a key uses them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import anthropic
import httpx2
from hypothesis import given
from hypothesis import strategies as st

from tests.support.loopback import LoopbackAPI, status
from tests.support.proxy_harness import KEY, MODEL, proxied_loopback
from tuiagent.offline import OfflineModel
from tuiagent.offline.limits import LIMITS
from tuiagent.proxy.ratelimits import KINDS, PREFIX, KeyLimits, Limit, RateLimits, limits_line

MESSAGE = "Number of input tokens has exceeded your per-minute rate limit"
RATE_LIMITED = {"type": "error", "error": {"type": "rate_limit_error", "message": MESSAGE}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _post(model: OfflineModel, key: str, body: dict[str, object]) -> httpx2.Response:
    async def post() -> httpx2.Response:
        async with httpx2.AsyncClient(transport=model, base_url="http://offline") as client:
            return await client.post("/v1/messages", json=body, headers={"x-api-key": key})

    return asyncio.run(post())


def _ask(model: OfflineModel, key: str, text: str = "hi") -> httpx2.Response:
    return _post(model, key, {"model": MODEL, "max_tokens": 100, "messages": [_user(text)]})


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_the_offline_model_sends_limits_that_go_down_as_a_key_uses_them() -> None:
    clock = Clock()
    model = OfflineModel(clock=clock)
    first = _ask(model, "key-a", "word " * 3000).headers
    second = _ask(model, "key-a", "word " * 3000).headers
    other = _ask(model, "key-b").headers
    for kind in KINDS:
        for part in ("limit", "remaining", "reset"):
            assert f"{PREFIX}{kind}-{part}" in first
    assert first[f"{PREFIX}requests-limit"] == str(LIMITS["requests"])
    req = [int(h[f"{PREFIX}requests-remaining"]) for h in (first, second, other)]
    assert req == [LIMITS["requests"] - 1, LIMITS["requests"] - 2, LIMITS["requests"] - 1]
    ins = [int(h[f"{PREFIX}input-tokens-remaining"]) for h in (first, second)]
    assert ins[1] < ins[0] < LIMITS["input-tokens"]  # about 3,000 tokens each
    assert all(n % 1000 == 0 for n in ins)  # tokens rounded to the thousand, as the API does
    reset = datetime.fromisoformat(first[f"{PREFIX}input-tokens-reset"])
    assert reset.tzinfo is not None and clock.now < reset.timestamp() <= clock.now + 60
    # A minute later every bucket is full again.
    clock.now += 61
    again = _ask(model, "key-a").headers
    assert int(again[f"{PREFIX}requests-remaining"]) == LIMITS["requests"] - 1


def test_cache_reads_do_not_count_against_the_input_limit() -> None:
    model = OfflineModel(clock=Clock())
    system = [{"type": "text", "text": "rules " * 3000, "cache_control": {"type": "ephemeral"}}]
    left = []
    for _ in range(3):
        body = {"model": MODEL, "max_tokens": 50, "system": system, "messages": [_user("hi")]}
        answer = _post(model, "k", body)
        assert answer.status_code == 200, answer.text
        left.append(int(answer.headers[f"{PREFIX}input-tokens-remaining"]))
    # The first call wrote ~3,000 tokens; the others read them, and count a few only.
    assert left[0] <= LIMITS["input-tokens"] - 3000 and left[1] == left[2] == left[0]


def test_the_proxy_keeps_each_keys_limits_by_its_hash(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path) as (_api, proxy):
        for key in (KEY, KEY, "sk-ant-api03-ANOTHER-KEY-0000"):
            client = anthropic.Anthropic(api_key=key, base_url=proxy.url, max_retries=0)
            client.messages.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
            )
        seen = proxy.meter.rate_limits.snapshot()
    assert len(seen) == 2 and all(s.key.startswith("k-") for s in seen)
    mine = seen[1]  # the most recently seen first
    # (a real clock: the bucket refills a request every 15 ms)
    assert mine.limits["requests"].remaining in (LIMITS["requests"] - 2, LIMITS["requests"] - 1)
    assert seen[0].limits["requests"].remaining == LIMITS["requests"] - 1
    shown = limits_line(mine, mine.seen_at - 1)  # a second before its reset
    assert shown.startswith(f"key {mine.key[:10]}: requests 3,99") and "/4,000 · in " in shown
    assert KEY not in json.dumps([s.__dict__ for s in seen], default=str)


def test_a_429s_limits_and_retry_after_are_kept(tmp_path: Path) -> None:
    reset = int(time.time()) + 3600  # (a fixed date made this test fail once it passed)
    headers = {
        "retry-after": "7",
        f"{PREFIX}input-tokens-limit": "30000",
        f"{PREFIX}input-tokens-remaining": "0",
        f"{PREFIX}input-tokens-reset": datetime.fromtimestamp(reset, UTC).isoformat(),
    }
    api = LoopbackAPI(faults=[status(429, RATE_LIMITED, **headers)])
    with proxied_loopback(tmp_path, api=api) as (_, proxy):
        client = anthropic.Anthropic(api_key=KEY, base_url=proxy.url, max_retries=0)
        with contextlib.suppress(anthropic.RateLimitError):
            client.messages.create(model=MODEL, max_tokens=50, messages=[_user("hi")])  # type: ignore[list-item]
        (seen,) = proxy.meter.rate_limits.snapshot()
    assert seen.status == 429 and seen.retry_after_s == 7
    assert seen.limits == {"input-tokens": Limit(30000, 0, float(reset))}
    assert (
        limits_line(seen, seen.seen_at + 2) == f"key {seen.key[:10]}: in 0/30k · 429: retry in 5s"
    )


def test_a_limit_past_its_reset_reads_full_and_a_narrow_line_drops_the_sizes() -> None:
    limits = {
        "requests": Limit(50, 10, 100.0),
        "tokens": Limit(30000, 1000, 100.0),
        "input-tokens": Limit(30000, 1000, 130.0),
        "output-tokens": Limit(8000, 8000, 90.0),
    }
    seen = KeyLimits("k-0123456789abcdef", limits, 200, 80.0)
    assert limits_line(seen, 90.0) == (
        "key k-01234567: requests 10/50 · in 1,000/30k · out 8,000/8,000 · full in 40s"
    )
    # `tokens` is the stricter of in and out: not said again. Past 100 s requests are full.
    assert limits_line(seen, 120.0, width=60) == (
        "key k-01234567: requests 50 · in 1,000 · out 8,000 · full in 10s"
    )


@given(st.dictionaries(st.sampled_from([f"{PREFIX}{k}-{p}" for k in KINDS for p in ("limit", "remaining", "reset")] + ["retry-after"]), st.text(max_size=40)))  # fmt: skip
def test_any_header_values_keep_numbers_and_times_only(headers: dict[str, str]) -> None:
    book = RateLimits(clock=lambda: 0.0)
    book.observe("Bearer " + KEY, 429, headers)
    for seen in book.snapshot():
        assert seen.key.startswith("k-")
        for lim in seen.limits.values():
            assert lim.limit is None or isinstance(lim.limit, int)
            assert lim.remaining is None or isinstance(lim.remaining, int)
            assert lim.reset_at is None or isinstance(lim.reset_at, float)
        line = limits_line(seen, 0.0)
        assert line.isprintable() and KEY not in line
