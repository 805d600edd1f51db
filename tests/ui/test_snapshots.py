"""How the main screen looks in offline mode: fixed clocks, fixed size, fixed run id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from tuiagent.ui.app import TuiagentApp

from .conftest import idle, ready, send

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _fixed_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tuiagent.agent.loop.new_run_id", lambda: "20260101T000000Z-snap00")


async def _steady(pilot: Pilot[Any]) -> None:
    app = await ready(pilot)
    app.main.input.cursor_blink = False


def test_snapshot_after_a_message(snap_compare: Any, make_app: Callable[..., TuiagentApp]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await _steady(pilot)
        await send(pilot, "List the files here.")
        await idle(pilot)
        await pilot.pause(0.2)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_halted_at_the_cap(
    snap_compare: Any, make_app: Callable[..., TuiagentApp]
) -> None:
    from decimal import Decimal

    async def run_before(pilot: Pilot[Any]) -> None:
        await _steady(pilot)
        await send(pilot, "List the files here.")
        await idle(pilot)
        pilot.app.clear_notifications()
        await pilot.press("f5")
        await pilot.pause(0.2)

    app = make_app(max_cost_usd=Decimal("0.002"), tier="deep")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
