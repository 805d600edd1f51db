"""Message Batches through the proxy (issue 23, item 4): a batch's worst case at batch rates
held at creation, each result settled as the client reads it through the proxy, what never
ran released, unread results kept at their worst case."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.support.billing_upstream import BillingUpstream
from tests.support.proxy_harness import KEY, HeadlessProxy, Proxied, proxy_to
from tests.support.scripted_api import ScriptedAPI
from tuiagent.config import Settings
from tuiagent.cost.budget import open_run_budget
from tuiagent.cost.display import money
from tuiagent.cost.pricing import Modifiers, Pricer
from tuiagent.ledger import BudgetSpec, Scopes, Window
from tuiagent.llm.tokens import TokenUsage
from tuiagent.report.build import build_report

MODEL = "claude-sonnet-4-5"


def answer(_: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": "a short answer from the batch"}]


def requests(n: int, max_tokens: int = 1000) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"req-{i}",
            "params": {
                "model": MODEL,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"question number {i}"}],
            },
        }
        for i in range(n)
    ]


def report_text(log_dir: Path) -> str:
    from rich.console import Console

    from tuiagent.report.tables import runs_table

    console = Console(width=300, record=True)
    console.print(runs_table(build_report(log_dir)))
    return console.export_text()


def sdk(proxy: Proxied) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=proxy.url, max_retries=0)


def batch_price(usage: dict[str, Any]) -> Decimal:
    return Pricer().price(MODEL, TokenUsage.from_api(usage), Modifiers(processing="batch")).total


def test_a_batch_is_held_whole_at_batch_rates_and_settled_as_its_results_are_read(
    tmp_path: Path,
) -> None:
    with ScriptedAPI(answer) as api, proxy_to(api.base_url, tmp_path, "5.00") as proxy:
        client = sdk(proxy)
        batch = client.messages.batches.create(requests=requests(3))  # type: ignore[arg-type]
        holds = proxy.records("hold")
        held = proxy.budget.snapshot().in_flight
        api.end_batch(batch.id, {"req-2": "canceled"})
        ended = client.messages.batches.retrieve(batch.id)
        results = list(client.messages.batches.results(batch.id))
        settled = proxy.budget.snapshot()
        calls = proxy.records("turn", "attempt")
    assert len(api.batches) == 1 and len(holds) == 3
    assert held == sum(Decimal(str(h["reserved_usd"])) for h in holds) > 0
    # The results are read through the proxy, not from the upstream's host.
    assert ended.results_url == f"{proxy.url}/v1/messages/batches/{batch.id}/results"
    assert [r.result.type for r in results] == ["succeeded", "succeeded", "canceled"]
    turns = [c for c in calls if c["type"] == "turn"]
    (canceled,) = [c for c in calls if c["type"] == "attempt"]
    assert [t["custom_id"] for t in turns] == ["req-0", "req-1"]
    assert all(t["batch_id"] == batch.id and t["purpose"] == "batch" for t in turns)
    for turn, result in zip(turns, results, strict=False):
        assert result.result.type == "succeeded"
        usage = result.result.message.usage.model_dump()
        # Priced at batch rates (half the standard price for this model).
        assert Decimal(str(turn["cost_usd"])) == pytest.approx(batch_price(usage))
        standard = Pricer().price(MODEL, TokenUsage.from_api(usage)).total
        assert batch_price(usage) * 2 == pytest.approx(standard)
    assert canceled["custom_id"] == "req-2" and canceled["cost_usd"] == 0
    assert settled.in_flight == 0 and settled.settled == pytest.approx(
        sum(Decimal(str(t["cost_usd"])) for t in turns)
    )
    # Every hold is closed by its request's record.
    assert {h["hold_id"] for h in holds} == {c["hold_id"] for c in calls}


def test_reading_the_results_twice_settles_each_request_once(tmp_path: Path) -> None:
    with ScriptedAPI(answer) as api, proxy_to(api.base_url, tmp_path, "5.00") as proxy:
        client = sdk(proxy)
        batch = client.messages.batches.create(requests=requests(2))  # type: ignore[arg-type]
        api.end_batch(batch.id)
        list(client.messages.batches.results(batch.id))
        list(client.messages.batches.results(batch.id))
        assert len(proxy.records("turn")) == 2


def test_a_result_whose_usage_is_nonsense_keeps_its_worst_case(tmp_path: Path) -> None:
    # The first request's result reports `output_tokens: "1e30"`; the second is honest.
    with (
        BillingUpstream(["bad_usage", "honest"]) as api,
        proxy_to(api.base_url, tmp_path, "5.00") as proxy,
    ):
        client = sdk(proxy)
        batch = client.messages.batches.create(requests=requests(2))  # type: ignore[arg-type]
        results = list(client.messages.batches.results(batch.id))
        calls = proxy.records("turn", "attempt")
        in_flight = proxy.budget.snapshot().in_flight
    assert [r.custom_id for r in results] == ["req-0", "req-1"]  # passed on whole
    unknown, honest = sorted(calls, key=lambda c: c["custom_id"])
    assert unknown["type"] == "attempt" and unknown["usage_unknown"] is True
    assert unknown["cost_usd"] == unknown["reserved_usd"] > 0
    assert honest["type"] == "turn" and in_flight == 0


def test_results_compressed_anyway_are_read_and_settle(tmp_path: Path) -> None:
    """Results the upstream gzips although the proxy asked for `identity`: read decoded as
    they pass, each settling its request (they were kept at their worst case, unread)."""
    with (
        BillingUpstream(encoding="gzip") as api,
        proxy_to(api.base_url, tmp_path, "5.00") as proxy,
    ):
        client = sdk(proxy)
        batch = client.messages.batches.create(requests=requests(2))  # type: ignore[arg-type]
        results = list(client.messages.batches.results(batch.id))
        turns = proxy.records("turn")
        left = proxy.budget.snapshot().in_flight
    assert [r.result.type for r in results] == ["succeeded", "succeeded"]
    assert len(turns) == 2 and left == 0


def test_a_batch_that_does_not_fit_is_refused_before_it_is_sent(tmp_path: Path) -> None:
    # 100 requests of 128,000 output tokens of Opus at batch rates: far over $1.
    many = requests(100, max_tokens=64000)
    with ScriptedAPI(answer) as api, proxy_to(api.base_url, tmp_path, "1.00") as proxy:
        with pytest.raises(anthropic.BadRequestError, match="does not fit the cap"):
            sdk(proxy).messages.batches.create(requests=many)  # type: ignore[arg-type]
        assert api.batches == {} and proxy.records("hold") == []
        assert proxy.budget.snapshot().in_flight == 0
        (refused,) = proxy.records("refused")
    assert "batch of 100 request(s)" in refused["error"]


def test_a_batch_is_held_against_the_budgets_its_requests_fall_under(tmp_path: Path) -> None:
    # A $0.02 a day budget on the model, under a $5 cap: one request of the batch fits it
    # (about $0.0075 of output at batch rates), three do not.
    settings = Settings().with_changes(
        max_cost_usd=Decimal(5),
        ledger_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        budgets=(BudgetSpec("model", Window.parse("day"), Decimal("0.02"), MODEL),),
    )
    budget = open_run_budget(settings, Scopes(run="proxy-run"), what="test", name="proxy")
    try:
        with ScriptedAPI(answer) as api, proxy_to(api.base_url, tmp_path, budget=budget) as p:
            with pytest.raises(anthropic.BadRequestError, match="does not fit a budget"):
                sdk(p).messages.batches.create(requests=requests(3))  # type: ignore[arg-type]
            assert api.batches == {} and budget.snapshot().in_flight == 0
            (refused,) = p.records("refused")
            released = p.records("hold", "attempt")  # what was held before one did not fit
            sdk(p).messages.batches.create(requests=requests(1))  # type: ignore[arg-type]
            hold = p.records("hold")[-1]
            assert len(api.batches) == 1
            (line,) = [b for b in budget.stack.lines() if b.value == MODEL]  # type: ignore[union-attr]
    finally:
        budget.close()
    assert "'req-" in refused["error"] and "of the batch" in refused["error"]
    # The request that did not fit is numbered as it was taken in: no call without a record.
    numbers = [r["turn"] for r in released if r["type"] == "attempt"] + [refused["turn"]]
    assert numbers == list(range(1, len(numbers) + 1)) and hold["turn"] == len(numbers) + 1
    # Requests held before the one that did not fit are released, each with its record.
    holds = [r["hold_id"] for r in released if r["type"] == "hold"]
    unsent = [r for r in released if r["type"] == "attempt"]
    assert holds and [r["hold_id"] for r in unsent] == holds
    assert all(r["sent"] is False and r["cost_usd"] == 0 for r in unsent)
    assert line.held == Decimal(str(hold["reserved_usd"])) > 0


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"requests": "all"}, "requests: Input should be a valid list"),
        ({"requests": []}, "requests: List should have at least 1 item"),
        ({"requests": [{"params": {}}]}, "requests.0.custom_id"),
        (
            {
                "requests": [
                    requests(1)[0],
                    {
                        **requests(1)[0],
                        "custom_id": "x",
                        "params": {"model": MODEL, "max_tokens": "1000", "messages": []},
                    },
                ]
            },
            "requests.1.params.max_tokens: Input should be a valid integer",
        ),
        ({"requests": [requests(1)[0], requests(1)[0]]}, "used twice"),
    ],
)
def test_a_batch_it_cannot_read_exactly_is_refused_naming_the_field(
    tmp_path: Path, body: dict[str, Any], named: str
) -> None:
    with ScriptedAPI(answer) as api, proxy_to(api.base_url, tmp_path, "5.00") as proxy:
        import httpx2

        r = httpx2.post(proxy.url + "/v1/messages/batches", json=body, headers={"x-api-key": KEY})
        assert api.batches == {}
    assert r.status_code == 400 and named in r.json()["error"]["message"]


def test_a_cancelled_batch_releases_what_never_ran(tmp_path: Path) -> None:
    with ScriptedAPI(answer) as api, proxy_to(api.base_url, tmp_path, "5.00") as proxy:
        client = sdk(proxy)
        batch = client.messages.batches.create(requests=requests(4))  # type: ignore[arg-type]
        assert proxy.budget.snapshot().in_flight > 0
        client.messages.batches.cancel(batch.id)  # ended at once here: none of it ran
        after = proxy.budget.snapshot()
        attempts = proxy.records("attempt")
    assert after.in_flight == 0 and after.settled == 0
    assert len(attempts) == 4 and all(a["error_type"] == "never_ran" for a in attempts)


def test_a_batch_whose_results_are_never_read_keeps_its_worst_case(tmp_path: Path) -> None:
    with ScriptedAPI(answer) as api, proxy_to(api.base_url, tmp_path, "5.00") as proxy:
        client = sdk(proxy)
        batch = client.messages.batches.create(requests=requests(3))  # type: ignore[arg-type]
        api.end_batch(batch.id)
        client.messages.batches.retrieve(batch.id)  # ended, results not read
        held = proxy.budget.snapshot().in_flight
    records = [json.loads(line) for line in proxy.log_path.read_text().splitlines()]
    assert held > 0 and records[-1]["type"] == "run_end"
    assert Decimal(str(records[-1]["in_flight_usd"])) == held
    # `report` shows it held: three holds no call record closes, at their worst case.
    (run,) = build_report(tmp_path).runs
    assert run.died_in_flight_calls == 3 and run.died_in_flight == held
    assert run.ended == "stopped"
    shown = report_text(tmp_path)
    assert "3 call(s) still held when the run ended (batch results not read)" in shown


def test_batches_through_main_are_not_forwarded_unmetered(tmp_path: Path) -> None:
    """The row of issue 23: a batch created through the proxy with the cap spent."""
    with ScriptedAPI(answer) as api, proxy_to(api.base_url, tmp_path, "0.01") as proxy:
        sdk(proxy).messages.create(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "x" * 9000}]
        )
        with pytest.raises(anthropic.BadRequestError):
            sdk(proxy).messages.batches.create(requests=requests(100, 64000))  # type: ignore[arg-type]
        assert api.batches == {}


def test_the_proxy_stopping_says_what_unread_batches_still_hold(tmp_path: Path) -> None:
    """The total printed on stop said "$0.0000 spent" while a batch whose results were not
    read held its worst case, which the upstream bills: it says so."""
    with ScriptedAPI(answer) as api, HeadlessProxy(api.base_url, tmp_path, "5") as proxy:
        batch = proxy.client().messages.batches.create(requests=requests(3))  # type: ignore[arg-type]
        api.end_batch(batch.id)
        status, out, _ = proxy.stop()
    (end,) = [r for r in proxy.records() if r["type"] == "run_end"]
    held = money(Decimal(str(end["in_flight_usd"])))
    assert status == 130 and Decimal(str(end["in_flight_usd"])) > 0
    assert f"$0.0000 spent of the cap $5.00, {held} still held (batch results not read)" in out
