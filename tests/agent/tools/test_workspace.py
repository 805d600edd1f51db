"""The workspace sandbox: paths that lead out are refused and never read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuiagent.agent.tools import Toolbox, Workspace
from tuiagent.errors import UsageError


@pytest.fixture
def toolbox(workspace: Path) -> Toolbox:
    box = Toolbox()
    for tool in Workspace(workspace).tools():
        box.add(tool)
    return box


@pytest.mark.parametrize("path", ["../secret.txt", "src/../../secret.txt", "/etc/passwd"])
async def test_escapes_are_refused(toolbox: Toolbox, workspace: Path, path: str) -> None:
    (workspace.parent / "secret.txt").write_text("TOP SECRET")
    out = await toolbox.call("read_file", {"path": path})
    assert out.is_error
    assert "TOP SECRET" not in out.text and "root:" not in out.text


async def test_symlink_leading_out_is_refused(toolbox: Toolbox, workspace: Path) -> None:
    (workspace.parent / "secret.txt").write_text("TOP SECRET")
    os.symlink(workspace.parent / "secret.txt", workspace / "link.txt")
    out = await toolbox.call("read_file", {"path": "link.txt"})
    assert out.is_error and "outside the workspace" in out.text
    listing = await toolbox.call("search_files", {"pattern": "SECRET"})
    assert "TOP SECRET" not in listing.text


async def test_symlink_inside_is_followed(toolbox: Toolbox, workspace: Path) -> None:
    os.symlink(workspace / "notes.txt", workspace / "alias.txt")
    out = await toolbox.call("read_file", {"path": "alias.txt"})
    assert not out.is_error and "beta" in out.text


async def test_list_read_search(toolbox: Toolbox) -> None:
    listing = await toolbox.call("list_dir", {"path": "."})
    assert "notes.txt" in listing.text and "src/" in listing.text
    part = await toolbox.call("read_file", {"path": "notes.txt", "offset": 1, "limit": 1})
    assert part.text == "beta"
    found = await toolbox.call("search_files", {"pattern": "TODO"})
    assert "src/app.py:2:" in found.text


async def test_errors_are_results_not_crashes(toolbox: Toolbox, workspace: Path) -> None:
    (workspace / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    binary = await toolbox.call("read_file", {"path": "blob.bin"})
    assert binary.is_error and "binary" in binary.text and "300 bytes" in binary.text
    missing = await toolbox.call("read_file", {"path": "nope.txt"})
    assert missing.is_error and "no such file" in missing.text
    unknown = await toolbox.call("no_such_tool", {})
    assert unknown.is_error


def test_missing_workspace_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="workspace not found"):
        Workspace(tmp_path / "absent")
