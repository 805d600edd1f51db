"""Driving the app under Pilot: a fixed wall clock, a ticking monotonic one, and waits that
end when the app reaches a state (never on wall time)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from tuiagent.ui.app import TuiagentApp

FIXED_NOW = 1_800_000_000.0  # the panels' wall clock in tests


def ticking_clock(step: float = 0.25) -> Callable[[], float]:
    """A monotonic clock that moves `step` seconds per reading: latencies are the same every run."""
    counter = itertools.count()
    return lambda: next(counter) * step


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


def screen_text(app: TuiagentApp) -> str:
    """What the terminal shows now, one line per row (the screen on top, and what shows
    through from beneath it)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
