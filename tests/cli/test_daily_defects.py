"""The small defects of issue 28 outside the app: a file over the read limit summarised as
the part it is (and of the right kind), an empty prompt, "1 turns", unrounded caps."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tuiagent.agent.compress import _NOT_JSON, Compressor, _parse_json
from tuiagent.agent.tools import Workspace
from tuiagent.cost.display import cap, counted


def events_json(count: int) -> str:
    events = [
        {"id": i, "level": "error" if i % 7 == 0 else "info", "msg": f"event {i} happened"}
        for i in range(count)
    ]
    return json.dumps({"meta": {"version": 3}, "events": events}, indent=1)


async def read_big(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return await Workspace(tmp_path).read_file({"path": name})


async def test_a_json_file_over_the_read_limit_is_summarised_as_part_of_a_json_file(
    tmp_path: Path,
) -> None:
    text = events_json(60_000)
    assert len(text) > 4_000_000
    read = await read_big(tmp_path, "events.json", text)
    stop = f"[read stopped at 2,000,000 bytes of {len(text):,}; use offset/limit to page]"
    assert read.endswith(stop)
    out = Compressor(1000).compress("read_file", read)
    assert out.method == "json"  # not "log": the cut document is read up to where it stops
    note = out.text.partition("\n")[0]
    assert f"Only part of the file was read: its first 2,000,000 bytes of {len(text):,}" in note
    read_lines = read.count("\n")  # the part's lines (the stop note is the last one)
    assert f"({read_lines:,} lines); of that part: JSON object with 2 keys" in note
    shown = json.loads(out.text.partition("\n")[2])  # the body is valid JSON
    assert shown["meta"] == {"version": 3}


async def test_a_log_over_the_read_limit_counts_the_part_read_and_says_so(tmp_path: Path) -> None:
    lines = [
        f"2026-01-01 12:00:00 {'ERROR' if i % 100 == 0 else 'INFO'} job {i} done"
        for i in range(90_000)
    ]
    read = await read_big(tmp_path, "big.log", "\n".join(lines) + "\n")
    out = Compressor(1000).compress("read_file", read)
    assert out.method == "log"
    part = read.rpartition("\n[read stopped")[0].splitlines()
    errors = sum("ERROR" in ln for ln in part)
    note = out.text.partition("\n")[0]
    assert "Only part of the file was read: its first 2,000,000 bytes of" in note
    assert f"of that part: Log of {len(part):,} lines" in note and f"ERROR {errors:,}" in note


def test_a_document_that_is_not_json_is_not_taken_for_cut_json() -> None:
    assert _parse_json('{"a": 1, "b": [1, 2') == {"a": 1, "b": [1]}  # cut: what it began
    assert _parse_json('{"a": 1}}') is _NOT_JSON  # complete and then broken: not JSON
    assert _parse_json("[not json, really") is _NOT_JSON
    assert _parse_json('{"a": "x, y"') is _NOT_JSON  # no comma outside a string to cut at


@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_an_empty_prompt_is_one_line_and_exit_2(prompt: str, tmp_path: Path) -> None:
    done = run_cli("run", "--offline", "--log-dir", str(tmp_path / "l"), prompt)
    assert done.returncode == 2 and done.stderr == (
        "tuiagent: the prompt is empty: say what to ask the agent\n"
    )
    assert not (tmp_path / "l").exists()  # nothing written, nothing sent


def test_counts_and_caps_read_as_a_person_writes_them() -> None:
    assert counted(1, "turn") == "1 turn" and counted(2, "turn") == "2 turns"
    assert counted(1200, "call") == "1,200 calls"
    assert cap(Decimal("0.072362875")) == "$0.0724"
    assert cap(Decimal("1")) == "$1.00" and cap(Decimal("0.105")) == "$0.105"
    assert cap(Decimal("0.000001")) == "$0.000001"


def test_a_one_turn_run_says_1_turn(workspace: Path, tmp_path: Path) -> None:
    done = run_cli(
        "run", "--offline", "--workspace", str(workspace), "--log-dir", str(tmp_path / "l"), "hi"
    )
    assert done.returncode == 0, done.stderr
    assert "completed: 1 turn, $" in done.stdout
