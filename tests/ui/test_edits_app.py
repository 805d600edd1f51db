"""Edits in the app (issue 28): the approval dialog shows the change as a diff (y, a for
this file, n, w), /undo puts it back; then a resumed session recalls an earlier result by
its id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual_diff_view import DiffView

from tests.support.app import idle, ready, send, until
from tuiagent.runs.recent import find_resume
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.screens.dialogs import ApproveScreen

MakeApp = Callable[..., TuiagentApp]


def last_answer(app: TuiagentApp) -> str:
    answers = app.main.chat.answers
    return answers[-1].text if answers else ""


async def test_a_newcomer_edits_approves_undoes_resumes_and_recalls(
    make_app: MakeApp, workspace: Path, log_dir: Path
) -> None:
    (workspace / "server.log").write_text(
        "".join(f"2026-01-01 12:00:{i % 60:02d} INFO request {i} served\n" for i in range(2000))
    )
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "read server.log")
        await idle(pilot)
        await send(pilot, "expand r1 lines 5-6")
        await idle(pilot)
        before = last_answer(app)
        assert "request 5 served" in before
        await send(pilot, 'replace "beta" with "BETA" in notes.txt')
        await until(pilot, lambda: isinstance(app.screen, ApproveScreen), "the dialog")
        diff = app.screen.query_one(DiffView)
        assert diff.code_original == "alpha\nbeta\ngamma\n"
        assert diff.code_modified == "alpha\nBETA\ngamma\n"
        await pilot.press("y")
        await idle(pilot)
        assert (workspace / "notes.txt").read_text() == "alpha\nBETA\ngamma\n"
        await send(pilot, "/undo")
        await idle(pilot)
        assert (workspace / "notes.txt").read_text() == "alpha\nbeta\ngamma\n"
        run_id = app.agent.snapshot().run_id if app.agent else ""
    app.finish_run()

    resumed = make_app(resume=find_resume(log_dir, run_id[:18]))
    async with resumed.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "expand r1 lines 5-6")
        await idle(pilot)
        assert last_answer(resumed) == before  # the same exact lines, by the same id


async def test_always_allows_that_file_and_no_with_a_reason_reaches_the_agent(
    make_app: MakeApp, workspace: Path
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        agent = app.agent
        assert agent is not None and agent.approve is not None
        await send(pilot, 'replace "alpha" with "ALPHA" in notes.txt')
        await until(pilot, lambda: isinstance(app.screen, ApproveScreen), "the dialog")
        await pilot.press("a")
        await idle(pilot)
        await send(pilot, 'replace "gamma" with "GAMMA" in notes.txt')  # not asked again
        await idle(pilot)
        assert (workspace / "notes.txt").read_text() == "ALPHA\nbeta\nGAMMA\n"
        await send(pilot, "write other.txt: hi")  # another file: asked
        await until(pilot, lambda: isinstance(app.screen, ApproveScreen), "the dialog")
        await pilot.press("w")
        await pilot.press(*"not that one", "enter")
        await idle(pilot)
        assert not (workspace / "other.txt").exists()
