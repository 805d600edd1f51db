"""Reports and replay over logs made by real offline runs."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.session import collect, offline_session
from tuiagent.agent.replay import replay_turn
from tuiagent.config import Settings
from tuiagent.cost.pricing import Pricer
from tuiagent.errors import UsageError
from tuiagent.report.build import build_report
from tuiagent.report.otel import otel_traces
from tuiagent.report.rows import SOURCES
from tuiagent.runs.layout import list_runs
from tuiagent.runs.log import read_records
from tuiagent.runs.records import usage_of
from tuiagent.runs.transcript import load_messages
from tuiagent.session import connect


async def make_run(workspace: Path, log_dir: Path, prompt: str, **overrides: Any) -> Path:
    session = offline_session(workspace, log_dir, **overrides)
    await collect(session, prompt)
    agent = session.agent
    agent.finish()
    return agent.log.path


async def make_runs(workspace: Path, log_dir: Path) -> dict[str, Path]:
    """Several real runs: tool calls, a big file read (cache writes, then reads), a cap halt."""
    return {
        "list": await make_run(workspace, log_dir, "Which file here is largest?"),
        # data.csv whole: the prefix is above the model's minimum cacheable length
        "read": await make_run(
            workspace, log_dir, "What do data.csv and notes.txt say?", compress=False
        ),
        "capped": await make_run(
            workspace, log_dir, "Read data.csv", max_cost_usd=Decimal("0.000001")
        ),
    }


def cut_last_line(path: Path) -> None:
    """What a run killed mid-write leaves: its last line cut in the middle."""
    data = path.read_bytes().rstrip(b"\n")
    last = data.rfind(b"\n")
    path.write_bytes(data[: last + 1 + (len(data) - last) // 2])


def logged(log_dir: Path) -> list[dict[str, Any]]:
    """Every record of every run, runs in the order they started."""
    runs = [read_records(path)[0] for path in log_dir.glob("*.jsonl")]
    runs.sort(key=lambda records: str(records[0]["started_at"]))
    return [r for records in runs for r in records]


async def test_report_over_real_runs(workspace: Path, log_dir: Path) -> None:
    paths = await make_runs(workspace, log_dir)
    cut_last_line(paths["list"])
    report = build_report(log_dir, top=3, all_runs=True)  # the capped run made no call
    records = logged(log_dir)
    turns = [r for r in records if r["type"] == "turn"]

    assert [r.run_id for r in report.runs] == [p.stem for p in paths.values()]
    ended = {r.run_id: r.ended for r in report.runs}
    assert ended[paths["list"].stem] == "cut off (no run_end)"
    assert ended[paths["read"].stem] == "completed"
    assert ended[paths["capped"].stem] == "halted (max_cost)"
    assert report.unreadable_lines == 1
    assert any("1 unreadable line" in w for w in report.warnings)

    # The three costliest turns, sorted, are the three most expensive turn records.
    top = report.top_turns()
    expected = sorted((Decimal(str(t["cost_usd"])) for t in turns), reverse=True)[:3]
    assert [t.cost for t in top] == expected
    for t in report.turns:
        assert t.cause and t.cause_kind
        # The cause is the largest of disjoint parts that add up to the cost.
        assert t.cost / 5 <= t.cause_cost <= t.cost

    # Money adds up: runs, models and tiers all match the records.
    total = sum(Decimal(str(r["cost_usd"])) for r in records if r["type"] in ("turn", "attempt"))
    assert report.total_cost == total
    assert sum(g.cost for g in report.by_model) == total
    assert sum(g.cost for g in report.by_tier) == total

    read = next(r for r in report.runs if r.run_id == paths["read"].stem)
    read_turns = [t for t in turns if t["run_id"] == read.run_id]
    cached = sum(t["cache_read_input_tokens"] for t in read_turns)
    assert cached > 0  # a cache hit: the second call reads what the first one wrote
    assert read.cache_hit_rate == cached / sum(usage_of(t).total_input_tokens for t in read_turns)
    assert read.saved_by_cache is not None


async def test_input_split_adds_up_and_names_the_big_tool_result(
    workspace: Path, log_dir: Path
) -> None:
    await make_runs(workspace, log_dir)
    report = build_report(log_dir)
    assert report.turns_without_transcript == 0
    for t in report.turns:
        assert t.sources is not None and set(t.sources) == set(SOURCES)
        assert sum(s.tokens for s in t.sources.values()) == t.usage.total_input_tokens
        input_cost = sum(v for k, v in t.breakdown.items() if k != "output")
        assert abs(sum(s.cost for s in t.sources.values()) - input_cost) < Decimal("1e-12")
    first = [t for t in report.turns if t.turn == 1]
    assert all(t.sources and t.sources["new_message"].tokens > 0 for t in first)
    # Tool definitions and the system prompt are paid on every turn.
    assert all(t.sources and t.sources["system"].tokens > 0 for t in report.turns)
    big = max(report.turns, key=lambda t: t.sources["tool_results"].cost if t.sources else 0)
    assert big.cause_kind == "tool_result" and "data.csv" in big.cause
    rows = {r.source: r for r in report.input_sources()}
    assert rows["tool_results"].cost > rows["system"].cost


async def test_fields_from_other_versions_are_used_or_ignored(
    workspace: Path, log_dir: Path
) -> None:
    path = await make_run(workspace, log_dir, "What do data.csv and notes.txt say?")
    lines = []
    for rec in read_records(path)[0]:
        if rec["type"] == "turn" and rec["turn"] == 2:
            rec["cache_miss_reason"] = "system prompt changed"
            rec["saved_by_cache_usd"] = 0.5
            rec["brand_new_field"] = {"x": 1}
        if rec["type"] == "tool":
            rec["original_tokens"], rec["compressed_tokens"] = 1000, 250
        if rec["type"] == "turn" and rec["turn"] == 1:
            del rec["cost_breakdown_usd"], rec["tier"]
        lines.append(json.dumps(rec))
        lines.append(json.dumps({"type": "thought_from_the_future", "weird": [1, 2]}))
    path.write_text("\n".join(lines) + "\n")
    report = build_report(log_dir)
    (run,) = report.runs
    tools = sum(1 for r in read_records(path)[0] if r["type"] == "tool")
    assert run.compression_saved_tokens == 750 * tools
    second = next(t for t in report.turns if t.turn == 2)
    assert "system prompt changed" in second.cause or second.cause_kind != "uncached_input"
    assert second.as_json()["cache_miss_reason"] == "system prompt changed"
    assert run.saved_by_cache is not None and run.saved_by_cache >= Decimal("0.5")
    first = next(t for t in report.turns if t.turn == 1)
    assert first.tier == "?" and first.cause
    json.dumps(report.to_json())  # still one valid document


async def test_cache_miss_reason_becomes_the_cause(workspace: Path, log_dir: Path) -> None:
    path = await make_run(workspace, log_dir, "Which file here is largest?")
    lines = []
    for rec in read_records(path)[0]:
        if rec["type"] == "turn":
            rec["cache_miss_reason"] = "tools changed"
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")
    report = build_report(log_dir)
    uncached = [t for t in report.turns if t.cause_kind in ("cache_miss", "uncached_input")]
    assert uncached and all(t.cause_kind == "cache_miss" for t in uncached)
    # a miss that wrote the cache (Haiku 5.5 caches from 512 tokens) or read nothing
    assert all("tools changed" in t.cause for t in uncached)


def test_missing_and_empty_log_dirs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no log dir"):
        list_runs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no run logs"):
        list_runs(tmp_path / "empty")


async def test_cli_report_json_after_three_runs_and_a_cut_log(
    workspace: Path, log_dir: Path
) -> None:
    # The runs are made in-process (a `tuiagent run` each was two seconds of imports): the
    # CLI under test is `report`.
    logs = [
        await make_run(workspace, log_dir, prompt)
        for prompt in ("Which file here is largest?", "What does data.csv say?", "Read notes.txt")
    ]
    cut_last_line(logs[1])

    proc = run_cli("report", "--json", "--top", "3", "--log-dir", str(log_dir))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) >= {"runs", "top_turns", "by_model", "by_tier"}
    assert [r["run_id"] for r in doc["runs"]] == [p.stem for p in logs]
    costs = [t["cost_usd"] for t in doc["top_turns"]]
    assert len(costs) == 3 and costs == sorted(costs, reverse=True)
    assert all(t["cause"] for t in doc["top_turns"])
    assert doc["unreadable_lines"] == 1 and "unreadable" in proc.stderr

    plain = run_cli("report", "--log-dir", str(log_dir))
    assert plain.returncode == 0, plain.stderr
    for r in doc["runs"]:
        assert f"${Decimal(str(r['cost_usd'])):,.6f}" in plain.stdout
    assert "costliest turns" in plain.stdout and "system prompt" in plain.stdout

    # A prefix of its id (runs of one second differ in the 6 hex digits after it: a prefix
    # no other run shares).
    stem = logs[0].stem
    others = [p.stem for p in logs[1:]]
    cut = next(
        n
        for n in range(len(stem) - 2, len(stem))
        if not any(o.startswith(stem[:n]) for o in others)
    )
    one = run_cli("report", "--json", "--run", stem[:cut], "--log-dir", str(log_dir))
    assert [r["run_id"] for r in json.loads(one.stdout)["runs"]] == [logs[0].stem]
    last = run_cli("report", "--json", "--last", "2", "--log-dir", str(log_dir))
    assert [r["run_id"] for r in json.loads(last.stdout)["runs"]] == [p.stem for p in logs[1:]]


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for args, words in (
        (["report", "--log-dir", str(tmp_path / "nope")], "no log dir"),
        (["report", "--log-dir", str(tmp_path / "empty")], "no run logs"),
        (["report", "--top", "0"], "--top"),
        (["report", "--json", "--csv"], "not allowed"),
        (["replay", "x", "--turn", "1"], "--tier"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert "Traceback" not in proc.stderr


async def test_cli_unknown_run_id(workspace: Path, log_dir: Path) -> None:
    await make_run(workspace, log_dir, "Which file here is largest?")
    for args in (["report", "--run", "nosuchrun"], ["replay", "nosuchrun", "--turn", "1"]):
        extra = ["--tier", "fast"] if args[0] == "replay" else []
        proc = run_cli(*args, *extra, "--log-dir", str(log_dir))
        assert proc.returncode == 2
        assert "'nosuchrun'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


async def test_csv_lists_every_turn(workspace: Path, log_dir: Path) -> None:
    await make_runs(workspace, log_dir)
    proc = run_cli("report", "--csv", "--log-dir", str(log_dir))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    turns = [r for r in logged(log_dir) if r["type"] == "turn"]
    assert len(rows) == len(turns)
    assert [float(r["cost_usd"]) for r in rows] == [t["cost_usd"] for t in turns]
    for row, turn in zip(rows, turns, strict=True):
        split = sum(int(row[f"{s}_tokens"]) for s in SOURCES)
        assert split == usage_of(turn).total_input_tokens


async def test_otel_spans_use_gen_ai_names(workspace: Path, log_dir: Path) -> None:
    await make_runs(workspace, log_dir)
    report = build_report(log_dir)
    doc = otel_traces(report)
    (resource,) = doc["resourceSpans"]
    spans = resource["scopeSpans"][0]["spans"]
    calls = [s for s in spans if s["name"].startswith("chat ")]
    roots = [s for s in spans if s["name"] == "invoke_agent tuiagent"]
    assert len(calls) == len(report.turns) and len(roots) == len(report.runs)
    root_ids = {r["spanId"] for r in roots}
    for span, turn in zip(calls, report.turns, strict=True):
        attrs = {a["key"]: a["value"] for a in span["attributes"]}
        assert span["parentSpanId"] in root_ids and len(span["traceId"]) == 32
        assert attrs["gen_ai.provider.name"] == {"stringValue": "anthropic"}
        assert attrs["gen_ai.request.model"] == {"stringValue": turn.model}
        total_in = str(turn.usage.total_input_tokens)
        assert attrs["gen_ai.usage.input_tokens"] == {"intValue": total_in}
        assert attrs["gen_ai.usage.output_tokens"] == {"intValue": str(turn.usage.output_tokens)}
        read = str(turn.usage.cache_read_input_tokens)
        assert attrs["gen_ai.usage.cache_read.input_tokens"] == {"intValue": read}
        assert "gen_ai.usage.cache_creation.input_tokens" in attrs
        assert attrs["gen_ai.response.id"]["stringValue"] == turn.record["message_id"]
        reasons = attrs["gen_ai.response.finish_reasons"]["arrayValue"]["values"]
        assert reasons == [{"stringValue": turn.stop_reason}]
        assert int(span["startTimeUnixNano"]) <= int(span["endTimeUnixNano"])
    proc = run_cli("report", "--otel", "--log-dir", str(log_dir))
    assert proc.returncode == 0 and json.loads(proc.stdout)["resourceSpans"]


async def test_replay_resends_the_exact_request(workspace: Path, log_dir: Path) -> None:
    path = await make_run(workspace, log_dir, "What do data.csv and notes.txt say?")
    turns = [r for r in read_records(path)[0] if r["type"] == "turn"]
    last = turns[-1]["turn"]
    assert turns[-1]["tier"] != "deep"
    result = await replay_turn(
        Settings(),
        log_dir,
        path.stem,
        last,
        tier="deep",
        connect=lambda: connect(Settings(), offline=True),
    )
    # The offline model answers from the request alone: the same request, the same answer.
    assert result.original.content is not None
    assert result.replay.content == result.original.content
    assert result.replay.model == Settings().router.model_for("deep") != result.original.model
    priced = Pricer().price(result.replay.model, result.replay.usage).total
    assert result.replay.cost == Decimal(str(float(round(priced, 12))))
    assert result.original.cost == Decimal(str(turns[-1]["cost_usd"]))

    records, bad = read_records(result.log_path)
    assert bad == 0
    assert [r["type"] for r in records] == ["run_start", "hold", "turn", "run_end"]
    assert records[1]["hold_id"] == records[2]["hold_id"]
    assert records[0]["replay_of"] == {
        "run_id": path.stem,
        "turn": last,
        "model": result.original.model,
    }
    assert records[2]["model"] == result.replay.model
    # The replay's transcript holds its request and its answer: it can itself be replayed.
    messages = load_messages(log_dir / "transcripts" / result.log_path.name)
    assert messages[-1] == {"role": "assistant", "content": result.replay.content}
    report = build_report(log_dir)
    replayed = next(r for r in report.runs if r.run_id == result.run_id)
    assert replayed.replay_of and replayed.turns == 1


async def test_cli_replay_prints_both_answers_and_costs(workspace: Path, log_dir: Path) -> None:
    path = await make_run(workspace, log_dir, "Which file here is largest?")
    proc = run_cli(
        "replay", path.stem, "--turn", "2", "--tier", "deep", "--offline", "--log-dir", str(log_dir)
    )
    assert proc.returncode == 0, proc.stderr
    report = build_report(log_dir)
    original, replay = report.runs[0], report.runs[1]
    assert replay.replay_of == {"run_id": path.stem, "turn": 2, "model": original_model(path)}
    assert proc.stdout.count("data.csv") >= 2  # both answers name the largest file
    assert f"${replay.cost:,.6f}" in proc.stdout
    turn2 = next(t for t in report.turns if t.run_id == original.run_id and t.turn == 2)
    assert f"${turn2.cost:,.6f}" in proc.stdout
    assert Settings().router.model_for("deep") in proc.stdout

    bad = run_cli(
        "replay", path.stem, "--turn", "9", "--tier", "fast", "--offline", "--log-dir", str(log_dir)
    )
    assert bad.returncode == 2 and "no turn 9" in bad.stderr
    unpriced = run_cli(
        "replay", path.stem, "--turn", "1", "--model", "claude-nope-1", "--log-dir", str(log_dir)
    )
    assert unpriced.returncode == 2 and '[prices."claude-nope-1"]' in unpriced.stderr


def original_model(path: Path) -> str:
    return str(next(r for r in read_records(path)[0] if r["type"] == "turn")["model"])
