"""The report defects of issue 13, each a test: live runs, runs with no call, one meaning of
input, the cause of a costly turn, CSV money, and which run `--resume` reopens."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from tests.report.test_report import make_run
from tests.support.cli import run_cli
from tests.support.session import collect, offline_session
from tuiagent.report.build import build_report
from tuiagent.report.tables import group_table, runs_table, top_turns_table
from tuiagent.runs.log import is_live, read_records
from tuiagent.runs.recent import find_resume


def rewrite(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


async def test_a_run_being_written_is_live_and_a_dead_one_cut_off(
    workspace: Path, log_dir: Path
) -> None:
    session = offline_session(workspace, log_dir)
    await collect(session, "Which file here is largest?")  # no run_end yet: still going
    path = session.agent.log.path
    assert is_live(path)
    (run,) = build_report(log_dir).runs
    assert run.ended == "live"
    # Its writer gone without a run_end (what a killed process leaves): cut off.
    session.agent.log.close()
    assert not is_live(path)
    (run,) = build_report(log_dir).runs
    assert run.ended == "cut off (no run_end)"


async def test_runs_with_no_model_call_are_hidden_unless_all(
    workspace: Path, log_dir: Path
) -> None:
    chat = await make_run(workspace, log_dir, "Which file here is largest?")
    empty = offline_session(workspace, log_dir)  # opened and quit with no message
    empty.agent.start()
    empty.agent.finish()
    empty_id = empty.agent.log.path.stem

    last = run_cli("report", "--json", "--last", "1", "--log-dir", str(log_dir))
    assert last.returncode == 0, last.stderr
    doc = json.loads(last.stdout)
    assert [r["run_id"] for r in doc["runs"]] == [chat.stem]
    assert doc["top_turns"] and doc["hidden_runs_without_calls"] == 1
    plain = run_cli("report", "--last", "1", "--log-dir", str(log_dir))
    assert chat.stem in plain.stdout and empty_id not in plain.stdout
    assert "1 run(s) with no model call not shown (--all shows them)" in plain.stdout

    every = run_cli("report", "--json", "--all", "--log-dir", str(log_dir))
    assert [r["run_id"] for r in json.loads(every.stdout)["runs"]] == [chat.stem, empty_id]
    named = run_cli("report", "--json", "--run", empty_id, "--log-dir", str(log_dir))
    assert [r["run_id"] for r in json.loads(named.stdout)["runs"]] == [empty_id]

    chat.unlink()
    none = run_cli("report", "--log-dir", str(log_dir))
    assert none.returncode == 2 and "no run in" in none.stderr and "--all" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1


async def test_input_means_all_input_in_every_table(workspace: Path, log_dir: Path) -> None:
    # A model that caches from 1,024 tokens: its first turn is below that, so the run both
    # reads the cache and pays uncached input.
    tiers = dict.fromkeys(("fast", "balanced", "deep"), "claude-opus-4-8")
    prompt = "What do data.csv and notes.txt say?"
    await make_run(workspace, log_dir, prompt, compress=False, tiers=tiers)
    report = build_report(log_dir, top=1)
    (run,) = report.runs
    u = run.usage
    assert u.cache_read_input_tokens and u.input_tokens  # the two meanings differ here
    (top,) = report.top_turns()
    (model,) = report.by_model
    for table, total in (
        (runs_table(report), u.total_input_tokens),
        (group_table(report, "model"), model.usage.total_input_tokens),
        (top_turns_table(report), top.usage.total_input_tokens),
    ):
        console = Console(width=240, record=True)
        console.print(table)
        text = console.export_text()
        assert "in (all)" in text and f"{total:,}" in text
        assert " in " not in text.splitlines()[1]  # no column named bare "in"
    assert model.usage.total_input_tokens == u.total_input_tokens  # one model: same figure


async def test_a_cache_write_after_a_named_miss_is_the_cause(
    workspace: Path, log_dir: Path
) -> None:
    """A turn whose cost came from writing 3,857 tokens after a model change was blamed on
    the tool result the write happened to hold."""
    path = await make_run(workspace, log_dir, "What do data.csv and notes.txt say?", compress=False)
    records = read_records(path)[0]
    turn = next(r for r in records if r["type"] == "turn" and r["turn"] == 2)
    turn.update(
        cache_miss_reason="model_changed",
        input_tokens=12,
        cache_read_input_tokens=0,
        cache_creation_input_tokens=3857,
        cache_creation_5m_input_tokens=3857,
        output_tokens=40,
        cost_breakdown_usd={"input": 3.6e-05, "cache_write": 0.01446375, "output": 0.0006},
        cost_usd=0.01509975,
    )
    rewrite(path, records)
    report = build_report(log_dir)
    row = next(t for t in report.turns if t.turn == 2)
    assert row.largest_tool_result is not None  # a tool result sat in what was written
    assert row.cause == "cache write after model_changed (3,857 tokens)"
    assert row.cause_kind == "cache_miss" and row.cause_cost == Decimal("0.01446375")


async def test_csv_money_is_plain_decimals(workspace: Path, log_dir: Path) -> None:
    path = await make_run(workspace, log_dir, "Which file here is largest?")
    records = read_records(path)[0]
    first = next(r for r in records if r["type"] == "turn")
    first["cost_usd"] = 7.45e-05
    rewrite(path, records)
    proc = run_cli("report", "--csv", "--log-dir", str(log_dir))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert rows[0]["cost_usd"] == "0.0000745"
    money = [v for r in rows for k, v in r.items() if k.endswith("_usd") and v]
    assert money and all(re.fullmatch(r"-?\d+\.\d+", v) for v in money)  # never 7.45e-05


async def test_resume_finds_the_last_chat_not_a_replay_or_a_proxy(
    workspace: Path, log_dir: Path
) -> None:
    chat = await make_run(workspace, log_dir, "Which file here is largest?")
    replay = offline_session(workspace, log_dir)
    replay.agent.start(replay_of={"run_id": chat.stem, "turn": 1, "model": "x"})
    async for _ in replay.agent.send("Which file here is largest?"):
        pass
    replay.agent.finish()
    proxy = log_dir / "29991231T000000Z-000000.jsonl"  # the newest of all
    rewrite(proxy, [{"type": "run_start", "started_at": "2999-12-31", "source": "proxy"}])
    (log_dir / "transcripts" / proxy.name).write_text('{"kind":"request"}\n')
    assert (log_dir / "transcripts" / replay.agent.log.path.name).stat().st_size > 0

    assert find_resume(log_dir, "").stem == chat.stem
    assert find_resume(log_dir, replay.agent.log.path.stem).stem == replay.agent.log.path.stem


def test_halt_reasons_map_to_one_status_and_exit_code() -> None:
    from tuiagent.exit_codes import EXIT_SIGHUP, EXIT_SIGTERM
    from tuiagent.runs.outcome import outcome

    assert outcome(None) == ("completed", None, 0)
    assert outcome("error") == ("error", "error", 1)
    assert outcome("max_cost") == ("halted", "max_cost", 3)
    assert outcome("max_retries") == ("halted", "max_retries", 3)  # a limit the user set
    assert outcome("max_retries", unreachable=True) == ("error", "max_retries", 1)
    assert outcome(None, answered=False) == ("halted", None, 3)  # a replay with no answer
    assert outcome("interrupted", signum=signal.SIGINT) == ("halted", "interrupted", 130)
    assert outcome("interrupted", signum=signal.SIGTERM).exit_code == EXIT_SIGTERM
    assert outcome("interrupted", signum=signal.SIGHUP).exit_code == EXIT_SIGHUP
    assert (EXIT_SIGTERM, EXIT_SIGHUP) == (143, 129)


def on_a_terminal(*args: str, columns: int = 160) -> str:
    """`tuiagent ARGS` with its stdout on a terminal (a pty) `columns` wide: what it wrote."""
    import os
    import pty
    import subprocess
    import sys

    from tests.support.cli import cli_env

    main, child = pty.openpty()
    env = cli_env(COLUMNS=str(columns), LINES="50", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-m", "tuiagent", *args],
        stdout=child,
        stderr=subprocess.PIPE,
        env=env,
        timeout=120,
    )
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child side is closed and read
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert done.returncode == 0, done.stderr
    return out.decode()


async def test_on_a_terminal_the_tables_carry_no_escape_shown_as_a_glyph(
    workspace: Path, log_dir: Path
) -> None:
    """`report`'s tables on a terminal: stdout makes every byte printable, so a colour
    code would reach the screen as `␛[1m` (seen by hand in tmux); none is written."""
    await make_run(workspace, log_dir, "Which file here is largest?")
    text = on_a_terminal("report", "--log-dir", str(log_dir))
    assert "costliest turns" in text, text
    assert "␛" not in text and "\x1b" not in text


async def test_no_line_of_the_report_ends_in_spaces(workspace: Path, log_dir: Path) -> None:
    """The walk: `tuiagent report` padded every line of its tables (and the blank lines
    between them) with spaces out to the table's width, piped and on a terminal alike."""
    await make_run(workspace, log_dir, "Which file here is largest?")
    piped = run_cli("report", "--log-dir", str(log_dir))
    assert piped.returncode == 0, piped.stderr
    shown = on_a_terminal("report", "--log-dir", str(log_dir)).replace("\r\n", "\n")
    for text in (piped.stdout, shown):
        assert "costliest turns" in text and text.endswith("\n")
        padded = [line for line in text.split("\n") if line != line.rstrip()]
        assert padded == [], padded[:3]


async def test_a_call_stopped_mid_answer_is_not_named_a_long_output(
    workspace: Path, log_dir: Path
) -> None:
    """A call stopped by Esc keeps its input and the most output it allowed (its output is
    unknown: the server may go on): its cause said `long output: 4,096 tokens`."""
    path = await make_run(workspace, log_dir, "Which file here is largest?")
    records = read_records(path)[0]
    last = max(i for i, r in enumerate(records) if r["type"] == "turn")
    stopped = records[last]
    stopped.update(stop_reason="interrupted", output_unknown=True, output_tokens=4096)
    stopped["cost_breakdown_usd"] = {**stopped["cost_breakdown_usd"], "output": 0.02048}
    stopped["cost_usd"] = sum(stopped["cost_breakdown_usd"].values())
    rewrite(path, records)
    (row,) = [t for t in build_report(log_dir).turns if t.turn == stopped["turn"]]
    assert row.cause == "output unknown (stopped or failed): counted at its limit, 4,096 tokens"
