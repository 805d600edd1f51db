"""Prompt caching: the planner, the offline model's cache rules, state, reasons, savings."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.session import collect
from tuiagent.agent.events import CacheStateChanged, Notice, TurnFinished
from tuiagent.config import Settings
from tuiagent.llm.tokens import (
    MAX_BREAKPOINTS,
    block_tokens,
    count_breakpoints,
    estimate_request_tokens,
    min_cacheable_tokens,
    plan_breakpoints,
)
from tuiagent.offline import OfflineModel
from tuiagent.runs.log import read_records
from tuiagent.session import Session, open_session

MODEL = "claude-sonnet-5-5"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def session_with_clock(workspace: Path, log_dir: Path, clock: Clock, **overrides: Any) -> Session:
    cfg = Settings().with_changes(
        **{
            "log_dir": log_dir,
            "tier": "balanced",
            "system_prompt": "You are careful. " * 400,
            **overrides,
        }
    )
    model = OfflineModel(clock=clock)
    session = open_session(cfg, workspace=workspace, offline=True, offline_model=model)
    session.agent.caller.wall_clock = clock
    return session


def turns_of(events: list[Any]) -> list[dict[str, Any]]:
    return [
        e.record.to_json()
        for e in events
        if isinstance(e, TurnFinished) and e.record.to_json()["purpose"] == "agent"
    ]


# --- the planner ------------------------------------------------------------------------

texts = st.text(alphabet="abcdefghij klmnop 0123456789", min_size=0, max_size=3000)


@settings(max_examples=80, deadline=None)
@given(system=texts, turns=st.lists(texts, min_size=1, max_size=12), tools=st.integers(0, 5))
def test_every_request_has_one_to_four_breakpoints_above_the_minimum(
    system: str, turns: list[str], tools: int
) -> None:
    messages = [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": [{"type": "text", "text": t or "x"}],
        }
        for i, t in enumerate(turns)
    ]
    if messages[-1]["role"] == "assistant":
        messages.append({"role": "user", "content": [{"type": "text", "text": "go on"}]})
    request = {
        "model": MODEL,
        "max_tokens": 100,
        "system": system,
        "tools": [
            {"name": f"t{i}", "description": "d " * 50, "input_schema": {"type": "object"}}
            for i in range(tools)
        ],
        "messages": messages,
    }
    before = json.dumps(request)
    planned = plan_breakpoints(request, MODEL)
    n = count_breakpoints(planned)
    above = estimate_request_tokens(request) >= min_cacheable_tokens(MODEL)
    assert n <= MAX_BREAKPOINTS
    assert (n >= 1) == above
    last = planned["messages"][-1]["content"][-1]
    assert ("cache_control" in last) == above  # the rolling breakpoint at the end
    assert json.dumps(request) == before  # a copy: the conversation itself is never marked


def test_stable_prefix_gets_its_own_breakpoint_when_it_alone_is_above_the_minimum() -> None:
    request = {
        "model": MODEL,
        "max_tokens": 10,
        "system": "Rules of the house. " * 400,
        "messages": [{"role": "user", "content": "hello"}],
    }
    planned = plan_breakpoints(request, MODEL, "1h")
    assert planned["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert planned["messages"][-1]["content"][-1]["cache_control"]["ttl"] == "1h"
    long_chat = [{"role": "user", "content": "hello " * 1500}]
    small = plan_breakpoints({**request, "system": "Be brief.", "messages": long_chat}, MODEL)
    assert "cache_control" not in small["system"][-1] and count_breakpoints(small) == 1


def test_below_the_minimum_nothing_is_marked() -> None:
    request = {
        "model": MODEL,
        "max_tokens": 10,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert count_breakpoints(plan_breakpoints(request, MODEL)) == 0


# --- the offline model's cache rules ----------------------------------------------------


def _client(model: OfflineModel) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="x",
        base_url="http://offline",
        http_client=httpx2.AsyncClient(transport=model),
        max_retries=0,
    )


def _conversation(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        out.append(
            {
                "role": "user",
                "content": [{"type": "text", "text": f"question {i} " + "context " * 700}],
            }
        )
        out.append({"role": "assistant", "content": [{"type": "text", "text": f"answer {i}"}]})
    out.append({"role": "user", "content": [{"type": "text", "text": "and now?"}]})
    return out


def _grown(n: int, extra: int) -> list[dict[str, Any]]:
    """_conversation(n) with `extra` more short messages after it (appended, as agents do)."""
    out = _conversation(n)
    for i in range(extra):
        role = "assistant" if i % 2 == 0 else "user"
        out.append({"role": role, "content": [{"type": "text", "text": f"more {i}"}]})
    if out[-1]["role"] == "assistant":
        out.append({"role": "user", "content": [{"type": "text", "text": "go on"}]})
    return out


async def _usage(model: OfflineModel, request: dict[str, Any]) -> dict[str, Any]:
    response = await _client(model).messages.create(**request)
    return response.usage.model_dump()


async def test_lookback_reads_an_earlier_breakpoint_within_20_blocks() -> None:
    clock = Clock()
    model = OfflineModel(clock=clock)
    first = plan_breakpoints({"model": MODEL, "max_tokens": 5, "messages": _conversation(3)}, MODEL)
    u1 = await _usage(model, first)
    assert u1["cache_creation_input_tokens"] > 0 and u1["cache_read_input_tokens"] == 0
    # The same conversation, 4 messages longer, with the marker only at its new end.
    longer = plan_breakpoints({"model": MODEL, "max_tokens": 5, "messages": _grown(3, 4)}, MODEL)
    u2 = await _usage(model, longer)
    assert u2["cache_read_input_tokens"] == u1["cache_creation_input_tokens"]
    # More than 20 blocks past the last entry, the lookback does not reach it.
    far = plan_breakpoints({"model": MODEL, "max_tokens": 5, "messages": _grown(3, 22)}, MODEL)
    model2 = OfflineModel(clock=clock)
    await _usage(model2, first)
    assert (await _usage(model2, far))["cache_read_input_tokens"] == 0


async def test_one_hour_and_five_minute_split_and_lifetimes() -> None:
    clock = Clock()
    model = OfflineModel(clock=clock)
    request = plan_breakpoints(
        {"model": MODEL, "max_tokens": 5, "messages": _conversation(2)}, MODEL, "1h"
    )
    u = await _usage(model, request)
    assert u["cache_creation"]["ephemeral_1h_input_tokens"] == u["cache_creation_input_tokens"] > 0
    clock.now += 3000  # 50 minutes: a 1-hour entry is still there
    assert (await _usage(model, request))["cache_read_input_tokens"] > 0
    short = plan_breakpoints({"model": MODEL, "max_tokens": 5, "messages": _conversation(3)}, MODEL)
    await _usage(model, short)
    clock.now += 299  # reads refresh the lifetime
    assert (await _usage(model, short))["cache_read_input_tokens"] > 0
    clock.now += 301
    assert (await _usage(model, short))["cache_read_input_tokens"] < (await _usage(model, short))[
        "cache_read_input_tokens"
    ]


async def test_rules_the_api_enforces_are_enforced() -> None:
    model = OfflineModel()
    messages = _conversation(5)
    for m in messages[:-1:2]:
        m["content"][0]["cache_control"] = {"type": "ephemeral"}
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4"):
        await _usage(model, {"model": MODEL, "max_tokens": 5, "messages": messages})
    mixed = _conversation(2)
    mixed[0]["content"][0]["cache_control"] = {"type": "ephemeral", "ttl": "5m"}
    mixed[2]["content"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    with pytest.raises(anthropic.BadRequestError, match="1h"):
        await _usage(model, {"model": MODEL, "max_tokens": 5, "messages": mixed})


async def test_offline_diagnostics_name_what_changed() -> None:
    model = OfflineModel()
    client = _client(model)
    base = {
        "model": MODEL,
        "max_tokens": 5,
        "system": "Stable rules. " * 300,
        "messages": _conversation(1),
    }
    first = await client.messages.create(**plan_breakpoints(base, MODEL))
    changed = plan_breakpoints({**base, "system": "Other rules. " * 300}, MODEL)
    second = await client.messages.create(**changed, diagnostics={"previous_message_id": first.id})
    body = second.model_dump()
    assert body["diagnostics"]["cache_miss_reason"]["type"] == "system_changed"
    assert body["diagnostics"]["cache_miss_reason"]["cache_missed_input_tokens"] > 0


# --- the agent: state, reasons, savings -------------------------------------------------


async def test_multi_turn_run_writes_then_reads_and_reports_state(
    workspace: Path, log_dir: Path
) -> None:
    clock = Clock()
    session = session_with_clock(workspace, log_dir, clock)
    events = await collect(session, "What do notes.txt and README.md say? Then search for TODO")
    end = session.agent.finish()
    turns = turns_of(events)
    assert len(turns) >= 4
    assert turns[0]["cache_creation_input_tokens"] > 0 and turns[0]["cache_read_input_tokens"] == 0
    for before, t in itertools.pairwise(turns):
        assert (
            t["cache_read_input_tokens"]
            >= before["cache_read_input_tokens"] + before["cache_creation_input_tokens"]
        )
        assert t["cache_miss_reason"] is None
        assert t["saved_by_cache_usd"] > 0
    assert turns[0]["saved_by_cache_usd"] < 0  # a turn that only writes
    for t in turns:
        assert t["cost_without_cache_usd"] == pytest.approx(
            t["cost_usd"] + t["saved_by_cache_usd"], abs=1e-12
        )
    states = [e for e in events if isinstance(e, CacheStateChanged)]
    assert len(states) == len(turns)
    assert states[-1].expires_at == pytest.approx(clock.now + 300)
    assert states[-1].cached_prefix_tokens > states[0].cached_prefix_tokens
    assert (
        0 < end.record.to_json()["cache_hit_rate"] < 1
        and end.record.to_json()["saved_by_cache_usd"] > 0
    )


async def test_expiry_after_five_minutes_is_a_miss_with_its_reason(
    workspace: Path, log_dir: Path
) -> None:
    clock = Clock()
    session = session_with_clock(workspace, log_dir, clock)
    await collect(session, "What does notes.txt say?")
    clock.now += 301
    events = [e async for e in session.agent.send("What does README.md say?")]
    first = turns_of(events)[0]
    assert first["cache_read_input_tokens"] == 0
    assert first["cache_miss_reason"] == "expired"


async def test_a_model_switch_starts_cold(workspace: Path, log_dir: Path) -> None:
    clock = Clock()
    session = session_with_clock(workspace, log_dir, clock)
    await collect(session, "What does notes.txt say?")
    session.agent.set_tier("deep")
    events = [e async for e in session.agent.send("What does README.md say?")]
    first = turns_of(events)[0]
    assert first["model"] == session.agent.settings.router.model_for("deep")
    assert first["cache_read_input_tokens"] == 0 and first["cache_miss_reason"] == "model_changed"


async def test_cache_pays_against_no_cache(workspace: Path, log_dir: Path) -> None:
    prompt = "What do notes.txt and README.md and data.csv say? Then search for TODO"
    cached = session_with_clock(workspace, log_dir, Clock())
    cached_turns = turns_of(await collect(cached, prompt))
    plain = session_with_clock(workspace, log_dir, Clock(), cache=False)
    plain_turns = turns_of(await collect(plain, prompt))
    assert len(cached_turns) == len(plain_turns) >= 4
    assert all(
        t["cache_read_input_tokens"] == t["cache_creation_input_tokens"] == 0 for t in plain_turns
    )
    assert cached.agent.spending.spent < plain.agent.spending.spent
    path = plain.agent.transcript.path
    requests = [json.loads(x) for x in path.read_text().splitlines() if '"kind":"request"' in x]
    assert requests and all("cache_control" not in json.dumps(r) for r in requests)


async def test_keep_warm_refreshes_only_near_expiry_and_when_it_pays(
    workspace: Path, log_dir: Path
) -> None:
    clock = Clock()
    session = session_with_clock(workspace, log_dir, clock, keep_warm=True)
    agent = session.agent
    await collect(session, "What does notes.txt say?")
    assert [e async for e in agent.keep_warm()] == []  # far from expiry: nothing to do
    clock.now += 270
    events = [e async for e in agent.keep_warm()]
    assert any(isinstance(e, Notice) and "refresh" in e.text for e in events)
    refresh = [e.record.to_json() for e in events if isinstance(e, TurnFinished)]
    assert (
        refresh
        and refresh[0]["purpose"] == "keep_warm"
        and refresh[0]["cache_read_input_tokens"] > 0
    )
    clock.now += 200  # past the original expiry, within the refreshed one
    events = [e async for e in agent.send("What does README.md say?")]
    assert turns_of(events)[0]["cache_read_input_tokens"] > 0
    decisions = [r for r in read_records(agent.log.path)[0] if r["type"] == "keep_warm"]
    assert (
        decisions[0]["action"] == "refresh"
        and decisions[0]["refresh_cost_usd"] < decisions[0]["miss_cost_usd"]
    )


async def test_keep_warm_is_off_by_default(workspace: Path, log_dir: Path) -> None:
    clock = Clock()
    session = session_with_clock(workspace, log_dir, clock)
    await collect(session, "What does notes.txt say?")
    clock.now += 270
    assert [e async for e in session.agent.keep_warm()] == []


def test_a_tool_definition_is_counted_by_what_it_holds() -> None:
    """Definitions are counted once and kept: a copy (as plan_breakpoints makes) or a marker
    counts the same; another schema, or another description, counts anew."""
    schema = {"type": "object", "properties": {"path": {"type": "string"}}}
    tool = {"name": "read", "description": "Read a file", "input_schema": schema}
    first = block_tokens(tool)
    assert block_tokens({**tool, "cache_control": {"type": "ephemeral"}}) == first
    wider = {"type": "object", "properties": {"path": {"type": "string"}, "n": {"type": "int"}}}
    assert block_tokens({**tool, "input_schema": wider}) > first
    assert block_tokens({**tool, "description": "Read a file " * 20}) > first


async def test_markers_dropped_to_fit_the_cap_are_named_as_the_miss(
    workspace: Path, log_dir: Path
) -> None:
    # Close to the cap, a call whose worst case fits only without the write premium goes
    # without cache markers: it reads nothing back, and its record says why.
    session = session_with_clock(
        workspace, log_dir, Clock(), tier="deep", max_cost_usd=Decimal("0.10")
    )
    turns: list[dict[str, Any]] = []
    for _ in range(40):
        events = [e async for e in session.agent.send("What does notes.txt say?")]
        turns += turns_of(events)
        if session.agent.snapshot().halt_reason:
            break
    warm = [t for t in turns if t["cache_read_input_tokens"]]
    dropped = [t for t in turns if t["cache_miss_reason"] == "dropped_to_fit_cap"]
    assert warm and dropped, [(t["cache_read_input_tokens"], t["cache_miss_reason"]) for t in turns]
    assert all(
        t["cache_read_input_tokens"] == t["cache_creation_input_tokens"] == 0 for t in dropped
    )
