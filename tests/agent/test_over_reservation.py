"""The over-reservation warning speaks of dollars when the dollars went over the hold, and of
tokens otherwise (input above the count with the bill far below the hold)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.agent.test_budget_retries import online_session
from tests.support.loopback import Fault, LoopbackAPI
from tests.support.session import collect
from tuiagent.agent.events import Notice, TurnFinished


async def test_tokens_over_the_count_but_dollars_within_the_hold(
    workspace: Path, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackAPI(faults=[Fault("input_above_count")]) as api:
        session, _ = online_session(api, workspace, log_dir, monkeypatch)
        events = await collect(session, "hello")
    turn = next(e.record for e in events if isinstance(e, TurnFinished))
    assert turn.over_reservation and turn.cost_usd < turn.reserved_usd
    (warning,) = [e.text for e in events if isinstance(e, Notice) and e.level == "warning"]
    assert "billed more than" not in warning
    assert warning.startswith("turn 1: the server counted more tokens than the call was reserved")
    assert f"{turn.usage.total_input_tokens:,} input against {turn.input_tokens_counted:,}" in (
        warning
    )
    assert f"(${turn.cost_usd:.6f} of ${turn.reserved_usd:.6f})" in warning


async def test_dollars_over_the_hold_are_said_in_dollars(
    workspace: Path, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackAPI(faults=[Fault("output_above_max")]) as api:
        session, _ = online_session(api, workspace, log_dir, monkeypatch)
        events = await collect(session, "hello")
    turn = next(e.record for e in events if isinstance(e, TurnFinished))
    assert turn.cost_usd > turn.reserved_usd > Decimal(0)
    (warning,) = [e.text for e in events if isinstance(e, Notice) and e.level == "warning"]
    assert warning.startswith("turn 1: the server billed more than the call was reserved for")
