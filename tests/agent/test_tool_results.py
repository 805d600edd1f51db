"""Tool results in a run: compressed before they reach the model, recalled on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.large_results import JSON_ITEMS, json_api_response, service_log
from tests.support.session import collect, offline_session
from tuiagent.agent.events import AnswerDelta, ToolFinished, TurnFinished
from tuiagent.llm.tokens import estimate_tokens
from tuiagent.runs.layout import transcript_path
from tuiagent.runs.log import read_records
from tuiagent.runs.transcript import load_requests


def _big_workspace(workspace: Path) -> Path:
    (workspace / "api.json").write_text(json_api_response())
    (workspace / "service.log").write_text(service_log(4000))
    return workspace


def _answer(events: list[object]) -> str:
    turns = [e for e in events if isinstance(e, TurnFinished)]
    last = turns[-1].record.to_json()["turn"]
    return "".join(e.text for e in events if isinstance(e, AnswerDelta) and e.turn == last)


async def test_large_json_and_log_reach_the_model_small(workspace: Path, log_dir: Path) -> None:
    _big_workspace(workspace)
    session = offline_session(workspace, log_dir)
    events = await collect(session, "What is in api.json and service.log?")
    session.agent.finish()
    tools = [e for e in events if isinstance(e, ToolFinished)]
    assert [t.record.to_json()["input"]["path"] for t in tools] == ["api.json", "service.log"]
    for t, method, rid in zip(tools, ["json", "log"], ["r1", "r2"], strict=True):
        r = t.record.to_json()
        assert (r["method"], r["result_id"]) == (method, rid)
        assert r["compressed_tokens"] == estimate_tokens(t.output) <= 1000
        assert r["original_tokens"] == estimate_tokens(t.original) >= 5 * r["compressed_tokens"]
        assert r["result_tokens"] == r["compressed_tokens"]
    assert t.original == (workspace / "service.log").read_text()
    # What the model was sent is the compressed text, and it was offered expand_result.
    requests = load_requests(transcript_path(session.agent.log.path))
    last = requests[-1]["request"]
    assert "expand_result" in [tool["name"] for tool in last["tools"]]
    sent = [
        b["content"]
        for m in last["messages"]
        for b in m["content"]
        if isinstance(m["content"], list) and b.get("type") == "tool_result"
    ]
    assert sent == [t.output for t in tools]
    answer = _answer(events)
    assert f"data has {JSON_ITEMS} items" in answer and "keys data, meta, links" in answer
    errors = sum(1 for ln in service_log(4000).splitlines() if " ERROR " in ln)
    assert "Log of 4,000 lines" in answer and f"ERROR {errors}" in answer
    records, _ = read_records(session.agent.log.path)
    assert [r["method"] for r in records if r["type"] == "tool"] == ["json", "log"]


async def test_expand_returns_the_original_lines_end_to_end(workspace: Path, log_dir: Path) -> None:
    _big_workspace(workspace)
    session = offline_session(workspace, log_dir)
    events = await collect(session, "Read service.log, then expand r1 lines 100-104")
    tools = [e for e in events if isinstance(e, ToolFinished)]
    assert [t.record.to_json()["name"] for t in tools] == ["read_file", "expand_result"]
    expand = tools[1]
    assert expand.record.to_json()["input"] == {"result_id": "r1", "offset": 100, "limit": 5}
    lines = (workspace / "service.log").read_text().splitlines()
    assert expand.output.partition("\n")[2] == "\n".join(lines[100:105])
    assert (
        expand.record.to_json()["method"] == "none" and expand.record.to_json()["result_id"] is None
    )
    assert f"Expanded r1, lines 100-104 of 4000: {lines[100]}" in _answer(events)


async def test_no_compress_sends_results_whole(workspace: Path, log_dir: Path) -> None:
    _big_workspace(workspace)
    session = offline_session(
        workspace, log_dir, compress=False, context_management=False, max_tokens=4096
    )
    events = await collect(session, "What is in api.json?")
    (tool,) = [e for e in events if isinstance(e, ToolFinished)]
    assert tool.output == tool.original == json_api_response()
    assert tool.record.to_json()["method"] == "none" and tool.record.to_json()["result_id"] is None
    assert (
        tool.record.to_json()["original_tokens"]
        == tool.record.to_json()["compressed_tokens"]
        > 5000
    )
    names = [t["name"] for t in session.agent.toolbox.definitions()]
    assert "expand_result" not in names  # with context management on, cleared results need it
    assert f"data has {JSON_ITEMS} items" in _answer(events)


async def test_summaries_are_their_own_priced_turn(workspace: Path, log_dir: Path) -> None:
    _big_workspace(workspace)
    session = offline_session(workspace, log_dir, summarize_results=True)
    events = await collect(session, "What is in api.json?")
    session.agent.finish()
    turns = [e.record.to_json() for e in events if isinstance(e, TurnFinished)]
    summary = [t for t in turns if t["purpose"] == "summarize"]
    assert len(summary) == 1
    s = summary[0]
    assert s["tier"] == "fast" and s["model"] == session.agent.settings.router.model_for("fast")
    assert s["cost_usd"] > 0 and s["input_tokens"] + s["cache_read_input_tokens"] > 5000
    assert sum(t["cost_usd"] for t in turns) == pytest.approx(
        turns[-1]["cumulative_cost_usd"], abs=1e-12
    )
    (tool,) = [e for e in events if isinstance(e, ToolFinished)]
    assert (
        tool.record.to_json()["method"] == "summary"
        and tool.record.to_json()["compressed_tokens"] <= 1000
    )
    assert f"a JSON object with keys data, meta, links; data has {JSON_ITEMS} items" in tool.output
    requests = load_requests(transcript_path(session.agent.log.path))
    assert [r["purpose"] for r in requests] == ["agent", "summarize", "agent"]
    assert "[tuiagent:summarize]" in requests[1]["request"]["system"]
    # The summary is what the agent's next call carried, and its original can be paged in.
    sent = requests[2]["request"]["messages"][-1]["content"][0]
    assert sent["type"] == "tool_result" and sent["content"] == tool.output
    assert session.agent.compressor is not None
    assert session.agent.compressor.expand("r1", 0, 3).endswith('{\n  "data": [\n    {')
