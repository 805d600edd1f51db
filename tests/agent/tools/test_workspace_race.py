"""Paths opened without a race: a name swapped for a symlink to a secret outside, while the
tools read it in a loop, never leads a read, a listing or a search outside the workspace."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from tuiagent.agent.tools import Toolbox, Workspace
from tuiagent.agent.tools.beneath import Beneath

SECRET = "TOP SECRET outside the workspace"
RACE_S = 3.0


def swapper(workspace: Path, outside: Path, stop: threading.Event) -> threading.Thread:
    """Swap `f.txt` (a file) and `d` (a folder) for symlinks outside and back, atomically
    (rename over the name), as fast as it can."""

    def swap() -> None:
        while not stop.is_set():
            for name, real, link_to in (
                ("f.txt", "f.real", outside / "secret.txt"),
                ("d", "d.real", outside),
            ):
                link = workspace / f"{name}.link"
                link.unlink(missing_ok=True)
                os.symlink(link_to, link)
                os.rename(workspace / name, workspace / real)  # keep the real one aside
                os.rename(link, workspace / name)
                os.rename(workspace / name, link)  # and back
                os.rename(workspace / real, workspace / name)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    return thread


def test_a_symlink_swapped_in_while_reading_never_leads_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET + "\n")
    (outside / "f.txt").write_text(SECRET + "\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "f.txt").write_text("inside\n")
    (workspace / "d").mkdir()
    (workspace / "d" / "f.txt").write_text("inside too\n")
    box = Toolbox()
    for tool in Workspace(workspace).tools():
        box.add(tool)
    calls = [
        ("read_file", {"path": "f.txt"}),
        ("read_file", {"path": "d/f.txt"}),
        ("list_dir", {"path": "d"}),
        ("search_files", {"pattern": "inside|outside", "path": "d"}),
        ("search_files", {"pattern": "inside|outside", "path": "f.txt"}),
    ]
    stop = threading.Event()
    thread = swapper(workspace, outside, stop)
    results: list[str] = []

    async def loop() -> None:
        until = time.monotonic() + RACE_S
        while time.monotonic() < until:
            for name, args in calls:
                results.append((await box.call(name, args)).text)

    try:
        asyncio.run(loop())
    finally:
        stop.set()
        thread.join()
    leaked = [r for r in results if SECRET in r or "secret.txt" in r]
    assert not leaked, f"{len(leaked)} of {len(results)} calls read outside: {leaked[0]!r}"
    assert sum("inside" in r for r in results) > 10  # the race ran: reads did get through


def test_beneath_walks_links_inside_and_refuses_those_out(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "a" / "b").mkdir(parents=True)
    (ws / "a" / "b" / "f.txt").write_text("x")
    os.symlink("a/b", ws / "rel")
    os.symlink(str(ws / "a"), ws / "abs")  # absolute, but inside
    os.symlink("../..", ws / "a" / "up2")
    os.symlink(str(tmp_path), ws / "out")
    files = Beneath(ws)
    for path, real in [
        ("rel/f.txt", "a/b/f.txt"),
        ("abs/b/f.txt", "a/b/f.txt"),
        ("a/b/../b/./f.txt", "a/b/f.txt"),
        ("a/up2/ws/a/b/f.txt", None),
        ("out/ws/a/b/f.txt", None),
        ("a/../../ws/a/b/f.txt", None),
    ]:
        if real is None:
            try:
                files.open_file(path).close()
            except Exception as exc:
                assert "outside the workspace" in str(exc), path
            else:
                raise AssertionError(f"{path} opened")
        else:
            with files.open_file(path) as opened:
                assert opened.path == real
    with files.open_dir("a/b/..") as opened:
        assert opened.path == "a"


def test_open_new_writes_atomically_inside_and_never_through_a_link(tmp_path: Path) -> None:
    """The write half of the API, for the editing tools to come: a new file takes the name's
    place whole on commit; a symlink at the name is replaced, never written through."""
    ws = tmp_path / "ws"
    (ws / "d").mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    os.symlink(outside, ws / "d" / "link.txt")
    files = Beneath(ws)
    for name in ("d/new.txt", "d/link.txt"):
        with files.open_new(name) as new:
            os.write(new.fd, b"written")
            assert not (ws / name).exists() or (ws / name).is_symlink()  # not there till commit
            new.commit()
        assert (ws / name).read_text() == "written" and not (ws / name).is_symlink()
    assert outside.read_text() == "untouched"
    with files.open_new("d/dropped.txt") as new:
        os.write(new.fd, b"never committed")
    assert sorted(p.name for p in (ws / "d").iterdir()) == ["link.txt", "new.txt"]
    for bad in ("../escape.txt", "/abs.txt", "d/.."):
        try:
            files.open_new(bad).close()
        except Exception as exc:
            assert "outside" in str(exc) or "absolute" in str(exc) or "directory" in str(exc)
        else:
            raise AssertionError(f"{bad} opened for writing")
