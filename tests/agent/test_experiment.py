"""Tier experiments (`replay --all`): real offline runs replayed on another tier, judged,
and turned into router rules."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.report.test_report import make_run
from tests.support.cli import run_cli
from tests.support.session import collect, offline_session
from tuiagent.agent.experiment import (
    VERDICTS,
    Experiment,
    TurnResult,
    compare_calls,
    load_turns,
    parse_verdict,
    rules_toml,
    run_experiment,
    suggest_rules,
)
from tuiagent.agent.router import Router, rule_matches
from tuiagent.cli import main
from tuiagent.config import RouterRule, Settings, load_settings
from tuiagent.cost.pricing import Pricer
from tuiagent.errors import ConfigError
from tuiagent.offline.brain import judge
from tuiagent.runs.log import read_records
from tuiagent.session import connect

KINDS = {
    "listing": "List the files here.",
    "read": "Read notes.txt and tell me what it says",
    "search": "Search for TODO",
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """Three runs of different kinds on deep (made once: the tests only add runs)."""
    root = tmp_path_factory.mktemp("experiment")
    ws, logs = root / "ws", root / "logs"
    ws.mkdir()
    (ws / "notes.txt").write_text("alpha\nbeta TODO\ngamma\n")
    (ws / "README.md").write_text("# Demo\nTODO: ship\n")

    async def make() -> list[str]:
        return [(await make_run(ws, logs, p, tier="deep")).stem for p in KINDS.values()]

    return ws, logs, asyncio.run(make())


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`tuiagent ARGS` in this process (a subprocess per case is slow on a loaded machine)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def logs_in(log_dir: Path) -> set[str]:
    return {p.name for p in log_dir.glob("*.jsonl")}


async def test_three_runs_replayed_on_fast_and_judged(made: tuple[Path, Path, list[str]]) -> None:
    _, log_dir, runs = made
    settings = Settings().with_changes(log_dir=log_dir, max_cost_usd=Decimal("0.05"))
    fast = settings.router.model_for("fast")
    turns, skipped = load_turns(settings, log_dir, runs, fast)
    source_turns = [
        r for run in runs for r in read_records(log_dir / f"{run}.jsonl")[0] if r["type"] == "turn"
    ]
    assert len(turns) == len(source_turns) >= 6 and not skipped
    exp = await run_experiment(
        settings,
        log_dir,
        turns,
        skipped,
        tier="fast",
        model=fast,
        judge=True,
        connect=lambda: connect(settings, offline=True),
    )
    assert exp.halted is None and exp.simulated
    # Every turn has a verdict and a reason; the answers were judged by a priced call.
    assert all(r.verdict in VERDICTS and r.reason for r in exp.results)
    answers = [r for r in exp.results if "tool calls" not in r.reason]
    assert answers and all("simulated" in r.reason and r.judge_cost > 0 for r in answers)
    # The originals' costs are the source runs' own.
    assert [r.source.cost for r in exp.results] == [
        Decimal(str(t["cost_usd"])) for t in source_turns
    ]
    # Totals add up to the turns' costs; the judge is in the experiment's cost and the cap.
    assert exp.original_cost == sum(r.source.cost for r in exp.results)
    kept = sum(r.cost if r.kept else r.source.cost for r in exp.results)
    assert exp.would_have_cost == kept and exp.saving == exp.original_cost - kept > 0
    assert exp.spent == exp.replay_cost + exp.judge_cost and exp.judge_cost > 0
    assert exp.spent <= settings.run.max_cost_usd
    records = read_records(exp.log_path)[0]  # type: ignore[arg-type]
    calls = [r for r in records if r["type"] == "turn"]
    judges = [r for r in calls if r["purpose"] == "judge"]
    assert len(judges) == len(answers) and {r["tier"] for r in judges} == {"deep"}
    assert {r["model"] for r in calls if r["purpose"] == "replay"} == {fast}
    assert Decimal(str(records[-1]["total_cost_usd"])) == exp.spent
    assert records[0]["replay_of"]["turn"] == "all"
    logged = next(r for r in records if r["type"] == "experiment")
    assert logged["totals"]["saving_usd"] == float(round(exp.saving, 12))


async def test_cli_json_and_suggested_rules_route_a_new_run(
    made: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    workspace, log_dir, runs = made
    proc = run_cli(
        "replay",
        *runs,
        "--all",
        "--tier",
        "fast",
        "--judge",
        "--suggest",
        "--yes",
        "--json",
        "--offline",
        "--max-cost",
        "0.05",
        "--log-dir",
        str(log_dir),
    )
    assert proc.returncode == 0, proc.stderr
    assert "at most $" in proc.stderr and "expected $" in proc.stderr  # the estimate, first
    data = json.loads(proc.stdout)
    assert {t["verdict"] for t in data["turns"]} <= set(VERDICTS)
    totals = data["totals"]
    assert totals["experiment_cost_usd"] == pytest.approx(
        totals["replay_cost_usd"] + totals["judge_cost_usd"]
    )
    suggestion = data["suggestion"]
    assert suggestion["turns_moved"] == len(data["turns"])
    assert suggestion["saving_usd"] == pytest.approx(totals["saving_usd"])
    # The rules, copied into a config, send a new listing run's turns to fast.
    config = tmp_path / "config.toml"
    config.write_text(suggestion["rules_toml"])
    settings = load_settings(config)
    assert settings.router.rules and settings.router.rules[0].tier == "fast"
    session = offline_session(workspace, log_dir, router_rules=settings.router.rules)
    await collect(session, "List the files here.")
    session.agent.finish()
    tiers = [r["tier"] for r in read_records(session.agent.log.path)[0] if r["type"] == "turn"]
    reasons = [
        r["route_reason"] for r in read_records(session.agent.log.path)[0] if r["type"] == "turn"
    ]
    assert tiers and set(tiers) == {"fast"} and all("config router rule 1" in r for r in reasons)


def test_plain_table_and_a_cap_that_halts_midway(
    made: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, log_dir, runs = made
    base = ["replay", *runs, "--all", "--tier", "fast", "--yes", "--offline"]
    code, out, err = cli(capsys, *base, "--judge", "--log-dir", str(log_dir))
    assert code == 0, err
    assert "verdict" in out and "a saving of $" in out
    assert "judge $" in out and "simulated" in out
    # A cap that fits the first replay but not all of them: halted, within the cap.
    settings = Settings().with_changes(log_dir=log_dir)
    turns, _ = load_turns(settings, log_dir, runs, settings.router.model_for("fast"))
    cap = "0.0015"
    code, out, err = cli(
        capsys, *base, "--judge", "--json", "--max-cost", cap, "--log-dir", str(log_dir)
    )
    assert code == 3, err
    data = json.loads(out)
    assert data["halted"] == "max_cost" and 0 < len(data["turns"]) < len(turns)
    assert data["totals"]["experiment_cost_usd"] <= float(cap)


def test_bad_input_is_one_line_and_spends_nothing(
    made: tuple[Path, Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workspace, log_dir, runs = made
    empty = asyncio.run(
        make_run(workspace, log_dir, "Read notes.txt", max_cost_usd=Decimal("0.000001"))
    )
    before = logs_in(log_dir)
    base = ["--all", "--yes", "--offline", "--log-dir", str(log_dir)]
    for args, code, words in (
        (["replay", "nosuchrun", "--tier", "fast", *base], 2, "'nosuchrun'"),
        (["replay", empty.stem, "--tier", "fast", *base], 2, "no agent turns"),
        (["replay", runs[0], "--tier", "deep", *base], 2, "already ran on"),
        (["replay", runs[0], "--tier", "fast", "--max-cost", "0.0000001", *base], 3, "the cap"),
        (["replay", runs[0], "--tier", "fast", "--max-cost", "-1", *base], 2, "--max-cost"),
        (["replay", runs[0], "--turn", "1", "--tier", "fast", "--judge"], 2, "--all"),
    ):
        got, _, err = cli(capsys, *args)
        assert got == code, (args, err)
        assert words in err and len(err.strip().splitlines()) == 1, err
    # No terminal to ask on and no --yes: one line, exit 2, nothing sent.
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    got, _, err = cli(capsys, "replay", runs[0], "--all", "--tier", "fast", *base[2:])
    assert got == 2 and "--yes" in err.splitlines()[-1]
    assert logs_in(log_dir) == before  # no experiment run was started: nothing spent
    # Through the real entry point too: a usage error is one line, no traceback.
    proc = run_cli("replay", "nosuchrun", "--all", "--tier", "fast", *base[1:])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_tool_calls_are_judged_by_comparing_them() -> None:
    def use(name: str, **args: str) -> dict[str, object]:
        return {"type": "tool_use", "id": "x", "name": name, "input": args}

    text = {"type": "text", "text": "the answer"}
    a, b = use("read_file", path="a"), use("read_file", path="b")
    assert compare_calls([text, a, b], [b, a])[0] == "same"
    assert compare_calls([a], [a, b]) == ("acceptable", compare_calls([a], [a, b])[1])
    assert compare_calls([a], [b])[0] == "worse"
    assert compare_calls([a], [text])[0] == "worse"
    assert compare_calls([text], [a])[0] == "worse"
    assert parse_verdict("Acceptable: shorter, same facts") == ("acceptable", "shorter, same facts")
    assert parse_verdict("I think so")[0] == "worse"


def test_offline_judge_reads_word_overlap() -> None:
    def ask(original: str, replay: str) -> str:
        return judge(
            f"<request>\nq\n</request>\n<original>\n{original}\n</original>\n"
            f"<replay>\n{replay}\n</replay>"
        )

    assert ask("the largest file is data.csv", "the largest file is data.csv").startswith("same")
    assert ask("a b c d e", "a b c d x").startswith("acceptable")
    assert ask("the largest file is data.csv", "I cannot help").startswith("worse")
    assert "simulated" in ask("x", "x")


def _result(prompt: str, verdict: str, tier: str = "deep") -> TurnResult:
    from tuiagent.agent.experiment import SourceTurn
    from tuiagent.llm.tokens import TokenUsage

    request = {"messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]}
    turn = SourceTurn("r", 1, tier, "m", Decimal("0.01"), TokenUsage(), request, [], prompt, ())
    return TurnResult(turn, "fast", "f", cost=Decimal("0.001"), verdict=verdict, reason="x")


def test_suggested_rules_leave_out_words_with_a_worse_turn() -> None:
    results = [
        _result("List the files", "same"),
        _result("Summarize README.md", "acceptable"),
        _result("Read app.py and explain why it fails", "worse"),
        _result("Read notes.txt", "same"),
        _result("Show the log", "same", tier="fast"),  # already fast: no evidence
    ]
    exp = Experiment(["r"], "fast", "f", results, [], Decimal(1))
    assert exp.would_have_cost == Decimal("0.001") * 4 + Decimal("0.01")
    s = suggest_rules(exp)
    (rule,) = s.rules
    assert rule.when_words == ("list", "summarize") and rule.tier == "fast"
    assert s.moved == 2 and s.saving == Decimal("0.009") * 2 and s.moved_worse == 0
    assert 'when_words = ["list", "summarize"]' in rules_toml(s.rules)


def test_router_rules_in_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[router_rules]]\nwhen_words = ["list"]\nmax_input_tokens = 900\ntier = "fast"\n'
        '[[router_rules]]\nwhen_tools = ["read_file"]\ntier = "balanced"\n'
    )
    rules = load_settings(config).router.rules
    assert rules == (
        RouterRule("fast", ("list",), (), 900),
        RouterRule("balanced", (), ("read_file",), None),
    )
    assert rule_matches(rules[0], "LIST the files", (), 900)
    assert not rule_matches(rules[0], "List the files", (), 901)
    assert not rule_matches(rules[0], "read docs/list.md", (), 10)  # a file name is no word
    assert rule_matches(rules[1], "x", ("read_file", "read_file"), 10)
    assert not rule_matches(rules[1], "x", ("read_file", "list_dir"), 10)
    assert not rule_matches(rules[1], "x", (), 10)
    router = Router(Settings().router.tiers, Pricer(), rules=tuple(rules))

    class Cold:
        def cached_prefix_tokens(self, model: str, now: float) -> int:
            return 0

    def tier(prompt: str, **kw: object) -> str:
        return router.choose(prompt=prompt, input_tokens=100, cache=Cold(), now=0, **kw).tier  # type: ignore[arg-type]

    reasoning = "List the files and design a migration plan, explaining the trade-offs"
    assert tier(reasoning) == "fast"
    assert tier(reasoning, pin="deep") == "deep"
    assert tier(reasoning, floor="balanced", floor_reason="escalated") == "balanced"
    for bad, words in (
        ('[[router_rules]]\ntier = "fast"\n', "needs a condition"),
        ('[[router_rules]]\nwhen_words = ["x"]\ntier = "huge"\n', "router_rules[0].tier"),
        ('[[router_rules]]\nwhen_word = ["x"]\ntier = "fast"\n', "router_rules[0].when_word"),
        ('[[router_rules]]\nwhen_words = "x"\ntier = "fast"\n', "a list of non-empty strings"),
        ('[[router_rules]]\nmax_input_tokens = 0\ntier = "fast"\n', "positive whole number"),
    ):
        config.write_text(bad)
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
            load_settings(config)


async def test_report_screen_shows_the_latest_experiment(
    made: tuple[Path, Path, list[str]],
) -> None:
    from textual.widgets import TabbedContent

    from tests.ui.test_report_screen import Host, screen_text
    from tuiagent.report.build import build_report
    from tuiagent.ui.screens.report import ReportScreen

    _, log_dir, runs = made
    settings = Settings().with_changes(log_dir=log_dir, max_cost_usd=Decimal("0.05"))
    fast = settings.router.model_for("fast")
    turns, skipped = load_turns(settings, log_dir, runs[:1], fast)
    exp = await run_experiment(
        settings,
        log_dir,
        turns,
        skipped,
        tier="fast",
        model=fast,
        judge=True,
        connect=lambda: connect(settings, offline=True),
    )
    app = Host(build_report(log_dir, last=3))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, ReportScreen)
        app.screen.query_one(TabbedContent).active = "report-experiment"
        await pilot.pause()
        shot = screen_text(app)
        assert f"a saving of ${exp.saving:,.6f}" in shot
        # One run replayed: its id is the table's title, not a column of every row.
        assert f"Run(s) {runs[0]} replayed on" in shot and shot.count(runs[0]) == 1
        assert "same" in shot and "simulated" in shot
