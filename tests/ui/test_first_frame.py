"""The first frame waits for nothing it does not show (issue 27 item 7): the app's entry and
its screen import neither the SDK nor the prices, the records or Markdown; those load after
the first frame, while the user already reads and types."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import tuiagent.session
from tests.support.app import until
from tuiagent.errors import ConfigError
from tuiagent.ui.app import TuiagentApp

HEAVY = (
    "anthropic",
    "genai_prices",
    "pydantic",
    "httpx",
    "httpx2",
    "markdown_it",
    "tuiagent.runs.records",
)


def test_the_app_and_its_screen_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import tuiagent.cli.main, tuiagent.ui.app\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


async def test_the_footer_follows_the_width_it_is_given(
    make_app: Callable[..., TuiagentApp],
) -> None:
    """The footer's keys are built once and rebuilt when what it shows changes: narrowed
    below 120 columns its keys are compact, and the palette's key stays while it fits
    (80 columns: issue 28); narrower, it goes for room (and comes back when widened)."""
    app = make_app()
    async with app.run_test(size=(130, 40)) as pilot:
        await until(pilot, lambda: app.main.ready, "the panels")

        def footer() -> str:
            return [s.text for s in app.screen._compositor.render_strips()][-1]

        assert "palette" in footer() and "Cap+" in footer()
        await pilot.resize_terminal(80, 40)
        compact = "^q Quit f2 Cap- f3 Cap+"
        await until(
            pilot,
            lambda: footer().startswith(compact) and footer().rstrip().endswith("^p palette"),
            "the compact keys and the palette's",
        )
        await pilot.resize_terminal(70, 40)
        # (while it is composed again the footer is blank a moment)
        await until(pilot, lambda: "Cap+" in footer() and "palette" not in footer(), "no palette")
        await pilot.resize_terminal(130, 40)
        await until(pilot, lambda: "palette" in footer(), "the palette key back")


async def test_the_sdk_loads_and_the_agent_is_built_with_no_collection_then_all_is_frozen(
    make_app: Callable[..., TuiagentApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection while the SDK loads would scan all the app has made, holding the screen;
    afterwards the collector is on again (also when the session cannot open), and what was
    made is out of its way."""
    real_open = tuiagent.session.open_session
    collecting: list[bool] = []

    def open_watched(*args: Any, **kwargs: Any) -> tuiagent.session.Session:
        collecting.append(gc.isenabled())
        return real_open(*args, **kwargs)

    monkeypatch.setattr(tuiagent.session, "open_session", open_watched)
    gc.unfreeze()
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.agent is not None, "the session")
        assert collecting == [False]
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0

    def cannot_open(*args: Any, **kwargs: Any) -> tuiagent.session.Session:
        collecting.append(gc.isenabled())
        raise ConfigError("no such workspace")

    monkeypatch.setattr(tuiagent.session, "open_session", cannot_open)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        shown = app.main.chat.entries
        await until(pilot, lambda: "cannot start" in getattr(shown[-1], "text", ""), "failed")
        assert collecting == [False, False]
        assert gc.isenabled()
