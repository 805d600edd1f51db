"""The metered call (issue 11): the cases a hostile server and a moving cap make, one by one."""

from __future__ import annotations

import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_budget_retries import start_slow_run, wait_for_a_call_in_flight
from tests.support.hostile import HostileModel
from tests.support.session import billed_input, collect
from tuiagent.agent.events import BudgetChanged, Event, Notice
from tuiagent.config import Settings
from tuiagent.cost.budget import plan_reservation
from tuiagent.cost.pricing import Pricer
from tuiagent.runs.log import read_records
from tuiagent.runs.records import usage_of
from tuiagent.session import Session, open_session

MODEL = "claude-haiku-5-5"


def hostile_session(
    workspace: Path, log_dir: Path, model: HostileModel, **overrides: Any
) -> Session:
    settings = Settings().with_changes(log_dir=log_dir, tier="fast", max_tokens=1024)
    settings = settings.with_changes(**overrides)
    session = open_session(settings, workspace=workspace, offline=True, offline_model=model)

    async def no_sleep(_: float) -> None:
        return None

    session.agent.caller.meter.sleep = no_sleep
    return session


def calls(session: Session) -> list[dict[str, Any]]:
    records, bad = read_records(session.agent.log.path)
    assert bad == 0
    return [r for r in records if r["type"] in ("turn", "attempt")]


def warnings(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, Notice) and e.level == "warning"]


# --- the worst case: one pure function --------------------------------------------------


def test_plan_reservation_fits_clamps_and_takes_what_the_server_showed() -> None:
    pricer = Pricer()
    request = {"model": MODEL, "max_tokens": 4000, "messages": []}
    rates = pricer.rates(MODEL, 1000)
    plenty = plan_reservation(pricer, MODEL, request, 1000, "estimate", Decimal(10), 256)
    assert plenty is not None and plenty.max_tokens == plenty.output_tokens == 4000
    assert plenty.worst_case_usd == rates.input * 1000 + rates.output * 4000
    tight = rates.input * 1000 + rates.output * 500
    clamped = plan_reservation(pricer, MODEL, request, 1000, "estimate", tight, 256)
    assert clamped is not None and clamped.max_tokens == 500 and clamped.worst_case_usd <= tight
    assert plan_reservation(pricer, MODEL, request, 1000, "estimate", tight, 600) is None
    # A server that billed 1.5x its count and 2x max_tokens is reserved for at that.
    wary = plan_reservation(
        pricer,
        MODEL,
        request,
        1000,
        "estimate",
        tight,
        1,
        input_factor=Decimal("1.5"),
        output_factor=Decimal(2),
    )
    assert wary is not None and wary.input_tokens == 1500
    assert wary.output_tokens == 2 * wary.max_tokens and wary.worst_case_usd <= tight


# --- numbers from the server are checked --------------------------------------------------


@pytest.mark.parametrize("count", ["zero", "negative", "missing", "string"])
async def test_a_count_below_the_estimate_is_not_believed(
    count: str, workspace: Path, log_dir: Path
) -> None:
    model = HostileModel([], counts=[count])
    session = hostile_session(workspace, log_dir, model)
    await collect(session, "What does notes.txt say?")
    first = calls(session)[0]
    assert first["type"] == "turn"
    assert first["input_tokens_counted"] >= billed_input(first) > 0  # never below the size


async def test_count_tokens_404_falls_back_to_the_estimate_with_the_margin(
    workspace: Path, log_dir: Path
) -> None:
    model = HostileModel([], counts=["404"])
    session = hostile_session(workspace, log_dir, model)
    events = await collect(session, "What does notes.txt say? Then search for TODO")
    turns = calls(session)
    assert turns[0]["input_count_source"] == "estimate"
    assert turns[0]["input_tokens_counted"] >= int(turns[0]["input_tokens"] * 1.2)
    assert session.agent.caller.meter.count_calls == 1  # not asked again after a 404
    assert session.agent.state.halt_reason is None and not warnings(events)


async def test_output_above_max_tokens_is_billed_flagged_and_reserved_for_later(
    workspace: Path, log_dir: Path
) -> None:
    model = HostileModel(["over_max_tokens"])
    session = hostile_session(workspace, log_dir, model)
    events = await collect(session, "What does notes.txt say?")
    first, second = calls(session)[:2]
    assert first["output_tokens"] > first["max_tokens"] and first["over_reservation"] is True
    assert first["cost_usd"] > first["reserved_usd"]  # recorded as billed
    assert any("billed more than the call was reserved" in w for w in warnings(events))
    # The next call reserves its output at the overshoot the server showed (> 2x).
    rates = session.agent.pricer.rates(MODEL, second["input_tokens_counted"])
    at_max = rates.input * second["input_tokens_counted"] + rates.output * second["max_tokens"]
    assert Decimal(str(second["reserved_usd"])) > 2 * at_max - rates.input * 10_000


async def test_a_swapped_model_is_priced_as_the_dearer_and_flagged(
    workspace: Path, log_dir: Path
) -> None:
    model = HostileModel(["swapped_model"], swap_to="claude-fable-5-2")
    session = hostile_session(workspace, log_dir, model)
    events = await collect(session, "What does notes.txt say?")
    first = calls(session)[0]
    assert (
        first["model_mismatch"] == "claude-fable-5-2"
        and first["priced_as"] == first["model_mismatch"]
    )
    as_fable = session.agent.pricer.price("claude-fable-5-2", usage_of(first)).total
    assert Decimal(str(first["cost_usd"])) == pytest.approx(as_fable)
    assert any("answered as claude-fable-5-2" in w for w in warnings(events))


# --- every way a call ends is accounted ------------------------------------------------------


@pytest.mark.parametrize(
    "answer", ["cut_tool_json", "non_json_data", "missing_index", "string_usage"]
)
async def test_an_unreadable_stream_is_an_attempt_with_its_input_and_worst_output(
    answer: str, workspace: Path, log_dir: Path
) -> None:
    model = HostileModel([answer])
    session = hostile_session(workspace, log_dir, model)
    await collect(session, "What does notes.txt say?")
    end = session.agent.finish()
    first = calls(session)[0]
    billed = model.billed[0]
    assert first["input_tokens"] == billed.usage.input_tokens  # message_start billed it
    assert billed_input(first) == billed.usage.total_input_tokens > 0
    if first["type"] == "attempt":
        assert first.get("output_unknown") is True
        assert first["output_tokens"] >= 1024  # the most it allowed stays spent
    else:  # a turn whose cut tool call is reported
        assert first["cut_tool_calls"]
    assert Decimal(str(end.record.to_json()["total_cost_usd"])) >= model.bill(session.agent.pricer)


@pytest.mark.parametrize("answer", ["missing_message", "negative_usage", "huge_usage"])
async def test_no_usable_usage_keeps_the_worst_case_spent(
    answer: str, workspace: Path, log_dir: Path
) -> None:
    model = HostileModel([answer])
    session = hostile_session(workspace, log_dir, model)
    await collect(session, "What does notes.txt say?")
    first = calls(session)[0]
    assert first["type"] == "attempt"
    if answer == "missing_message":  # nothing readable: the whole worst case
        assert first["usage_unknown"] is True
        assert first["cost_usd"] == pytest.approx(first["reserved_usd"])
    else:  # message_start's input is known; the output is not
        assert first["output_unknown"] is True and billed_input(first) > 0
    server = session.agent.pricer.price(MODEL, model.billed[0].within_allowed()).total
    assert Decimal(str(first["cost_usd"])) >= server > 0  # at least what the server billed


async def test_a_drop_after_message_start_is_priced(workspace: Path, log_dir: Path) -> None:
    model = HostileModel(["drop_after_start"])
    session = hostile_session(workspace, log_dir, model)
    await collect(session, "What does notes.txt say?")
    first = calls(session)[0]
    assert first["type"] == "attempt" and billed_input(first) > 0
    assert first["cost_usd"] >= session.agent.pricer.price(MODEL, model.billed[0].usage).total


# --- the cap ----------------------------------------------------------------------------------


async def test_lowering_the_cap_in_flight_floors_it_at_settled_plus_in_flight(
    workspace: Path, log_dir: Path
) -> None:
    holder: list[Session] = []
    seen: list[Decimal] = []

    def lower(n: int) -> None:
        if n == 2:
            budget = holder[0].agent.set_cap(Decimal("0.000001")).budget
            seen.append(budget.cap)
            assert budget.in_flight > 0 and budget.cap == budget.settled + budget.in_flight

    model = HostileModel([], on_request=lower)
    session = hostile_session(workspace, log_dir, model)
    holder.append(session)
    events = await collect(session, "What does notes.txt say? Then search for TODO")
    assert seen and session.agent.budget.cap == seen[0]  # what was left of the floor was used
    assert session.agent.budget.settled <= session.agent.budget.cap
    budgets = [e.budget for e in events if isinstance(e, BudgetChanged)]
    assert budgets and all(b.settled <= b.cap for b in budgets)
    assert model.bill(session.agent.pricer) <= session.agent.budget.cap


# --- pre-flight without a round trip per call -----------------------------------------------


async def test_count_tokens_only_when_the_prefix_changed(workspace: Path, log_dir: Path) -> None:
    model = HostileModel([])
    session = hostile_session(workspace, log_dir, model, max_turns=40)
    for prompt in ["What does notes.txt say?", "Search for TODO", "List the files here"]:
        await collect(session, prompt)
    sources = [r["input_count_source"] for r in calls(session)]
    assert sources[0] == "count_tokens" and set(sources[1:]) == {"prefix+estimate"}
    assert session.agent.caller.meter.count_calls == 1
    session.agent.state.history[0]["content"][0]["text"] = "edited"  # the prefix changed
    await collect(session, "What does notes.txt say?")
    assert calls(session)[len(sources)]["input_count_source"] == "count_tokens"
    for record in calls(session):  # the reserved input is never below what was billed
        billed = (
            record["input_tokens"]
            + record["cache_read_input_tokens"]
            + record["cache_creation_input_tokens"]
        )
        assert record["input_tokens_counted"] >= billed


# --- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_end_a_run_like_ctrl_c(
    sig: signal.Signals, code: int, workspace: Path, log_dir: Path, tmp_path: Path
) -> None:
    proc = start_slow_run("What do notes.txt and README.md say?", 50, workspace, log_dir, tmp_path)
    assert wait_for_a_call_in_flight(log_dir)  # not while a tool runs: no call to record then
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    (log,) = log_dir.glob("*.jsonl")
    records, bad = read_records(log)
    assert bad == 0 and records[-1]["type"] == "run_end" and "Traceback" not in err
    assert records[-1]["halt_reason"] == "interrupted"
    assert records[-2]["type"] == "turn" and records[-2]["stop_reason"] == "interrupted"
