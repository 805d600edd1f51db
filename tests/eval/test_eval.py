"""`tuiagent eval`: a 3-task suite on the offline model, 3 repeats, two arms (balanced,
fast): the table, the JSON, the run logs' tags, the cap, and the CI gate's exit codes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tuiagent.cli import main
from tuiagent.config import DEFAULT_SYSTEM_PROMPT
from tuiagent.eval.summary import held_quality, quantile
from tuiagent.runs.log import read_records

SUITE = """\
[suite]
name = "smoke"

[[tasks]]
name = "largest"
prompt = "Which file here is largest?"
workspace = "ws"
answer_matches = "b\\\\.py"

[[tasks]]
name = "read"
prompt = "What does b.py return?"
workspace = "ws"
judge = "b.py def f"
{read_extra}
[[tasks]]
name = "write"
prompt = "write notes.txt: remember the milk"
workspace = "ws"
files_changed = ["notes.txt"]
"""


def write_suite(root: Path, read_extra: str = "", name: str = "suite.toml") -> Path:
    ws = root / "ws"
    if not ws.exists():
        ws.mkdir(parents=True)
        (ws / "a.txt").write_text("hello world\n")
        (ws / "b.py").write_text("def f():\n    return 1\n")
        (ws / "notes.txt").write_text("notes\n")
    path = root / name
    path.write_text(SUITE.format(read_extra=read_extra))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["eval", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


ARMS = ("--tier", "balanced", "--tier", "fast", "--offline", "--repeat", "3")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The suite run once (module scope: the tests read it, and add runs of their own)."""
    root = tmp_path_factory.mktemp("eval")
    suite, logs, summary = write_suite(root), root / "logs", root / "base.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ANTHROPIC_API_KEY", raising=False)
        import io
        import sys

        out, err = io.StringIO(), io.StringIO()
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        code = main(["eval", str(suite), *ARMS, "--log-dir", str(logs), "--json", str(summary)])
    return {
        "root": root,
        "suite": suite,
        "logs": logs,
        "code": code,
        "out": out.getvalue(),
        "err": err.getvalue(),
        "path": summary,
        "json": json.loads(summary.read_text()),
    }


def test_the_table_names_every_task_arm_and_the_costliest_turns(base: dict[str, Any]) -> None:
    assert base["code"] == 0, base["err"]
    out = base["out"]
    for task in ("largest", "read", "write"):
        for arm in ("balanced", "fast"):
            assert any(task in line and arm in line for line in out.splitlines())
    assert "The costliest turns across the repeats, and why" in out
    assert "large cache write" in out  # the report's cause of the first turn
    assert "fast held quality against balanced" in out
    assert "saving $" in out and "against balanced" in out
    assert "simulated" in out


def test_the_json_agrees_with_the_run_logs(base: dict[str, Any]) -> None:
    s, logs = base["json"], base["logs"]
    assert s["arms"] == ["balanced", "fast"] and s["repeat"] == 3 and s["simulated"]
    assert [t["name"] for t in s["tasks"]] == ["largest", "read", "write"]
    spent = Decimal(0)
    for task in s["tasks"]:
        for arm, a in task["arms"].items():
            assert len(a["runs"]) == 3
            costs = []
            for r in a["runs"]:
                records, _ = read_records(logs / f"{r['run_id']}.jsonl")
                start = records[0]
                assert start["eval"]["suite"] == "smoke"
                assert (start["eval"]["task"], start["eval"]["arm"]) == (task["name"], arm)
                assert start["eval"]["repeat"] == r["repeat"]
                assert start["tier"] == arm
                end = records[-1]
                assert end["type"] == "run_end" and end["status"] == "completed"
                cost = Decimal(str(end["total_cost_usd"]))
                assert Decimal(str(r["cost_usd"])) == cost
                costs.append(cost)
            spent += sum(costs)
            assert Decimal(str(a["cost_usd"]["p50"])) == quantile(costs, 0.5)
            assert Decimal(str(a["cost_usd"]["max"])) == max(costs)
            assert a["pass_rate"] == 1.0, a["runs"]
            assert a["costliest_turns"] and a["costliest_turns"][0]["cause"]
    judge = Decimal(str(s["judge_cost_usd"]))
    assert judge > 0  # the read task's judge check, 3 runs x 2 arms
    assert Decimal(str(s["spent_usd"])) == spent + judge
    fast, balanced = (Decimal(str(s["arm_totals"][a]["cost_usd"])) for a in ("fast", "balanced"))
    assert fast < balanced
    assert Decimal(str(s["arm_totals"]["fast"]["saving_usd"])) == balanced - fast
    assert s["verdicts"]["fast"]["held"] is True
    kept = logs / "evals" / f"{s['eval_id']}.json"
    assert json.loads(kept.read_text()) == s


def test_each_run_works_in_a_fresh_copy(base: dict[str, Any]) -> None:
    assert (base["root"] / "ws" / "notes.txt").read_text() == "notes\n"
    write = next(t for t in base["json"]["tasks"] if t["name"] == "write")
    assert all(r["checks"] == {"files_changed": True} for r in write["arms"]["fast"]["runs"])


def test_eval_runs_are_not_offered_to_resume(base: dict[str, Any]) -> None:
    from tuiagent.runs.recent import is_chat, recent_sessions

    logs = base["logs"]
    assert recent_sessions(logs) == []
    assert not any(is_chat(log) for log in logs.glob("*.jsonl"))


def test_a_baseline_that_holds_exits_0(
    base: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, str(base["suite"]), *ARMS, "--log-dir", str(tmp_path), "--baseline",
        str(base["path"]), "--fail-over", "10%",
    )  # fmt: skip
    assert code == 0, out + err
    assert "no task's p50 cost rose more than 10%" in out
    assert "REGRESSION" not in out


def test_a_larger_system_prompt_fails_the_gate_naming_task_and_turn(
    base: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bigger = DEFAULT_SYSTEM_PROMPT + " Always explain your reasoning in full detail." * 40
    suite = write_suite(base["root"], f"system_prompt = {json.dumps(bigger)}\n", "bigger.toml")
    code, out, err = run(
        capsys, str(suite), *ARMS, "--log-dir", str(tmp_path), "--baseline", str(base["path"]),
    )  # fmt: skip
    assert code == 1, out + err
    lines = [line for line in out.splitlines() if line.startswith("REGRESSION")]
    assert lines and all("task 'read'" in line for line in lines), lines
    assert "turn 1 grew most" in lines[0] and "over 10%" in lines[0]


def test_a_pass_rate_that_falls_fails_the_gate(
    base: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = base["root"] / "wrong.toml"
    suite.write_text(base["suite"].read_text().replace('"b\\\\.py"', '"a\\\\.txt"'))
    code, out, _ = run(
        capsys, str(suite), *ARMS, "--log-dir", str(tmp_path), "--baseline", str(base["path"]),
        "--fail-over", "50",
    )  # fmt: skip
    assert code == 1
    assert "REGRESSION: task 'largest' (balanced): pass rate fell 100% -> 0%" in out


def test_the_verdict_says_when_an_arm_did_not_hold_quality(base: dict[str, Any]) -> None:
    s = json.loads(json.dumps(base["json"]))
    read = next(t for t in s["tasks"] if t["name"] == "read")
    fast = read["arms"]["fast"]
    fast["runs"][0]["checks"]["judge"] = False
    fast["runs"][0]["reasons"]["judge"] = "the answer misses f"
    fast["runs"][0]["passed"] = False
    fast["pass_rate"], fast["checks"]["judge"] = 2 / 3, 2
    verdict = held_quality(s, "fast")
    assert verdict["held"] is False
    assert "did NOT hold quality" in verdict["line"]
    assert "read 67% < 100% (judge: the answer misses f)" in verdict["line"]
    assert "judge passed 2 of 3, balanced 3 of 3" in verdict["line"]


def test_the_cap_holds_for_the_whole_eval(
    base: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "s.json"
    code, out, err = run(
        capsys, str(base["suite"]), *ARMS, "--log-dir", str(tmp_path), "--max-cost", "0.01",
        "--json", str(out_json), "--parallel", "3",
    )  # fmt: skip
    s = json.loads(out_json.read_text())
    assert code == 3, out + err
    assert Decimal(str(s["spent_usd"])) <= Decimal("0.01")
    billed = Decimal(0)
    for log in tmp_path.glob("*.jsonl"):
        records, _ = read_records(log)
        billed += sum(
            Decimal(str(r["cost_usd"])) for r in records if r["type"] in ("turn", "attempt")
        )
    assert billed <= Decimal("0.01")
    assert any(a["halted"] for t in s["tasks"] for a in t["arms"].values())


@pytest.mark.parametrize(
    ("content", "args", "says"),
    [
        (None, (), "suite: cannot read"),
        ("[[tasks]\nname=", (), "is not valid TOML"),
        ('[[tasks]]\nname = "a"\nprompt = "hi"\npromt = "x"\n', (), "unknown key 'promt'"),
        ('[[tasks]]\nname = "a"\nprompt = "hi"\nanswer_matches = "(b"\n', (), "not a valid regex"),
        ('[[tasks]]\nname = "a"\n', (), "tasks[1] has no prompt"),
        ('[[tasks]]\nname = "a"\nprompt = "hi"\nworkspace = "nope"\n', (), "is not a folder"),
        ('[[tasks]]\nname = "a"\nprompt = "x"\n[[tasks]]\nname = "a"\nprompt = "y"\n', (), "two tasks are named 'a'"),
        ('[[tasks]]\nname = "a"\nprompt = "hi"\nfiles_changed = ["../x"]\n', (), "outside the workspace"),
        ("", (), "has no [[tasks]]"),
        ('[[tasks]]\nname = "a"\nprompt = "hi"\n', ("--fail-over", "ten"), "--fail-over goes with"),
        ('[[tasks]]\nname = "a"\nprompt = "hi"\n', ("--baseline", "{b}", "--fail-over", "x%"), "--fail-over must be a percentage"),
        ('[[tasks]]\nname = "a"\nprompt = "hi"\n', ("--baseline", "{b}"), "is not an eval summary"),
        ('[[tasks]]\nname = "a"\nprompt = "hi"\n', ("--max-cost", "-1"), "--max-cost must be"),
        ('[[tasks]]\nname = "a"\nprompt = "hi"\n', ("--tier", "fast", "--tier", "fast"), "same tier twice"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    args: tuple[str, ...],
    says: str,
) -> None:
    suite = tmp_path / "suite.toml"
    if content is not None:
        suite.write_text(content)
    bad = tmp_path / "b.json"
    bad.write_text('{"tasks": [{"name": 3}]}')
    given = [a.replace("{b}", str(bad)) for a in args]
    code, _, err = run(capsys, str(suite), "--offline", "--log-dir", str(tmp_path), *given)
    assert code == 2
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("*.jsonl"))  # nothing ran


def test_a_special_file_in_the_workspace_is_not_copied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("hello\n")
    os.mkfifo(ws / "pipe")  # copying it would block the run forever
    (tmp_path / "s.toml").write_text(
        '[[tasks]]\nname = "list"\nprompt = "List the files here."\nworkspace = "ws"\n'
        'answer_matches = "a\\\\.txt"\n'
    )
    code, out, err = run(capsys, str(tmp_path / "s.toml"), "--offline", "--repeat", "1",
                         "--log-dir", str(tmp_path / "logs"))  # fmt: skip
    assert code == 0, err
    assert " 1/1\n" in out  # the one run passed its check (the last column)


async def test_the_report_screen_has_a_tab_for_the_latest_eval(base: dict[str, Any]) -> None:
    from textual.widgets import TabbedContent

    from tests.ui.test_report_screen import Host, screen_text
    from tuiagent.report.build import build_report
    from tuiagent.ui.screens.report import ReportScreen

    app = Host(build_report(base["logs"], last=3))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, ReportScreen)
        app.screen.query_one(TabbedContent).active = "report-eval"
        await pilot.pause()
        shot = screen_text(app)
        assert "Cost per run, by task and arm" in shot
        assert "fast held quality against balanced" in shot
        assert f"{base['json']['eval_id']}.json" in shot


async def test_a_broken_summary_is_one_line_on_the_tab(tmp_path: Path) -> None:
    from tuiagent.eval.tables import latest_summary_view

    assert latest_summary_view(tmp_path)[0] is None
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "x.json").write_text('{"tasks": 3}')
    path, view = latest_summary_view(tmp_path)
    assert path is not None and "cannot show the eval summary" in str(view)
