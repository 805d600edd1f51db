"""Long sessions (issue 14): per-request limits, the context meter, clearing, compaction,
/clear, and the offline model's real window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.support.loopback import API_ERROR, FaultyModel, status
from tuiagent.agent.events import Event, Halted, Notice, TurnFinished
from tuiagent.config import Settings
from tuiagent.llm.client import make_client
from tuiagent.llm.tokens import estimate_request_tokens
from tuiagent.llm.window import context_window
from tuiagent.offline import OfflineModel
from tuiagent.runs.transcript import load_requests
from tuiagent.session import Session, open_session


def session_with(workspace: Path, log_dir: Path, model: OfflineModel, **overrides: Any) -> Session:
    settings = Settings().with_changes(log_dir=log_dir, tier="fast")
    settings = settings.with_changes(**overrides)
    return open_session(settings, workspace=workspace, offline=True, offline_model=model)


async def send(session: Session, prompt: str) -> list[Event]:
    return [event async for event in session.agent.send(prompt)]


def records(session: Session, kind: str) -> list[dict[str, Any]]:
    lines = session.agent.log.path.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def answer_of(events: list[Event]) -> str:
    from tuiagent.agent.events import AnswerDelta

    return "".join(e.text for e in events if isinstance(e, AnswerDelta))


def notes(workspace: Path, count: int) -> None:
    (workspace / "notes").mkdir()
    for n in range(1, count + 1):
        (workspace / "notes" / f"p{n}.txt").write_text(
            f"# Project {n}\nThe launch city of project {n} is CITY-{n}.\n"
            + "".join(f"filler line {i} of the notes\n" for i in range(120))
        )


async def test_a_retry_budget_spent_on_message_2_does_not_stop_message_3(
    workspace: Path, log_dir: Path
) -> None:
    model = FaultyModel([])
    session = session_with(workspace, log_dir, model, max_retries=2)

    async def no_sleep(seconds: float) -> None:
        pass

    session.agent.caller.meter.sleep = no_sleep
    session.agent.start()
    assert not [e for e in await send(session, "What does README.md say?") if isinstance(e, Halted)]
    model.faults.extend([status(500, API_ERROR)] * 3)
    (halt,) = [e for e in await send(session, "What does notes.txt say?") if isinstance(e, Halted)]
    assert halt.reason == "max_retries" and "each message gets its own" in halt.detail
    model.faults.extend([status(500, API_ERROR)] * 2)  # two more blips: within message 3's own
    events = await send(session, "What does README.md say?")
    assert not [e for e in events if isinstance(e, Halted)]
    assert "Demo project" in answer_of(events)
    assert session.agent.state.halt_reason is None


async def test_max_turns_counts_per_request_and_turns_n_goes_on(
    workspace: Path, log_dir: Path
) -> None:
    session = session_with(workspace, log_dir, OfflineModel(), max_turns=2)
    session.agent.start()
    for _ in range(3):  # two calls each: read, answer; 6 calls in all, none halted
        events = await send(session, "What does README.md say?")
        assert not [e for e in events if isinstance(e, Halted)]
    events = await send(session, "Read README.md and notes.txt")  # needs three calls
    (halt,) = [e for e in events if isinstance(e, Halted)]
    assert halt.reason == "max_turns" and "/turns N" in halt.detail
    session.agent.set_max_turns(5)
    events = [e async for e in session.agent.go_on()]
    assert not [e for e in events if isinstance(e, Halted)]
    assert "notes.txt" in answer_of(events) and "README.md" in answer_of(events)


async def test_clear_leaves_the_next_request_with_no_earlier_messages(
    workspace: Path, log_dir: Path
) -> None:
    session = session_with(workspace, log_dir, OfflineModel())
    agent = session.agent
    agent.start()
    await send(session, "What does README.md say?")
    spent = agent.spending.spent
    edited = agent.clear_conversation()
    assert (
        edited.record.to_json()["action"] == "clear"
        and edited.record.to_json()["messages_before"] == 4
    )
    await send(session, "What does notes.txt say?")
    agent.finish()
    requests = [r for r in load_requests(agent.transcript.path) if r["purpose"] == "agent"]
    last = requests[-1]["request"]["messages"]
    assert last[0]["content"][0]["text"] == "What does notes.txt say?"
    assert "README" not in json.dumps(last)
    # The requests before /clear still rebuild as they were sent (for replay and reports).
    assert requests[0]["request"]["messages"][0]["content"][0]["text"].startswith("What does R")
    assert agent.spending.spent > spent  # the budget carries on


async def test_a_request_over_the_window_is_compacted_before_it_is_sent(
    workspace: Path, log_dir: Path
) -> None:
    window = 4000
    model = OfflineModel(context_window=window)
    session = session_with(workspace, log_dir, model, context_window=window)
    agent = session.agent
    agent.start()
    # An earlier conversation that alone is over the window (as a resumed run might be).
    long_answer = "The earlier answer went on and on about the workspace. " * 60
    for i in range(6):
        agent.state.history += [
            {"role": "user", "content": [{"type": "text", "text": f"Question {i}?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": long_answer}]},
        ]
    assert estimate_request_tokens(agent.conversation.body()) > window
    events = await send(session, "What does README.md say?")
    assert not [e for e in events if isinstance(e, Halted)]
    assert not [e for e in events if isinstance(e, Notice) and e.level == "error"]
    assert "Demo project" in answer_of(events)
    (compact,) = records(session, "context")
    assert compact["action"] == "compact" and "neared the window" in compact["reason"]
    assert compact["tokens_before"] > window >= compact["tokens_after"]
    assert compact["cost_usd"] > 0
    (summary_turn,) = [t for t in records(session, "turn") if t["purpose"] == "compact"]
    assert summary_turn["model"] == agent.settings.router.model_for("fast")
    assert summary_turn["cost_usd"] == compact["cost_usd"]
    agent.finish()
    sent = [r["request"] for r in load_requests(agent.transcript.path) if r["purpose"] == "agent"]
    assert sent and all(estimate_request_tokens(r) <= window for r in sent)


async def test_the_offline_model_answers_the_api_400_over_its_window() -> None:
    client = make_client(offline_transport=OfflineModel(context_window=500))
    messages: Any = [{"role": "user", "content": "word " * 600}]
    tokens = estimate_request_tokens({"messages": messages})
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(model="claude-haiku-5-5", max_tokens=10, messages=messages)
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == f"prompt is too long: {tokens} tokens > 500 maximum"


def test_windows_come_from_genai_prices_with_a_default() -> None:
    assert context_window("claude-haiku-5-5") == 1_000_000
    assert context_window("claude-3-haiku-20240307") == 200_000
    assert context_window("some-gateway-model") == 200_000


async def test_old_results_are_cleared_and_recalled_through_expand_result(
    workspace: Path, log_dir: Path
) -> None:
    notes(workspace, 8)
    session = session_with(workspace, log_dir, OfflineModel(), context_keep_turns=1)
    agent = session.agent
    agent.start()
    for n in range(1, 9):
        await send(session, f"What does notes/p{n}.txt say?")
    cleared = [r for r in records(session, "context") if r["action"] == "clear_tool_results"]
    assert cleared and cleared[0]["cleared_tokens"] > 0 and cleared[0]["reason"]
    first = agent.state.history[2]["content"][0]["content"]
    assert "cleared from context" in first and 'expand_result(result_id="r' in first
    events = await send(session, "What did notes/p1.txt say about launch city?")
    assert "CITY-1." in answer_of(events)
    tools = [
        e.record.to_json()["name"]
        for e in events
        if hasattr(e, "record") and e.record.to_json()["type"] == "tool"
    ]
    assert tools == ["expand_result"]
    # Every turn's context_tokens is what its request, rebuilt from the transcript, holds.
    agent.finish()
    turns = [t for t in records(session, "turn") if t["purpose"] == "agent"]
    sent = [r["request"] for r in load_requests(agent.transcript.path) if r["purpose"] == "agent"]
    assert [estimate_request_tokens(r) for r in sent] == [t["context_tokens"] for t in turns]
    assert {t["context_window"] for t in turns} == {1_000_000}


async def test_a_small_result_stays_whole_and_is_answered_without_a_recall(
    workspace: Path, log_dir: Path
) -> None:
    """Clearing a result under context_clear_min_tokens saves little on each call, and a
    question about it later would cost a call to recall it: it stays whole, while the
    large results around it are cleared."""
    notes(workspace, 6)  # large: 120 filler lines each
    lines = [f"Item {i} of the beta is on schedule for the spring release." for i in range(4)]
    (workspace / "small.txt").write_text("\n".join(["The owner of the beta is Ada.", *lines]))
    session = session_with(workspace, log_dir, OfflineModel(), context_keep_turns=1)
    agent = session.agent
    agent.start()
    await send(session, "What does small.txt say?")
    for n in range(1, 7):
        await send(session, f"What does notes/p{n}.txt say?")
    cleared = [r for r in records(session, "context") if r["action"] == "clear_tool_results"]
    assert cleared, "the large results were cleared"
    small = agent.state.history[2]["content"][0]["content"]
    assert "Ada" in str(small) and "cleared from context" not in str(small)
    events = await send(session, "What did small.txt say about the owner?")
    assert "Ada" in answer_of(events)
    tools = [
        e.record.to_json()["name"]
        for e in events
        if hasattr(e, "record") and e.record.to_json()["type"] == "tool"
    ]
    assert tools == []  # answered from the result it still holds
    agent.finish()


async def test_without_context_management_nothing_is_cleared(
    workspace: Path, log_dir: Path
) -> None:
    notes(workspace, 6)
    session = session_with(workspace, log_dir, OfflineModel(), context_management=False)
    session.agent.start()
    for n in range(1, 7):
        events = await send(session, f"What does notes/p{n}.txt say?")
        assert [e for e in events if isinstance(e, TurnFinished)]
    assert records(session, "context") == []
    events = await send(session, "What did notes/p1.txt say about launch city?")
    assert "CITY-1." in answer_of(events)


async def test_compact_now_summarises_and_keeps_result_ids(workspace: Path, log_dir: Path) -> None:
    notes(workspace, 3)
    session = session_with(workspace, log_dir, OfflineModel())
    agent = session.agent
    agent.start()
    for n in range(1, 4):
        await send(session, f"What does notes/p{n}.txt say?")
    events = [e async for e in agent.compact()]
    assert any(isinstance(e, Notice) and "compacted" in e.text for e in events)
    (summary,) = agent.state.history
    assert "r1: read_file notes/p1.txt" in summary["content"][0]["text"]
    events = await send(session, "What did notes/p2.txt say about launch city?")
    assert "CITY-2." in answer_of(events)


def test_recent_sessions_are_newest_first_and_never_replays(tmp_path: Path) -> None:
    from tuiagent.runs.recent import recent_sessions

    logs = tmp_path / "runs"
    (logs / "transcripts").mkdir(parents=True)

    def run(run_id: str, text: str, **start: Any) -> None:
        lines = [
            {"type": "run_start", "run_id": run_id, "started_at": "2026-12-01T10:00:00Z", **start},
            {"type": "user", "text": text},
            {"type": "turn", "cost_usd": 0.25},
            {"type": "attempt", "cost_usd": 0.5},
        ]
        (logs / f"{run_id}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        (logs / "transcripts" / f"{run_id}.jsonl").write_text("{}\n")

    run("20261201T100000Z-aaaaaa", "first " * 30)
    run("20261201T110000Z-bbbbbb", "a replay", replay_of={"run_id": "x", "turn": 1})
    run("20261201T120000Z-cccccc", "What does notes.txt say?")
    found = recent_sessions(logs)
    assert [s.run_id for s in found] == ["20261201T120000Z-cccccc", "20261201T100000Z-aaaaaa"]
    assert found[0].title == "What does notes.txt say?" and found[0].turns == 1
    assert str(found[0].cost_usd) == "0.75" and len(found[1].title) == 60
