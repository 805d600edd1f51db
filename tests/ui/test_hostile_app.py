"""The cap against a hostile server through the app: answers bent every way, the cap
lowered while a call is in flight, a call stopped with Escape, then quit. The server's own
books stay within the cap; every request it saw is one record; the run ends with run_end."""

from __future__ import annotations

import json
import signal
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.app import FIXED_NOW, idle, ready, send, ticking_clock, until
from tests.support.hostile import HostileModel
from tuiagent.config import Settings
from tuiagent.ui.app import TuiagentApp

SEQUENCES = [
    ["cut_tool_json", "non_json_data", "honest", "over_max_tokens", "honest"],
    ["missing_message", "swapped_model", "drop_after_start", "huge_usage", "honest"],
    ["negative_usage", "plain_json", "overloaded", "string_usage", "missing_index"],
]


def hostile_app(
    settings: Settings, model: HostileModel, workspace: Path, tmp_path: Path
) -> TuiagentApp:
    return TuiagentApp(
        settings,
        workspace=workspace,
        offline=True,
        clock=lambda: FIXED_NOW,
        state_path=tmp_path / "state.json",
        themes_dir=tmp_path / "themes",
        agent_clock=ticking_clock(),
        offline_model=model,
    )


@pytest.mark.parametrize("answers", SEQUENCES)
async def test_hostile_server_through_the_app(
    answers: list[str], workspace: Path, log_dir: Path, tmp_path: Path
) -> None:
    slow = HostileModel(["honest"], tokens_per_second=30.0)  # the last call is stopped
    model = HostileModel([*answers], counts=["zero", "404"])
    settings = Settings().with_changes(
        log_dir=log_dir, max_cost_usd=Decimal("0.05"), max_tokens=1024
    )
    app = hostile_app(settings, model, workspace, tmp_path)
    lowered: list[Decimal] = []

    def lower_cap(_: int) -> None:  # the cap lowered while a call is in flight
        if app.agent is not None and not lowered:
            lowered.append(app.agent.set_cap(Decimal("0.0001")).budget.cap)

    model.on_request = lower_cap
    async with app.run_test() as pilot:
        agent = (await ready(pilot)).agent
        assert agent is not None
        await send(pilot, "What do notes.txt and README.md say?")
        await idle(pilot)
        # Lowered during the call: floored at settled + in flight, never below.
        assert lowered and lowered[0] > Decimal("0.0001")
        # Raised again: the request the cap halted partway goes on, to its end.
        await send(pilot, "/budget 1")
        await idle(pilot)
        assert not app.budget.at_cap
        model.answers.clear()  # the stopped call is an honest, slow one
        model.tokens_per_second = slow.tokens_per_second
        seen = model.seen
        await send(pilot, "List the files here.")
        # Esc while the model streams the call (a fixed pause raced the call's end).
        await until(pilot, lambda: app.busy and model.seen > seen, "a call under way")
        await pilot.press("escape")
        await idle(pilot)
        assert app.main.gauge.state.settled == agent.budget.settled > 0
        await pilot.press("ctrl+q")
    records = [json.loads(line) for line in next(log_dir.glob("*.jsonl")).read_text().splitlines()]
    assert records[-1]["type"] == "run_end"
    calls = [r for r in records if r["type"] in ("turn", "attempt")]
    assert len(calls) == model.seen == len(model.billed)
    stopped = [r for r in calls if r.get("stop_reason") == "interrupted"]
    assert len(stopped) == 1 and stopped[0]["cost_usd"] > 0  # stopped, and it counts
    assert agent.budget.in_flight == 0
    assert model.bill(agent.pricer) <= agent.budget.cap


async def test_sigterm_ends_the_app_with_the_call_recorded(
    workspace: Path, log_dir: Path, tmp_path: Path
) -> None:
    model = HostileModel([], tokens_per_second=30.0)
    app = hostile_app(Settings().with_changes(log_dir=log_dir), model, workspace, tmp_path)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "List the files here.")
        await until(pilot, lambda: model.seen > 0, "a call under way")
        app._stop_by_signal(signal.SIGTERM)
        await until(pilot, lambda: app.finished, "the run ended")
    assert app.return_code == 143
    records = [json.loads(line) for line in next(log_dir.glob("*.jsonl")).read_text().splitlines()]
    assert records[-1]["type"] == "run_end" and records[-1]["halt_reason"] == "interrupted"
    assert len([r for r in records if r["type"] in ("turn", "attempt")]) == model.seen
