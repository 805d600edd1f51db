"""Edits (issue 28): write_file and edit_file inside the workspace, atomic, with a
checkpoint before each change; undo of the last change or of every change of a run; each
edit a `tool` record with its diff's size; the offline model edits on request."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tuiagent.agent.edits import Editor, checkpoints_file, diff_of, diff_size, read_changes
from tuiagent.agent.events import AnswerDelta, Event
from tuiagent.agent.tools import ToolError
from tuiagent.agent.tools.beneath import Beneath
from tuiagent.cli import main
from tuiagent.config import Settings
from tuiagent.session import Session, open_session


def opened(workspace: Path, log_dir: Path, **changes: Any) -> Session:
    settings = Settings().with_changes(log_dir=log_dir, tier="fast", **changes)
    return open_session(settings, workspace=workspace, offline=True)


async def send(session: Session, prompt: str) -> list[Event]:
    return [e async for e in session.agent.send(prompt)]


def tools(session: Session) -> list[dict[str, Any]]:
    text = session.agent.log.path.read_text()
    return [r for r in map(json.loads, text.splitlines()) if r["type"] == "tool"]


def editor(workspace: Path, tmp_path: Path) -> Editor:
    return Editor(Beneath(workspace), tmp_path / "cp" / "checkpoints.jsonl")


async def test_the_offline_agent_changes_a_line_and_undo_puts_it_back(
    workspace: Path, log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = opened(workspace, log_dir, allow_edits=True)
    session.agent.start()
    events = await send(session, 'replace "beta" with "BETA" in notes.txt')
    said = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert (workspace / "notes.txt").read_text() == "alpha\nBETA\ngamma\n"
    assert "edited notes.txt" in said
    (edit,) = [t for t in tools(session) if t["name"] == "edit_file"]
    assert edit["ok"] and edit["diff_lines"] == 2
    await send(session, "write todo.md: # Todo\n- ship it")
    assert (workspace / "todo.md").read_text() == "# Todo\n- ship it"
    assert session.agent.undo() == ["undid change 2: todo.md removed"]
    assert not (workspace / "todo.md").exists()
    session.agent.finish()
    # `tuiagent undo RUN` puts back what is left, from another process's point of view.
    run_id = session.agent.state.run_id
    assert main(["undo", run_id[:20], "--all", "--log-dir", str(log_dir)]) == 0
    assert "undid change 1: notes.txt restored" in capsys.readouterr().out
    assert (workspace / "notes.txt").read_text() == "alpha\nbeta\ngamma\n"
    assert main(["undo", run_id, "--log-dir", str(log_dir)]) == 2  # nothing left
    assert "has no change to undo" in capsys.readouterr().err


async def test_headless_offers_no_edit_tool_without_allow_edits(
    workspace: Path, log_dir: Path
) -> None:
    session = opened(workspace, log_dir)
    session.agent.start()
    await send(session, 'replace "beta" with "BETA" in notes.txt')
    assert (workspace / "notes.txt").read_text() == "alpha\nbeta\ngamma\n"
    assert "edit_file" not in session.agent.toolbox.tools
    session.agent.finish()


async def test_the_app_asks_before_each_change(workspace: Path, log_dir: Path) -> None:
    asked: list[tuple[str, dict[str, Any]]] = []

    async def decline(name: str, arguments: dict[str, Any]) -> bool | str:
        asked.append((name, arguments))
        return "keep it lower case"

    session = opened(workspace, log_dir)
    session.agent.approve = decline
    session.agent.start()
    await send(session, 'replace "beta" with "BETA" in notes.txt')
    assert asked and asked[0][0] == "edit_file"
    assert (workspace / "notes.txt").read_text() == "alpha\nbeta\ngamma\n"
    assert not next(t for t in tools(session) if t["name"] == "edit_file")["ok"]
    session.agent.finish()


async def test_edit_file_replaces_one_exact_unique_string(workspace: Path, tmp_path: Path) -> None:
    ed = editor(workspace, tmp_path)
    (workspace / "twice.txt").write_text("same\nsame\n")
    for path, old, why in (
        ("twice.txt", "same", "occurs 2 times"),
        ("notes.txt", "delta", "does not occur"),
        ("missing.txt", "x", "no such file"),
        ("../outside.txt", "x", "outside"),
    ):
        with pytest.raises(ToolError, match=why):
            ed._after("edit_file", path, ed._current(path), {"old_string": old, "new_string": "y"})
    assert read_changes(ed.checkpoints) == []


async def test_writes_stay_inside_the_workspace_and_are_atomic(
    workspace: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    os.symlink(outside, workspace / "link.txt")
    ed = editor(workspace, tmp_path)
    for path in ("../outside.txt", str(outside), "nodir/new.txt", "link.txt"):
        with pytest.raises((ToolError, OSError)):
            ed.change(path, "pwned\n")  # a link leading out is refused, never written through
    assert outside.read_text() == "keep\n"
    assert read_changes(ed.checkpoints) == []
    ed.change("src/new.txt", "new\n")
    assert (workspace / "src" / "new.txt").read_text() == "new\n"
    assert not [p for p in os.listdir(workspace / "src") if p.endswith(".tmp")]  # none left


async def test_undo_refuses_a_file_changed_since(workspace: Path, tmp_path: Path) -> None:
    ed = editor(workspace, tmp_path)
    ed.change("notes.txt", "one\n")
    (workspace / "notes.txt").write_text("changed by hand\n")
    with pytest.raises(ToolError, match="changed since change 1"):
        ed.undo()
    assert (workspace / "notes.txt").read_text() == "changed by hand\n"


def test_a_diff_and_its_size() -> None:
    diff = diff_of("a.txt", "x\ny\n", "x\nz\n")
    assert "-y" in diff and "+z" in diff and diff_size(diff) == 2
    assert diff_size(diff_of("new.txt", None, "a\nb\n")) == 2
    assert checkpoints_file(Path("/l/transcripts/R.jsonl")) == Path(
        "/l/transcripts/R/checkpoints.jsonl"
    )


def test_the_result_of_a_change_counts_its_lines_in_words(workspace: Path, tmp_path: Path) -> None:
    """`wrote todo.md (1 line changed; ...)`, not `1 lines` (seen in the app)."""
    edits = editor(workspace, tmp_path)
    one = edits.apply("write_file", {"path": "todo.md", "content": "# Todo"})
    assert one.text.startswith("wrote todo.md (1 line changed; undo puts it back)\n"), one.text
    two = edits.apply("edit_file", {"path": "notes.txt", "old_string": "beta", "new_string": "B"})
    assert two.text.startswith("edited notes.txt (2 lines changed;"), two.text
