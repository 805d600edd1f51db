"""The proxy against hostile upstreams and many clients at once (issue 23's property).

16 to 32 concurrent clients send requests of every kind (streamed or not, fast mode, US-only
inference or the workspace's default, 300 to 128,000 max_tokens, some leave mid-stream,
some give up on a stalled answer) through the proxy to a 127.0.0.1 upstream drawn from
honest, count lies (low, zero, negative, missing, not a number), swapped models, cut and
stalled streams, nonsense usage, overbilling, fast mode falling back, no answer at all.
Whatever happens:
- what the upstream billed, within what each request allowed, is within the cap;
- each request the upstream saw is exactly one record, none priced below what it billed;
- no client gets a 500, and nothing raises (no traceback);
- every spelling of the endpoint is metered as it (no 404, no request passed unmetered);
- Message Batches among them: held whole at creation, each result settled as it is read
  through the proxy, the results never read kept at their worst case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.billing_upstream import BEHAVIOURS, COUNTS, BillingUpstream
from tests.support.proxy_harness import proxy_to
from tuiagent.config import Settings
from tuiagent.cost.pricing import Pricer

HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
# Every spelling of the Messages endpoint is that endpoint (metered, never a 404): the real
# API's front end resolves them all, and the SDKs send `//v1/messages` for a base URL with
# a trailing slash. (httpx resolves `.` and `..` itself; the others reach the proxy as sent.)
PATHS = [
    "/v1/messages",
    "/v1/messages?beta=true",
    "//v1/messages",
    "/v1//messages/",
    "/v1/./messages",
    "/v1/x/../messages",
    "/v1/%6Dessages",
    "/v1/messages/?beta=true",
]
MODELS = ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"]


@st.composite
def client_requests(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(st.sampled_from(MODELS))
    request: dict[str, Any] = {
        "model": model,
        "max_tokens": draw(st.sampled_from([300, 4096, 32_000, 128_000])),
        "stream": draw(st.booleans()),
        "messages": [{"role": "user", "content": "go " * draw(st.integers(1, 400))}],
    }
    if model == "claude-opus-5-5" and draw(st.booleans()):
        request["speed"] = "fast"
    geo = draw(st.sampled_from([None, "us", "global"]))
    if geo is not None:
        request["inference_geo"] = geo
    return {
        "request": request,
        "path": draw(st.sampled_from(PATHS)),
        "leave": draw(st.booleans()),  # leaves after the first bytes of a stream
    }


@st.composite
def batch_asks(draw: st.DrawFn) -> dict[str, Any]:
    """A Message Batch of 1-3 such requests; its results read through the proxy, or never."""
    params = [
        {k: v for k, v in draw(client_requests())["request"].items() if k != "stream"}
        for _ in range(draw(st.integers(1, 3)))
    ]
    requests = [{"custom_id": f"c{i}", "params": p} for i, p in enumerate(params)]
    return {"batch": {"requests": requests}, "read": draw(st.booleans())}


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(self.format(record))


async def _client(url: str, asks: list[dict[str, Any]], statuses: list[int]) -> None:
    timeout = httpx2.Timeout(10.0, read=1.0)
    async with httpx2.AsyncClient(timeout=timeout) as client:
        for ask in asks:
            if "batch" in ask:
                with contextlib.suppress(httpx2.TimeoutException):  # slow: it leaves
                    await _batch(client, url, ask, statuses)
                continue
            content = json.dumps(ask["request"]).encode()
            try:
                async with client.stream(
                    "POST", url + ask["path"], content=content, headers=HEADERS
                ) as response:
                    statuses.append(response.status_code)
                    async for _ in response.aiter_raw():
                        if ask["leave"]:
                            break  # hang up mid-answer
            except httpx2.TimeoutException:
                pass  # a stalled answer: the client gives up, and leaves


async def _batch(
    client: httpx2.AsyncClient, url: str, ask: dict[str, Any], statuses: list[int]
) -> None:
    created = await client.post(
        url + "/v1/messages/batches", content=json.dumps(ask["batch"]).encode(), headers=HEADERS
    )
    statuses.append(created.status_code)
    if created.status_code != 200 or not ask["read"]:
        return
    batch_url = f"{url}/v1/messages/batches/{created.json()['id']}"
    batch = (await client.get(batch_url, headers=HEADERS)).json()
    assert batch["results_url"] == batch_url + "/results"  # read through the proxy
    results = await client.get(batch["results_url"], headers=HEADERS)
    statuses.append(results.status_code)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    clients=st.lists(
        st.lists(
            st.one_of(client_requests(), client_requests(), batch_asks()), min_size=1, max_size=3
        ),
        min_size=16,
        max_size=32,
    ),
    behaviours=st.lists(st.sampled_from(BEHAVIOURS), max_size=60),
    counts=st.lists(st.sampled_from(COUNTS), max_size=30),
    cap=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("2"), places=3),
)
def test_hostile_upstreams_and_many_clients_never_pass_the_cap(
    tmp_path: Path,
    clients: list[list[dict[str, Any]]],
    behaviours: list[str],
    counts: list[str],
    cap: Decimal,
) -> None:
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    statuses: list[int] = []
    config = Settings().with_changes(hold_wait_s=0.5)
    log_dir = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        with (
            BillingUpstream(behaviours, counts, stall_s=3.0) as upstream,
            proxy_to(upstream.base_url, log_dir, str(cap), settings=config) as proxy,
        ):

            async def everyone() -> None:
                await asyncio.gather(*(_client(proxy.url, c, statuses) for c in clients))

            asyncio.run(everyone())
            records = proxy.records()
            budget = proxy.budget.snapshot()
    finally:
        logging.getLogger().removeHandler(errors)

    pricer = Pricer()
    assert 500 not in statuses and not errors.seen, errors.seen
    assert 404 not in statuses  # each spelling of /v1/messages is /v1/messages
    # What the upstream billed, within what each request allowed, is within the cap.
    assert sum((b.allowed(pricer) for b in upstream.bills), Decimal(0)) <= cap
    # Each hold is closed by one record, but those of batches whose results were never read:
    # they stay held, at their worst case.
    calls = [r for r in records if r["type"] in ("turn", "attempt")]
    holds = {r["hold_id"]: r for r in records if r["type"] == "hold"}
    assert sorted(r["hold_id"] for r in calls) == sorted(set(r["hold_id"] for r in calls))
    assert {r["hold_id"] for r in calls} <= set(holds)
    kept = [h for i, h in holds.items() if i not in {r["hold_id"] for r in calls}]
    assert all(h["purpose"] == "batch" for h in kept)
    held = sum((Decimal(str(h["reserved_usd"])) for h in kept), Decimal(0))
    assert abs(budget.in_flight - held) <= Decimal("1e-9")  # (a record's dollars: 12 places)
    # Each Messages request the upstream saw is exactly one record, none priced below its
    # bill; each batch request, a record once its result is read, else its hold.
    messages = [b for b in upstream.bills if b.request_id is None or "/" not in b.request_id]
    batched = [b for b in upstream.bills if b not in messages]
    proxied = [r for r in calls if r["purpose"] != "batch"]
    assert len(proxied) == len(messages)
    by_id = {r.get("request_id"): r for r in proxied}
    by_id |= {f"{r['batch_id']}/{r['custom_id']}": r for r in calls if r["purpose"] == "batch"}
    unread = Decimal(0)
    for bill in [b for b in upstream.bills if b.request_id is not None]:
        record = by_id.get(bill.request_id)
        if record is None and bill in batched:  # held: what it allowed (its model, ...)
            unread += bill.allowed(pricer)
            continue
        assert record is not None, bill
        assert Decimal(str(record["cost_usd"])) >= bill.billed(pricer) - Decimal("1e-9"), (
            bill,
            record,
        )
    assert budget.in_flight >= unread
    unanswered = [r for r in proxied if r.get("request_id") is None]
    assert len(unanswered) == sum(1 for b in messages if b.request_id is None)
    for record in unanswered:  # no answer: its worst case
        assert record["usage_unknown"] is True
