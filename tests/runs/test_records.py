"""Typed run-log records: one writer, one tolerant reader, and logs written before them."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support import FIXTURES
from tests.support.cli import run_cli
from tuiagent.cost.pricing import Cost
from tuiagent.llm.tokens import TokenUsage
from tuiagent.runs import records
from tuiagent.runs.records import (
    Answer,
    Attempt,
    ContextEdit,
    ExperimentResult,
    HaltReason,
    KeepWarm,
    Limits,
    McpCost,
    McpServerState,
    ProxyAttempt,
    ProxyRunEnd,
    ProxyRunStart,
    ProxyTurn,
    RefusedCall,
    ReplayedTurn,
    RunEnd,
    RunStart,
    SubAgentEnd,
    ToolCall,
    Turn,
    Unknown,
    UserMessage,
    read,
)

FIXTURE = FIXTURES / "runlog_v0"
USAGE = TokenUsage(
    input_tokens=120,
    output_tokens=33,
    cache_read_input_tokens=900,
    cache_creation_input_tokens=64,
    cache_creation_5m_input_tokens=64,
)
SUB = {"agent": "a1", "parent_agent": "main", "parent_turn": 2, "task": "Summarize a.txt"}

# One of every record type tuiagent writes, with its fields set off their defaults.
EVERY_RECORD: list[records.Record] = [
    RunStart(
        run_id="r1",
        agent="main",
        started_at="2026-12-02T01:06:08.532Z",
        provider="offline",
        simulated=True,
        models={"fast": "claude-haiku-5-5"},
        tier="auto",
        limits=Limits(Decimal("1.5"), 20, 4096),
        replay_of={"run_id": "r0", "turn": "all", "model": "claude-haiku-5-5"},
    ),
    UserMessage(run_id="r1", agent="main", text="read a.txt", tokens=4),
    Turn(
        run_id="r1",
        **SUB,
        turn=3,
        purpose="agent",
        model="claude-haiku-5-5",
        tier="fast",
        simulated=True,
        usage=USAGE,
        context_tokens=1084,
        context_window=200000,
        cost_usd=Decimal("0.000123"),
        cost_breakdown_usd=Cost(input=Decimal("0.0001"), cache_read=Decimal("0.000023")),
        cumulative_cost_usd=Decimal("0.0042"),
        max_tokens=4096,
        max_tokens_requested=8192,
        input_tokens_counted=1100,
        input_count_source="count_tokens",
        reserved_usd=Decimal("0.02"),
        stop_reason="tool_use",
        latency_s=0.25,
        ttft_s=0.05,
        started_at="a",
        ended_at="b",
        request_id="req_1",
        message_id="msg_1",
        route_reason="short question",
        route_candidates=[{"tier": "fast", "predicted_cost_usd": 0.001}],
        escalated_from_turn=2,
        cache_miss_reason="model_changed",
        cost_without_cache_usd=Decimal("0.0009"),
        saved_by_cache_usd=Decimal("0.000777"),
        tool_calls=["read_file"],
        cut_tool_calls=["search_files"],
        priced_as="claude-haiku-5-5",
        over_reservation=True,
        model_mismatch="claude-haiku-5-6",
    ),
    Attempt(
        run_id="r1",
        agent="main",
        turn=1,
        purpose="agent",
        model="m",
        tier="deep",
        status=529,
        error_type="overloaded_error",
        error="API error 529",
        request_id="req_2",
        retry_in_s=1.5,
        retries_used=1,
        usage=USAGE,
        cost_usd=Decimal("0.5"),
        reserved_usd=Decimal("0.75"),
        cumulative_cost_usd=Decimal("0.5"),
        usage_unknown=True,
        sent=False,
    ),
    ToolCall(
        run_id="r1",
        agent="main",
        turn=1,
        tool_use_id="toolu_1",
        name="read_file",
        input={"path": "a.txt"},
        ok=False,
        result_tokens=10,
        original_tokens=900,
        compressed_tokens=10,
        method="head_tail",
        result_id="r3",
    ),
    KeepWarm(
        run_id="r1",
        agent="main",
        model="m",
        cached_prefix_tokens=4000,
        expires_in_s=42.5,
        refresh_cost_usd=Decimal("0.0012"),
        miss_cost_usd=Decimal("0.015"),
        action="refresh",
        reason="cheaper",
    ),
    ContextEdit(
        run_id="r1",
        agent="main",
        action="clear_tool_results",
        turn=4,
        results=2,
        result_ids=["r1", "r2"],
        tokens_before=9000,
        tokens_after=3000,
        cleared_tokens=6000,
        rewritten_tokens=200,
        saved_per_call_usd=Decimal("0.0006"),
        rewrite_cost_usd=Decimal("0.00023"),
        reason="over the threshold",
    ),
    SubAgentEnd(
        run_id="r1",
        **SUB,
        status="stopped",
        halt_reason=HaltReason.MAX_COST,
        detail="its slice",
        tier="fast",
        turns=2,
        cost_usd=Decimal("0.01"),
        slice_usd=Decimal("0.25"),
        started_at="a",
        ended_at="b",
    ),
    ExperimentResult(
        run_id="r2",
        agent="main",
        experiment_run_id="r2",
        replay_of=["r0"],
        tier="fast",
        model="m",
        simulated=True,
        halted=HaltReason.INTERRUPTED,
        cap_usd=Decimal(1),
        turns=[
            ReplayedTurn(
                run_id="r0",
                turn=1,
                original_tier="deep",
                original_cost_usd=Decimal("0.01285"),
                replay_cost_usd=Decimal("0.0002"),
                verdict="same",
                judge_cost_usd=Decimal("0.0008"),
            )
        ],
        skipped_turns=[{"run_id": "r0", "turn": 2}],
        verdicts={"same": 1},
        totals={"saving_usd": Decimal("0.01265")},
    ),
    RunEnd(
        run_id="r1",
        agent="main",
        ended_at="c",
        status="halted",
        halt_reason=HaltReason.MAX_TURNS,
        turns=20,
        total_cost_usd=Decimal("0.061602225"),
        total_input_tokens=1,
        total_output_tokens=2,
        total_cache_read_input_tokens=3,
        total_cache_creation_input_tokens=4,
        total_cache_creation_5m_input_tokens=5,
        total_cache_creation_1h_input_tokens=6,
        cost_without_cache_usd=Decimal("0.07"),
        saved_by_cache_usd=Decimal("0.01"),
        cache_hit_rate=0.3232,
    ),
    ProxyRunStart(run_id="p", started_at="a", provider="anthropic", upstream="http://u"),
    ProxyTurn(
        run_id="p",
        turn=1,
        purpose="proxy",
        client="curl/8",
        model="m",
        stream=True,
        usage=USAGE,
        cost_usd=Decimal("0.001"),
        cost_breakdown_usd=Cost(output=Decimal("0.001")),
        status=200,
        cost_without_cache_usd=Decimal("0.002"),
        saved_by_cache_usd=Decimal("0.001"),
    ),
    ProxyAttempt(run_id="p", turn=2, status=500, error_type="http_500", error="API error 500"),
    RefusedCall(run_id="p", turn=3, client="c", model="m", error="does not fit the cap"),
    ProxyRunEnd(run_id="p", ended_at="d", total_cost_usd=Decimal("0.001")),
    Answer(run_id="r1", agent="main", turn=2, text="a.txt says hello", stop_reason="end_turn"),
    McpServerState(
        run_id="r1", server="notes", transport="stdio", status="failed", tools=0, error="gone"
    ),
    McpCost(
        run_id="r1",
        turn=2,
        tokens={"notes": 120},
        cost_usd={"notes": Decimal("0.000012")},
        session_cost_usd={"notes": Decimal("0.00003")},
    ),
    records.HoldRecord(
        run_id="p",
        hold_id="abc123",
        turn=4,
        purpose="proxy",
        model="claude-opus-5-5",
        reserved_usd=Decimal("0.5"),
        max_tokens=12_000,
        input_tokens_counted=900,
        started_at="d",
        source="proxy",
        client="claude-cli/2.1",
    ),
]


@pytest.mark.parametrize("record", EVERY_RECORD, ids=lambda r: type(r).__name__)
def test_every_record_type_round_trips(record: records.Record) -> None:
    line = json.dumps(record.to_json())
    assert read(line) == record
    assert read(record.to_json()) == record


def test_every_written_type_has_a_record_class() -> None:
    """Each line type found in tuiagent's own writers reads as a typed record, not Unknown."""
    kinds = {(r.TYPE, r.SOURCE) for r in EVERY_RECORD}
    assert kinds == set(records._REGISTRY)


def test_to_json_writes_todays_field_names_and_values() -> None:
    turn = EVERY_RECORD[2].to_json()
    assert turn["type"] == "turn" and turn["cost_usd"] == 0.000123
    assert turn["input_tokens"] == 120 and "usage" not in turn  # usage at the top level
    assert turn["cost_breakdown_usd"]["cache_read"] == 0.000023
    assert turn["over_reservation"] is True and "usage_unknown" not in turn  # flags when set
    assert turn["escalated_from_turn"] == 2 and turn["agent"] == "a1"
    end = EVERY_RECORD[9].to_json()
    assert end["halt_reason"] == "max_turns" and type(end["halt_reason"]) is str
    assert RunStart().to_json()["schema"] == records.SCHEMA == 1
    # The proxy writes no agent identity and no schema-less fields of the agent's turn.
    proxy = EVERY_RECORD[11].to_json()
    assert "agent" not in proxy and "tier" not in proxy and proxy["source"] == "proxy"


def test_an_older_line_reads_with_defaults() -> None:
    """A run_start from before `schema`, a turn missing fields and one with wrong types."""
    start = read('{"type":"run_start","run_id":"old","provider":"offline","limits":{}}')
    assert isinstance(start, RunStart)
    assert start.schema == 0 and start.models == {} and start.limits == Limits()
    # (a line with a token count of the wrong type is not trusted at all: see parse_line)
    turn = read(
        '{"type":"turn","run_id":"old","turn":2,"model":"claude-haiku-5-5","output_tokens":7,'
        '"cost_usd":0.5,"latency_s":"slow","stop_reason":5,"tool_calls":["a",3],'
        '"cost_breakdown_usd":[1],"a_field_from_the_future":1}'
    )
    assert isinstance(turn, Turn)
    assert turn.turn == 2 and turn.purpose == "agent" and turn.cost_usd == Decimal("0.5")
    assert turn.usage == TokenUsage(output_tokens=7)
    assert turn.latency_s == 0.0 and turn.stop_reason is None
    assert turn.tool_calls == ["a"] and turn.cost_breakdown_usd == Cost()
    assert turn.ttft_s is None and turn.escalated_from_turn is None
    loose = read({"type": "turn", "input_tokens": "many", "cost_usd": "0.25", "turn": 2.0})
    assert isinstance(loose, Turn) and loose.usage == TokenUsage() and loose.turn == 2
    assert loose.cost_usd == Decimal("0.25")
    end = read({"type": "run_end", "status": "halted", "halt_reason": "max_cost"})
    assert isinstance(end, RunEnd) and end.halt_reason is HaltReason.MAX_COST


def test_unknown_types_are_kept_raw_and_bad_lines_are_none() -> None:
    line = '{"type":"hologram","run_id":"x","depth":3}'
    unknown = read(line)
    assert isinstance(unknown, Unknown)
    assert unknown.type == "hologram" and unknown.to_json() == json.loads(line)
    assert read('{"type":"turn","cost_usd":1e308}') is None  # beyond reason
    assert read('{"type":"turn","turn":') is None  # cut
    assert read("[1, 2]") is None


def test_a_newcomers_field_needs_only_its_class() -> None:
    """A field added with a default is written and read with no other change."""
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class Newer(records.Record):
        TYPE = "newer_for_this_test"
        weight_usd: Decimal = Decimal(0)

    try:
        record = Newer(run_id="n", weight_usd=Decimal("0.25"))
        assert record.to_json() == {
            "type": "newer_for_this_test",
            "run_id": "n",
            "weight_usd": 0.25,
        }
        assert read(json.dumps(record.to_json())) == record
    finally:
        del records._REGISTRY[("newer_for_this_test", None)]


# --- logs written before typed records (by main at 690bc75): the same totals ----------------


def test_a_log_written_before_typed_records_reports_the_same_totals(tmp_path: Path) -> None:
    """Five runs written by main before this change (a run with two sub-agents, a plain run,
    a one-turn replay, a run halted at the cap, an experiment with a judge): `tuiagent
    report --json` gives the totals main gave for them."""
    logs = tmp_path / "logs"
    shutil.copytree(FIXTURE, logs)
    out = run_cli("report", "--log-dir", str(logs), "--json", "--all")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    runs = {r["run_id"][-6:]: r for r in report["runs"]}
    assert {k: (r["turns"], r["cost_usd"], r["ended"]) for k, r in runs.items()} == {
        "fd77f9": (6, 0.000601025, "completed"),
        "67ee70": (3, 0.0003172, "completed"),
        "42cc8a": (1, 0.00792, "completed"),
        "41482a": (0, 0.0, "halted (max_cost)"),
        "8e4c8f": (9, 0.052764, "completed"),
    }
    fd = runs["fd77f9"]
    assert (fd["input_tokens"], fd["output_tokens"], fd["cache_creation_input_tokens"]) == (
        3794,
        177,
        1065,
    )
    exp = runs["8e4c8f"]
    assert (exp["cache_read_input_tokens"], exp["cache_hit_rate"]) == (2130, 0.3232)
    assert runs["42cc8a"]["replay_of"] == {
        "run_id": "20261202T010613Z-67ee70",
        "turn": 1,
        "model": "claude-haiku-5-5",
    }
    assert report["total_cost_usd"] == 0.061602225
    assert report["unreadable_lines"] == 0 and report["turns_without_transcript"] == 0
    by_model = {m["model"]: (m["calls"], m["cost_usd"]) for m in report["by_model"]}
    assert by_model == {"claude-fable-5-2": (10, 0.060684), "claude-haiku-5-5": (9, 0.000918225)}
    by_agent = {a["agent"]: (a["calls"], a["cost_usd"]) for a in report["by_agent"]}
    assert by_agent == {"main": (15, 0.061275725), "a1": (2, 0.0001638), "a2": (2, 0.0001627)}
    top = report["top_turns"][0]
    assert (top["run_id"][-6:], top["turn"], top["cost_usd"]) == ("8e4c8f", 4, 0.01285)


def _fields_by_type(log: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        out.setdefault(record["type"], set()).update(record)
    return out


# Fields written since the fixture was (by main at 690bc75), each a default for older logs.
ADDED_SINCE = {
    "run_start": {"schema", "workspace"},
    "run_end": {"subagent_turns"},
    "turn": {"hold_id", "service_tier"},
}


def test_todays_lines_have_the_fields_the_old_ones_had(tmp_path: Path) -> None:
    """The request of the fixture's first run (two sub-agents), run now: every line type has
    the fields it had then, and `--json` prints exactly the lines of the log."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("alpha line one\nbeta\n")
    (ws / "b.txt").write_text("gamma\ndelta two\n")
    logs = tmp_path / "logs"
    prompt = "read a.txt and b.txt in parallel with sub-agents and summarize"
    done = run_cli(
        "run", "--offline", "--json", "--log-dir", str(logs), "--workspace", str(ws), prompt
    )
    assert done.returncode == 0, done.stderr
    (log,) = logs.glob("*.jsonl")
    then = _fields_by_type(FIXTURE / "20261202T010608Z-fd77f9.jsonl")
    now = _fields_by_type(log)
    assert set(then) == {"run_start", "user", "turn", "tool", "agent", "run_end"}
    # added since: each call held before it is sent, and the answer's text
    assert set(now) == set(then) | {"hold", "answer"}
    for kind, fields in then.items():
        assert now[kind] == fields | ADDED_SINCE.get(kind, set()), kind
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert printed == [json.loads(line) for line in log.read_text().splitlines()]


def test_every_line_of_the_old_logs_reads_typed() -> None:
    for path in sorted(FIXTURE.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = read(line)
            assert record is not None and not isinstance(record, Unknown), line[:80]
            assert not isinstance(record, RunStart) or record.schema == 0
