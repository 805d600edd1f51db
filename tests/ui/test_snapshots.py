"""How the app looks in offline mode at three terminal sizes: the first screen, a tool call
with its block expanded, halted at the cap, the approval dialog, the report. Fixed clocks,
fixed run id, no toasts (they come and go with time)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.support.app import idle, ready, send, until
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.screens.dialogs import ApproveScreen
from tuiagent.ui.screens.report import ReportScreen
from tuiagent.ui.widgets.entries import ToolBlock

SIZES = [(160, 48), (100, 30), (80, 24)]
SIZE_IDS = ["160x48", "100x30", "80x24"]


@pytest.fixture(autouse=True)
def _fixed_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tuiagent.agent.run_records.new_run_id", lambda: "20260101T000000Z-snap00")


async def _steady(pilot: Pilot[Any]) -> TuiagentApp:
    app = await ready(pilot)
    app.main.input.cursor_blink = False
    return app


async def _settle(pilot: Pilot[Any]) -> None:
    pilot.app.clear_notifications()
    await pilot.pause(0.2)


async def first_screen(pilot: Pilot[Any]) -> None:
    await _steady(pilot)
    await until(pilot, lambda: pilot.app.main.ready, "the panels")  # type: ignore[attr-defined]
    await _settle(pilot)


async def expanded_tool_block(pilot: Pilot[Any]) -> None:
    app = await _steady(pilot)
    await send(pilot, "Read pyproject.toml")
    await idle(pilot)
    (tool,) = (e for e in app.main.chat.entries if isinstance(e, ToolBlock))
    app.main.chat.toggle_tool(tool)
    await _settle(pilot)


async def halted_at_the_cap(pilot: Pilot[Any]) -> None:
    app = await _steady(pilot)
    await send(pilot, "List the files here.")
    await idle(pilot)
    # The message given back to the input gets its estimate under it, after a pause.
    estimate = app.main.query_one("#estimate")
    await until(pilot, lambda: bool(estimate.display), "the estimate under the input")
    await _settle(pilot)


async def approval_dialog(pilot: Pilot[Any]) -> None:
    app = await _steady(pilot)
    await send(pilot, "Please run `pwd -P`")
    await until(pilot, lambda: isinstance(app.screen, ApproveScreen), "the dialog")
    await _settle(pilot)


async def report_screen(pilot: Pilot[Any]) -> None:
    app = await _steady(pilot)
    await send(pilot, "List the files here.")
    await idle(pilot)
    await pilot.press("f8")
    await until(pilot, lambda: isinstance(app.screen, ReportScreen), "the report")
    await _settle(pilot)


SCENES: dict[str, tuple[Callable[[Pilot[Any]], Awaitable[None]], dict[str, Any]]] = {
    "first_screen": (first_screen, {}),
    "expanded_tool_block": (expanded_tool_block, {}),
    "halted_at_the_cap": (halted_at_the_cap, {"max_cost_usd": Decimal("0.002"), "tier": "deep"}),
    "approval_dialog": (approval_dialog, {"allow_commands": True}),
    "report_screen": (report_screen, {}),
}


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("scene", list(SCENES))
def test_snapshot(
    scene: str,
    size: tuple[int, int],
    snap_compare: Any,
    make_app: Callable[..., TuiagentApp],
    workspace: Path,
) -> None:
    (workspace / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\n\n[project]\nname = "demo"  # (limit)\n'
    )
    run_before, settings = SCENES[scene]
    assert snap_compare(make_app(**settings), terminal_size=size, run_before=run_before)
