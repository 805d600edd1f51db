"""Offline runs end to end through the real SDK client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.session import collect, offline_session
from tuiagent.agent.events import AnswerDelta, LogRecord, ToolFinished, TurnFinished
from tuiagent.runs.log import read_records


async def test_largest_file_run_lists_then_answers(workspace: Path, log_dir: Path) -> None:
    session = offline_session(workspace, log_dir)
    events = await collect(session, "Which file here is largest?")
    end = session.agent.finish()
    turns = [e.record.to_json() for e in events if isinstance(e, TurnFinished)]
    tools = [e.record.to_json() for e in events if isinstance(e, ToolFinished)]
    assert len(turns) >= 2
    assert [t["name"] for t in tools] == ["list_dir"]
    assert turns[0]["stop_reason"] == "tool_use" and turns[-1]["stop_reason"] == "end_turn"
    answer = "".join(e.text for e in events if isinstance(e, AnswerDelta) and e.turn == len(turns))
    assert "data.csv" in answer  # the largest file of the fixture workspace
    for t in turns:
        assert t["simulated"] is True
        assert t["cost_usd"] > 0
        assert t["request_id"]
        breakdown = t["cost_breakdown_usd"]
        assert abs(sum(breakdown.values()) - t["cost_usd"]) < 1e-9
    assert turns[-1]["cumulative_cost_usd"] == end.record.to_json()["total_cost_usd"]
    records, bad = read_records(session.agent.log.path)
    assert bad == 0
    emitted = [e.record.to_json() for e in events if isinstance(e, LogRecord)] + [
        end.record.to_json()
    ]
    assert records == emitted
    assert records[0]["type"] == "run_start" and records[-1]["type"] == "run_end"


async def test_each_named_file_is_read_in_order(workspace: Path, log_dir: Path) -> None:
    session = offline_session(workspace, log_dir)
    events = await collect(session, "What do notes.txt and README.md say?")
    names = [e.record.to_json()["input"]["path"] for e in events if isinstance(e, ToolFinished)]
    assert names == ["notes.txt", "README.md"]
    final = [e for e in events if isinstance(e, AnswerDelta)]
    text = "".join(e.text for e in final)
    assert "alpha" in text and "Demo project" in text


async def test_offline_model_says_plainly_when_it_cannot_help(
    workspace: Path, log_dir: Path
) -> None:
    session = offline_session(workspace, log_dir)
    events = await collect(session, "Write me a poem about autumn")
    text = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert "offline simulated model" in text
    assert not [e for e in events if isinstance(e, ToolFinished)]


def test_cli_json_run(workspace: Path, log_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuiagent",
            "run",
            "Which file here is largest?",
            "--json",
            "--log-dir",
            str(log_dir),
            "--workspace",
            str(workspace),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    types = [r["type"] for r in lines]
    assert types.count("turn") >= 2 and "tool" in types and types[-1] == "run_end"
    assert "ANTHROPIC_API_KEY is not set" in proc.stderr  # offline with a notice
    (log,) = log_dir.glob("*.jsonl")
    assert [json.loads(x) for x in log.read_text().splitlines()] == lines


async def test_a_file_name_that_is_not_utf8_is_read_by_the_spelling_it_is_shown_with(
    workspace: Path, log_dir: Path
) -> None:
    """list_dir shows the byte 0xE9 of a name as `\\xe9`; asked to read `caf\\xe9.txt`,
    the offline model read `xe9.txt` (no such file)."""
    (workspace / "caf\udce9.txt").write_text("bonjour\n")
    session = offline_session(workspace, log_dir)
    events = await collect(session, "read caf\\xe9.txt")
    (read,) = [e.record.to_json() for e in events if isinstance(e, ToolFinished)]
    assert read["input"] == {"path": "caf\\xe9.txt"} and read["ok"] is True
    assert "bonjour" in "".join(e.text for e in events if isinstance(e, AnswerDelta))
