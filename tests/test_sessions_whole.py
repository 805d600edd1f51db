"""Long sessions kept whole (issue 28): a resumed run keeps its result ids and originals and
never reuses an id, `--resume` by prefix, resumed runs report and replay, `run --json`
carries the answer, replay compares with the answer as it was, compaction only when it pays
on a large history, its own turn number, and clearing that rewrites only what follows the
settled part of the history."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tuiagent.agent.events import AnswerDelta, ContextEdited, Event, Notice
from tuiagent.cli import main
from tuiagent.config import Settings
from tuiagent.errors import UsageError
from tuiagent.offline import OfflineModel
from tuiagent.runs.recent import find_resume
from tuiagent.session import Session, open_session


def server_log(lines: int) -> str:
    return "".join(f"2026-01-01 12:00:{i % 60:02d} INFO request {i} served\n" for i in range(lines))


@pytest.fixture
def ws(workspace: Path) -> Path:
    (workspace / "logs").mkdir()
    (workspace / "logs" / "server.log").write_text(server_log(2000))
    (workspace / "notes").mkdir()
    (workspace / "notes" / "beta.txt").write_text(
        "".join(f"beta line {i}: the notes of the beta project, kept long\n" for i in range(300))
    )
    return workspace


def opened(ws: Path, log_dir: Path, resume: Path | None = None, **changes: Any) -> Session:
    settings = Settings().with_changes(**{"log_dir": log_dir, "tier": "fast", **changes})
    return open_session(settings, workspace=ws, offline=True, resume=resume)


async def ask(session: Session, prompt: str) -> str:
    return "".join([e.text async for e in session.agent.send(prompt) if isinstance(e, AnswerDelta)])


def lines_of(session: Session, kind: str) -> list[dict[str, Any]]:
    text = session.agent.log.path.read_text()
    return [r for r in map(json.loads, text.splitlines()) if r["type"] == kind]


async def test_a_resumed_run_keeps_result_ids_and_never_reuses_one(ws: Path, log_dir: Path) -> None:
    first = opened(ws, log_dir)
    first.agent.start()
    await ask(first, "read logs/server.log")
    before = await ask(first, "expand r1 lines 10-12")
    first.agent.finish()
    assert "request 10 served" in before

    resumed = opened(ws, log_dir, resume=find_resume(log_dir, first.agent.state.run_id[:17]))
    resumed.agent.start()
    assert await ask(resumed, "expand r1 lines 10-12") == before  # the same exact lines
    beta = await ask(resumed, "read notes/beta.txt")
    assert "as r2" in beta  # r1 is logs/server.log's, for good
    assert "beta line 3:" in await ask(resumed, "expand r2 lines 3-3")
    assert "request 11 served" in await ask(resumed, "expand r1 lines 11-11")
    resumed.agent.finish()
    (start,) = lines_of(resumed, "run_start")
    assert start["resumed_from"] == first.agent.state.run_id
    ids = [t["result_id"] for t in lines_of(resumed, "tool") if t["result_id"]]
    assert ids == ["r2"]

    # A resume of the resume still has both (its own transcript holds them).
    again = opened(ws, log_dir, resume=find_resume(log_dir, resumed.agent.state.run_id))
    again.agent.start()
    assert await ask(again, "expand r1 lines 10-12") == before
    assert "beta line 3:" in await ask(again, "expand r2 lines 3-3")
    again.agent.finish()


async def test_an_old_transcript_without_originals_still_never_reuses_an_id(
    ws: Path, log_dir: Path
) -> None:
    first = opened(ws, log_dir)
    first.agent.start()
    await ask(first, "read logs/server.log")
    first.agent.finish()
    transcript = first.agent.transcript.path
    kept = [line for line in transcript.read_text().splitlines() if '"kind":"result"' not in line]
    transcript.write_text("\n".join(kept) + "\n")  # as a run before originals were kept

    resumed = opened(ws, log_dir, resume=transcript)
    resumed.agent.start()
    said = await ask(resumed, "expand r1")
    assert "the original of r1 was not kept" in said
    assert "as r2" in await ask(resumed, "read notes/beta.txt")
    resumed.agent.finish()


def test_resume_takes_a_unique_prefix_and_refuses_an_ambiguous_one(tmp_path: Path) -> None:
    logs = tmp_path / "runs"
    (logs / "transcripts").mkdir(parents=True)
    for run_id in ("20261201T100000Z-aaaaaa", "20261201T100000Z-abbbbb", "20261202T090000Z-cc"):
        (logs / f"{run_id}.jsonl").write_text("{}\n")
        (logs / "transcripts" / f"{run_id}.jsonl").write_text("{}\n")
    assert find_resume(logs, "20261202").stem == "20261202T090000Z-cc"
    assert find_resume(logs, "20261201T100000Z-ab").stem == "20261201T100000Z-abbbbb"
    with pytest.raises(UsageError, match=r"2 runs in .* begin with '20261201T10'"):
        find_resume(logs, "20261201T10")
    with pytest.raises(UsageError, match="no run 'nope'"):
        find_resume(logs, "nope")
    # As the user meets it: one line, exit 2, before any screen.
    done = run_cli("--offline", "--log-dir", str(logs), "--resume", "2026120")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "3 runs" in done.stderr


def test_a_resumed_run_reports_and_replays(
    ws: Path, log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def make() -> str:
        first = opened(ws, log_dir)
        first.agent.start()
        await ask(first, "read logs/server.log")
        first.agent.finish()
        resumed = opened(ws, log_dir, resume=first.agent.transcript.path)
        resumed.agent.start()
        await ask(resumed, "expand r1 lines 0-2")
        resumed.agent.finish()
        return resumed.agent.state.run_id

    run_id = asyncio.run(make())
    capsys.readouterr()
    assert main(["report", "--log-dir", str(log_dir), "--run", run_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["runs"]
    assert row["run_id"] == run_id and row["turns"] == 2
    assert main(["replay", run_id, "--turn", "2", "--tier", "deep", "--log-dir", str(log_dir)]) == 0
    shown = capsys.readouterr().out
    assert "Expanded r1, lines 0-2" in shown and f"Turn 2 of run {run_id}" in shown


def test_run_json_carries_the_answer(ws: Path, tmp_path: Path) -> None:
    done = run_cli(
        "run", "--offline", "--json", "--workspace", str(ws), "--log-dir", str(tmp_path / "l"),
        "What does README.md say?",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    (answer,) = [r for r in lines if r["type"] == "answer"]
    assert "Demo project" in answer["text"] and answer["stop_reason"] == "end_turn"
    assert answer["turn"] == max(r["turn"] for r in lines if r["type"] == "turn")
    assert lines[-1]["type"] == "run_end"


def test_replay_judges_against_the_answer_as_it_was_before_a_compaction(
    ws: Path, log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def make() -> str:
        session = opened(ws, log_dir)
        session.agent.start()
        for prompt in ("What does README.md say?", "What does notes.txt say?", "List the files."):
            await ask(session, prompt)
        events: list[Event] = [e async for e in session.agent.compact()]
        assert any(isinstance(e, ContextEdited) for e in events)
        session.agent.finish()
        return session.agent.state.run_id

    run_id = asyncio.run(make())
    capsys.readouterr()
    code = main(
        [
            *("replay", run_id, "--all", "--tier", "deep", "--judge", "--yes", "--json"),
            *("--offline", "--log-dir", str(log_dir)),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["turns"]) == 6
    assert result["verdicts"]["same"] == 6, [t["reason"] for t in result["turns"]]


async def test_compaction_calls_have_their_own_turn_numbers(ws: Path, log_dir: Path) -> None:
    session = opened(ws, log_dir)
    agent = session.agent
    agent.start()
    await ask(session, "What does README.md say?")
    [e async for e in agent.compact()]
    await ask(session, "What does notes.txt say?")
    agent.finish()
    turns = [(t["turn"], t["purpose"]) for t in lines_of(session, "turn")]
    numbers = [n for n, _ in turns]
    assert len(set(numbers)) == len(numbers) == 5, turns
    assert turns[2] == (3, "compact")
    (edit,) = lines_of(session, "context")
    assert edit["turn"] == 3 and edit["trigger"] == "asked"
    assert lines_of(session, "run_end")[0]["turns"] == 5


def filler(session: Session, messages: int, words: int) -> None:
    """An earlier conversation of `messages` exchanges, each about `words` words long."""
    for i in range(messages):
        session.agent.state.history += [
            {"role": "user", "content": [{"type": "text", "text": f"Question {i}?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "word " * words}]},
        ]


async def compactions(session: Session, said: list[str] | None = None) -> list[dict[str, Any]]:
    async for event in session.agent.send("What does README.md say?"):
        if isinstance(event, Notice) and said is not None:
            said.append(event.text)
    return [r for r in lines_of(session, "context") if r["action"] == "compact"]


async def test_a_small_history_is_not_compacted_however_cheap_the_summary(
    ws: Path, log_dir: Path
) -> None:
    # 40,000 tokens of history: a summary would pay for itself, but it is under a quarter
    # of the 1,000,000-token window, so the detail is kept.
    session = opened(ws, log_dir, tier="deep")
    session.agent.start()
    filler(session, 40, 900)
    assert await compactions(session) == []


async def test_a_large_history_is_compacted_when_the_saving_per_call_is_material(
    ws: Path, log_dir: Path
) -> None:
    window = 100_000
    model = OfflineModel(context_window=window)
    settings = Settings().with_changes(log_dir=log_dir, tier="deep", context_window=window)
    session = open_session(settings, workspace=ws, offline=True, offline_model=model)
    session.agent.start()
    filler(session, 30, 900)  # ~28,000 tokens: over a quarter of the window, under 0.8
    said: list[str] = []
    (edit,) = await compactions(session, said)
    assert edit["trigger"] == "saving"
    assert "at least 25% of the 100,000-token window" in edit["reason"]
    assert "on each later call (at least $0.001)" in edit["reason"]
    assert "compacting the conversation: the history holds" in said[0]

    # The same history, with a floor above what it saves per call: not compacted.
    floor = opened(ws, log_dir / "f", tier="deep", context_window=window)
    floor = open_session(
        floor.agent.settings.with_changes(compact_min_saving_usd=Decimal("5")),
        workspace=ws,
        offline=True,
        offline_model=OfflineModel(context_window=window),
    )
    floor.agent.start()
    filler(floor, 30, 900)
    assert await compactions(floor) == []


async def test_after_a_clearing_the_settled_part_stays_cached(ws: Path, log_dir: Path) -> None:
    """A clearing edits the history; a breakpoint held at the end of what it settled keeps
    that prefix readable, so the next clearing rewrites only what follows it."""
    (ws / "data").mkdir()
    for n in range(24):
        (ws / "data" / f"w{n:02d}.log").write_text(server_log(400 + 40 * n))
    session = opened(ws, log_dir, context_keep_turns=1)
    session.agent.start()
    for n in range(24):
        await ask(session, f"Read data/w{n:02d}.log")
    clearings = [r for r in lines_of(session, "context") if r["action"] == "clear_tool_results"]
    assert len(clearings) >= 2
    turns = [t for t in lines_of(session, "turn") if t["purpose"] == "agent"]
    second = clearings[1]
    after = next(t for t in turns if t["turn"] == second["turn"] + 1)
    # The call after the second clearing read the settled prefix from the cache and wrote
    # about what the rule said it would (not the whole prompt).
    assert after["cache_read_input_tokens"] > 0
    assert after["cache_creation_input_tokens"] <= second["rewritten_tokens"] * 1.3
