from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tuiagent.config import Settings
from tuiagent.offline import OfflineModel
from tuiagent.ui.app import TuiagentApp

FIXED_NOW = 1_800_000_000.0  # the panels' wall clock in tests


def ticking_clock(step: float = 0.25) -> Callable[[], float]:
    """A monotonic clock that moves `step` seconds per reading: latencies are the same every run."""
    counter = itertools.count()
    return lambda: next(counter) * step


@pytest.fixture
def make_app(workspace: Path, log_dir: Path, tmp_path: Path) -> Callable[..., TuiagentApp]:
    def make(
        resume: Path | None = None, offline_model: OfflineModel | None = None, **overrides: Any
    ) -> TuiagentApp:
        settings = Settings().with_changes(log_dir=log_dir)
        settings = settings.with_changes(**overrides)
        return TuiagentApp(
            settings,
            workspace=workspace,
            offline=True,
            resume=resume,
            clock=lambda: FIXED_NOW,
            state_path=tmp_path / "state" / "ui-state.json",
            themes_dir=tmp_path / "user-themes",
            agent_clock=ticking_clock(),
            offline_model=offline_model,
        )

    return make


async def until(pilot: Pilot[Any], cond: Callable[[], bool], what: str, tries: int = 400) -> None:
    """Let the app run until `cond` holds (a bounded number of short pauses)."""
    for _ in range(tries):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"never happened: {what}")


async def ready(pilot: Pilot[Any]) -> TuiagentApp:
    app = pilot.app
    assert isinstance(app, TuiagentApp)
    await until(pilot, lambda: app.agent is not None, "the session opened")
    return app


async def idle(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, TuiagentApp)
    await until(pilot, lambda: not app.busy and not app.queue, "the agent went idle")
    await pilot.pause()


async def send(pilot: Pilot[Any], text: str) -> None:
    app = pilot.app
    assert isinstance(app, TuiagentApp)
    app.main.input.load_text(text)
    await pilot.press("enter")
    await pilot.pause()
