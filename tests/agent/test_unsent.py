"""A request that fails on this machine before it can have left is never billed, and not
retried when it could not be built; bytes that are not UTF-8 never get that far."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.session import collect, offline_session
from tuiagent.agent.events import AttemptFailed, TurnFinished
from tuiagent.agent.tools import Toolbox, Workspace


async def test_a_request_that_cannot_be_encoded_is_not_billed_or_retried(
    workspace: Path, log_dir: Path
) -> None:
    session = offline_session(workspace, log_dir)
    # A lone surrogate (a byte that was not UTF-8) cannot be encoded: the request never leaves.
    events = await collect(session, "what is in caf\udce9.txt?")
    failed = [e.record for e in events if isinstance(e, AttemptFailed)]
    assert len(failed) == 1, [f.error for f in failed]  # not retried: it would fail the same
    (attempt,) = failed
    assert attempt.sent is False and not attempt.usage_unknown
    assert attempt.cost_usd == Decimal(0) and attempt.error_type == "client_error"
    assert "UnicodeEncodeError" in attempt.error
    assert session.agent.state.halt_reason == "error"
    assert not any(isinstance(e, TurnFinished) for e in events)
    assert session.agent.spending.spent == Decimal(0)


def test_a_file_name_that_is_not_utf8_enters_the_conversation_marked(
    workspace: Path, log_dir: Path
) -> None:
    (workspace / "caf\udce9.txt").write_text("bonjour\n")  # the name's byte is 0xE9
    proc = run_cli(
        "run",
        "list the files",
        "--offline",
        "--workspace",
        str(workspace),
        "--log-dir",
        str(log_dir),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "caf\\xe9.txt" in proc.stdout and "completed: 2 turns" in proc.stdout
    (log,) = log_dir.glob("*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert not [r for r in records if r["type"] == "attempt"]
    # The name opens by the spelling it was shown with.
    box = Toolbox()
    for tool in Workspace(workspace).tools():
        box.add(tool)
    read = asyncio.run(box.call("read_file", {"path": "caf\\xe9.txt"}))
    assert (read.is_error, read.text) == (False, "bonjour\n")
