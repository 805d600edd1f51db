"""The hard cap, the retry budget, faults on the wire and bad input (issue 3)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.cli import run_cli, start_cli
from tests.support.loopback import (
    API_ERROR,
    AUTH_ERROR,
    MID_STREAM_ERROR,
    OVERLOADED,
    OVERLOADED_HEADERS,
    RATE_LIMITED,
    Fault,
    LoopbackAPI,
    status,
)
from tests.support.session import billed_input, collect
from tuiagent.agent.events import AttemptFailed, Halted, Notice, TurnFinished
from tuiagent.config import Settings
from tuiagent.offline import OfflineModel
from tuiagent.runs.layout import transcript_file
from tuiagent.runs.log import read_records
from tuiagent.session import Session, open_session

SECRET_KEY = "sk-ant-api03-SECRET-DO-NOT-LEAK-1234567890"


def online_session(
    api: LoopbackAPI,
    workspace: Path,
    log_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    **overrides: object,
) -> tuple[Session, list[float]]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
    settings = Settings().with_changes(log_dir=log_dir)
    settings = settings.with_changes(**overrides)
    session = open_session(settings, workspace=workspace, offline=False)
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    session.agent.caller.meter.sleep = no_sleep
    return session, waits


async def test_two_transient_errors_then_success(
    workspace: Path, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = [
        status(429, RATE_LIMITED, retry_after="7"),
        status(529, OVERLOADED, **{k.replace("-", "_"): v for k, v in OVERLOADED_HEADERS.items()}),
    ]
    with LoopbackAPI(faults=faults) as api:
        session, waits = online_session(api, workspace, log_dir, monkeypatch)
        events = await collect(session, "Which file here is largest?")
        end = session.agent.finish()
    attempts = [e.record.to_json() for e in events if isinstance(e, AttemptFailed)]
    turns = [e.record.to_json() for e in events if isinstance(e, TurnFinished)]
    assert [a["status"] for a in attempts] == [429, 529]
    assert [a["error_type"] for a in attempts] == ["rate_limit_error", "overloaded_error"]
    assert waits[0] == 7.0  # retry-after honoured
    assert 0.5 <= waits[1] <= 1.0  # no retry-after: second backoff, 1s with jitter
    assert [t["turn"] for t in turns] == list(range(1, len(turns) + 1))  # each turn priced once
    assert end.record.to_json()["status"] == "completed"
    assert api.messages_calls() == len(turns) + 2
    total = sum(Decimal(str(t["cost_usd"])) for t in turns) + sum(
        Decimal(str(a["cost_usd"])) for a in attempts
    )
    assert abs(total - Decimal(str(end.record.to_json()["total_cost_usd"]))) < Decimal("1e-9")


async def test_exhausting_retries_halts(
    workspace: Path, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackAPI(faults=[status(500, API_ERROR)] * 5) as api:
        session, waits = online_session(api, workspace, log_dir, monkeypatch, max_retries=2)
        events = await collect(session, "Which file here is largest?")
    attempts = [e.record.to_json() for e in events if isinstance(e, AttemptFailed)]
    assert len(attempts) == 3  # two retried, then the one that used the budget up
    assert [a["retry_in_s"] is None for a in attempts] == [False, False, True]
    (halt,) = [e for e in events if isinstance(e, Halted)]
    assert halt.reason == "max_retries"
    assert api.messages_calls() == 3 and len(waits) == 2


@pytest.mark.parametrize(
    "code,body",
    [
        (
            400,
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "messages: field required"},
            },
        ),
        (
            404,
            {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-x"}},
        ),
    ],
)
async def test_client_errors_are_not_retried(
    code: int,
    body: dict[str, object],
    workspace: Path,
    log_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with LoopbackAPI(faults=[status(code, body)]) as api:
        session, waits = online_session(api, workspace, log_dir, monkeypatch)
        events = await collect(session, "hello")
    assert api.messages_calls() == 1 and waits == []
    (notice,) = [e for e in events if isinstance(e, Notice)]
    assert str(code) in notice.text and session.agent.state.halt_reason == "error"


async def test_mid_stream_error_is_retried_and_its_tokens_priced(
    workspace: Path, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackAPI(faults=[Fault("stream_error", body=MID_STREAM_ERROR)]) as api:
        session, _ = online_session(api, workspace, log_dir, monkeypatch)
        events = await collect(session, "Which file here is largest?")
        session.agent.finish()
    (attempt,) = [e.record.to_json() for e in events if isinstance(e, AttemptFailed)]
    assert attempt["status"] == 200 and attempt["error_type"] == "overloaded_error"
    assert billed_input(attempt) > 0 and attempt["cost_usd"] > 0  # message_start billed input
    assert session.agent.state.halt_reason is None


async def test_dropped_connection_is_retried(
    workspace: Path, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackAPI(faults=[Fault("drop")]) as api:
        session, _ = online_session(api, workspace, log_dir, monkeypatch)
        events = await collect(session, "Which file here is largest?")
    (attempt,) = [e.record.to_json() for e in events if isinstance(e, AttemptFailed)]
    assert attempt["error_type"] == "connection_error"
    assert any(
        isinstance(e, TurnFinished) and e.record.to_json()["stop_reason"] == "end_turn"
        for e in events
    )


async def test_slow_stream_completes_with_ttft(
    workspace: Path, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackAPI(faults=[Fault("slow", delay_s=0.02)]) as api:
        session, _ = online_session(api, workspace, log_dir, monkeypatch)
        events = await collect(session, "Which file here is largest?")
    first = next(e.record.to_json() for e in events if isinstance(e, TurnFinished))
    assert first["ttft_s"] is not None and first["latency_s"] >= first["ttft_s"]
    assert not [e for e in events if isinstance(e, AttemptFailed)]


def test_bad_key_is_one_line_exit_1_not_retried(workspace: Path, log_dir: Path) -> None:
    with LoopbackAPI() as api:
        api.count_faults.extend([status(401, AUTH_ERROR)] * 3)
        api.faults.extend([status(401, AUTH_ERROR)] * 3)
        proc = run_cli(
            "run",
            "hello",
            "--workspace",
            str(workspace),
            "--log-dir",
            str(log_dir),
            env={"ANTHROPIC_API_KEY": SECRET_KEY, "ANTHROPIC_BASE_URL": api.base_url},
        )
        calls = len(api.requests)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "key" in lines[0] and "401" in lines[0]
    assert proc.stdout.splitlines()[-1].startswith("error: 0 turns")  # not "error (error)"
    assert calls == 1  # count_tokens refused: nothing retried, nothing sent
    logs = "".join(p.read_text() for p in log_dir.rglob("*.jsonl"))
    assert SECRET_KEY not in proc.stdout + proc.stderr + logs
    assert SECRET_KEY[-10:] not in logs


def test_cap_holds_against_greedy_answers(workspace: Path, log_dir: Path) -> None:
    # 16 words to an event: the cap is about usage, not how finely the text streams.
    greedy = OfflineModel(fill_max_tokens=True, always_tool=True, words_per_delta=16)
    with LoopbackAPI(model=greedy) as api:
        proc = run_cli(
            "run",
            "List the files here",
            "--max-cost",
            "0.05",
            "--max-turns",
            "50",
            "--json",
            "--workspace",
            str(workspace),
            "--log-dir",
            str(log_dir),
            env={"ANTHROPIC_API_KEY": SECRET_KEY, "ANTHROPIC_BASE_URL": api.base_url},
        )
    assert proc.returncode == 3, proc.stderr
    records = [json.loads(x) for x in proc.stdout.splitlines()]
    end = records[-1]
    assert end["type"] == "run_end" and end["halt_reason"] == "max_cost"
    assert 0.025 <= end["total_cost_usd"] <= 0.05
    turns = [r for r in records if r["type"] == "turn"]
    assert all(t["output_tokens"] == t["max_tokens"] for t in turns)  # every answer used all
    assert any(t["max_tokens"] < t["max_tokens_requested"] for t in turns)  # clamped to fit


def start_slow_run(
    prompt: str,
    tokens_per_second: int,
    workspace: Path,
    log_dir: Path,
    tmp_path: Path,
    *,
    sigint_ignored: bool = False,
) -> subprocess.Popen[str]:
    """`tuiagent run` on the offline model, streaming slowly enough to be stopped mid-run."""
    cfg = tmp_path / "slow.toml"
    cfg.write_text(f"offline_tokens_per_second = {tokens_per_second}\nmax_tokens = 400\n")
    return start_cli(
        "run",
        prompt,
        "--offline",
        "--config",
        str(cfg),
        "--workspace",
        str(workspace),
        "--log-dir",
        str(log_dir),
        sigint_ignored=sigint_ignored,
    )


def wait_for_turns(log_dir: Path, turns: int) -> Path | None:
    """The run log once it holds this many turn records (None after a minute)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for log in log_dir.glob("*.jsonl") if log_dir.exists() else []:
            if log.read_text().count('"type":"turn"') >= turns:
                return log
        time.sleep(0.02)
    return None


def wait_for_a_call_in_flight(log_dir: Path) -> bool:
    """Wait until a model call after the first turn is in flight: its request is in the
    transcript (written once it is reserved, before it is sent) and its turn not yet in the
    log (between the two, no tool runs). False after a minute."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for log in log_dir.glob("*.jsonl") if log_dir.exists() else []:
            transcript = transcript_file(log)
            turns = log.read_text().count('"type":"turn"')
            sent = transcript.read_text().count('"kind":"request"') if transcript.exists() else 0
            if turns >= 1 and sent == turns + 1:
                return True
        time.sleep(0.005)
    return False


def test_kill_9_leaves_a_readable_log(workspace: Path, log_dir: Path, tmp_path: Path) -> None:
    proc = start_slow_run(
        "What do notes.txt and README.md and data.csv say?", 200, workspace, log_dir, tmp_path
    )
    log = wait_for_turns(log_dir, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert log is not None
    records, bad = read_records(log)
    # The kill may cut the record being written: only the last line, with no newline (the
    # next open of the log cuts it); every line before it is whole.
    assert bad == (0 if log.read_bytes().endswith(b"\n") else 1)
    assert len([r for r in records if r["type"] == "turn"]) >= 2
    assert records[0]["type"] == "run_start"


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "parent-ignores"])
def test_ctrl_c_writes_run_end(
    workspace: Path, log_dir: Path, tmp_path: Path, sigint_ignored: bool
) -> None:
    # 20 tokens/s and three files to read: 5-6 s left in the run after its first turn (with
    # two files 2.7 s, and CI once took longer than that to send the signal: exit 0). A run
    # started with SIGINT ignored (`cmd &` in a script, or CI launched so) stops on it too:
    # asyncio.run leaves an ignored SIGINT ignored, and the run went on to its end (exit 0)
    # or past the timeout.
    proc = start_slow_run(
        "What do notes.txt and README.md and data.csv say?",
        20,
        workspace,
        log_dir,
        tmp_path,
        sigint_ignored=sigint_ignored,
    )
    assert wait_for_turns(log_dir, 1) is not None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    (log,) = log_dir.glob("*.jsonl")
    records, bad = read_records(log)
    assert bad == 0 and records[-1]["type"] == "run_end"
    assert records[-1]["halt_reason"] == "interrupted" and "Traceback" not in err
