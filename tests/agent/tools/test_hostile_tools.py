"""Hostile workspaces and servers: no tool hangs, blows up memory or leaves a process behind.

Every `asyncio.timeout` below is a guard that turns a hang into a failure, not a timing
assertion: the figures it allows are far above what the tool takes.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from tests.support.processes import processes_with
from tuiagent.agent.tools import Tool, Toolbox, Workspace
from tuiagent.agent.tools.base import in_thread
from tuiagent.agent.tools.command import CommandRunner
from tuiagent.agent.tools.fetch import Fetcher
from tuiagent.agent.tools.search import ripgrep
from tuiagent.agent.tools.workspace import MAX_READ_BYTES

GUARD_S = 20  # a hang, not a slow tool, trips this


@pytest.fixture
def box(hostile: Path) -> Toolbox:
    ws = Workspace(hostile)
    toolbox = Toolbox()
    for tool in ws.tools():
        toolbox.add(tool)
    toolbox.add(CommandRunner(ws, timeout_s=1.0).tool())
    toolbox.add(Fetcher(timeout_s=1.0).tool())
    return toolbox


async def call(box: Toolbox, name: str, **args: object) -> tuple[bool, str]:
    async with asyncio.timeout(GUARD_S):
        out = await box.call(name, dict(args))
    return out.is_error, out.text


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("pipe.fifo", "pipe.fifo is a FIFO (named pipe); only regular files are read"),
        ("app.sock", "app.sock is a socket; only regular files are read"),
        ("zero.bin", "path 'zero.bin' leads outside the workspace; refused"),
        ("self.txt", "path 'self.txt' is a symlink loop; refused"),
        ("a.txt", "path 'a.txt' is a symlink loop; refused"),
        ("loop/loop/notes.txt", None),  # a loop that resolves is just a longer path
    ],
)
async def test_read_refuses_what_is_not_a_regular_file(
    box: Toolbox, path: str, said: str | None
) -> None:
    is_error, text = await call(box, "read_file", path=path)
    if said is None:
        assert not is_error and text.startswith("alpha\nbeta")
    else:
        assert is_error and text == f"error: {said}"


@pytest.mark.parametrize("tool", ["list_dir", "search_files"])
async def test_list_and_search_refuse_a_loop_or_a_fifo(box: Toolbox, tool: str) -> None:
    args = {"pattern": "x"} if tool == "search_files" else {}
    is_error, text = await call(box, tool, path="self.txt", **args)
    assert is_error and "symlink loop" in text and len(text.splitlines()) == 1
    is_error, text = await call(box, tool, path="pipe.fifo", **args)
    assert is_error and "a FIFO (named pipe)" in text


async def test_a_device_is_described_not_opened(workspace: Path) -> None:
    # A workspace rooted where a device lives: the device is inside, and still refused.
    box = Toolbox()
    for tool in Workspace(Path("/dev")).tools():
        box.add(tool)
    is_error, text = await call(box, "read_file", path="zero")
    assert is_error and text == "error: zero is a character device; only regular files are read"


async def test_listing_names_each_kind(box: Toolbox) -> None:
    is_error, text = await call(box, "list_dir")
    kinds = {line.split()[-1]: line.split()[0] for line in text.splitlines()[1:]}
    assert not is_error
    assert kinds["pipe.fifo"] == "fifo" and kinds["app.sock"] == "socket"
    assert kinds["self.txt"] == kinds["zero.bin"] == "link" and kinds["notes.txt"] == "file"


async def test_search_skips_fifos_sockets_loops_and_devices(box: Toolbox, hostile: Path) -> None:
    (hostile / "more.txt").write_text("alpha again\n")
    is_error, text = await call(box, "search_files", pattern="alpha")
    assert not is_error
    assert text.splitlines() == [
        "2 matches for 'alpha' in 2 files",
        "more.txt:1:alpha again",
        "notes.txt:1:alpha",
    ]


async def test_search_is_linear_time(box: Toolbox, hostile: Path) -> None:
    # (a+)+$ on 40 a's and a "!" is 2^40 steps for a backtracking engine.
    (hostile / "evil.txt").write_text("a" * 40 + "!\n")
    is_error, text = await call(box, "search_files", pattern="(a+)+$", path="evil.txt")
    assert (is_error, text) == (False, "0 matches for '(a+)+$' in 0 files")
    is_error, text = await call(box, "search_files", pattern="(a+)+!$", path="evil.txt")
    assert text.splitlines()[1] == "evil.txt:1:" + "a" * 40 + "!"


async def test_search_skips_ignored_and_hidden_folders(box: Toolbox, hostile: Path) -> None:
    for folder in (".hypothesis", ".git", "node_modules", "build", "src"):
        (hostile / folder).mkdir(exist_ok=True)
        (hostile / folder / "found.txt").write_text("needle\n")
    (hostile / ".gitignore").write_text("build/\n")
    is_error, text = await call(box, "search_files", pattern="needle")
    assert not is_error
    assert text.splitlines() == ["1 matches for 'needle' in 1 files", "src/found.txt:1:needle"]


async def test_an_invalid_regex_is_a_one_line_error(box: Toolbox) -> None:
    is_error, text = await call(box, "search_files", pattern="(unclosed")
    assert is_error and text == "error: invalid regular expression '(unclosed': unclosed group"


async def test_search_stops_at_its_deadline_and_says_partial(hostile: Path) -> None:
    ws = Workspace(hostile)
    ws.search_deadline_s = 0.0
    box = Toolbox()
    for tool in ws.tools():
        box.add(tool)
    is_error, text = await call(box, "search_files", pattern="alpha")
    assert not is_error and "(partial: the search was stopped at its 0s deadline)" in text


def test_ripgrep_comes_from_its_wheel() -> None:
    rg = ripgrep()
    assert rg is not None and os.access(rg, os.X_OK) and Path(rg).name == "rg"


async def test_one_line_of_3_gb_is_read_in_bounded_memory(box: Toolbox, hostile: Path) -> None:
    big = hostile / "big.txt"
    with big.open("wb") as fh:  # 2.5 MB of text, then a hole up to 3 GB: no newline at all
        fh.write(b"a" * 2_500_000)
        fh.truncate(3 * 1024**3)
    is_error, text = await call(box, "read_file", path="big.txt", limit=1)
    body, _, note = text.rpartition("\n")
    assert not is_error and body == "a" * MAX_READ_BYTES
    assert note == f"[read stopped at {MAX_READ_BYTES:,} bytes; use offset/limit to page]"


# --- fetch_url -------------------------------------------------------------------------


async def test_a_trickled_body_ends_at_the_total_deadline(box: Toolbox, trickle: str) -> None:
    # Each read gets a byte well within the 1 s timeout: only a total deadline ends this.
    is_error, text = await call(box, "fetch_url", url=trickle)
    assert is_error and "timed out after 1s (its total deadline)" in text
    assert "bytes of the body received" in text


# --- run_command ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "setsid sleep {m} & echo started",  # the shell ends at once, its child lives on
        "setsid sleep {m} & echo started; sleep {m}",  # killed at the timeout
        "(setsid sh -c 'sleep {m} & sleep {m}' &); nohup sleep {m} >/dev/null 2>&1 & echo started",
    ],
)
async def test_no_child_of_a_command_outlives_it(box: Toolbox, command: str) -> None:
    marker = f"9{os.getpid()}{len(command)}"
    _, text = await call(box, "run_command", command=command.format(m=marker))
    assert "started" in text
    assert processes_with(marker) == []


async def test_a_cancelled_command_leaves_nothing_behind(workspace: Path) -> None:
    marker = f"9{os.getpid()}77"
    runner = CommandRunner(Workspace(workspace), timeout_s=600)
    task = asyncio.create_task(runner.run_command({"command": f"setsid sleep {marker} & wait"}))
    while not processes_with(marker):
        await asyncio.sleep(0.01)
    task.cancel()
    async with asyncio.timeout(GUARD_S):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert processes_with(marker) == []  # the supervisor killed all before the call ended


# --- deadlines and cancellation ----------------------------------------------------------


async def test_a_blocked_thread_does_not_hold_a_cancelled_call() -> None:
    release = threading.Event()
    ran_on: list[threading.Thread] = []

    def block() -> bool:
        ran_on.append(threading.current_thread())
        return release.wait(60)

    task = asyncio.create_task(in_thread(block))
    await asyncio.sleep(0.05)
    (worker,) = ran_on
    task.cancel()
    async with asyncio.timeout(GUARD_S):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert worker.daemon and worker.is_alive()  # still blocked, yet it cannot hold the exit
    release.set()


async def test_every_tool_call_has_a_deadline() -> None:
    async def stuck(args: dict[str, object]) -> str:
        await asyncio.sleep(3600)
        return "never"

    box = Toolbox()
    box.add(Tool("stuck", "never returns", {"type": "object"}, stuck, deadline_s=0.05))
    is_error, text = await call(box, "stuck")
    assert is_error and text == "error: stuck did not finish within 0.05s and was stopped"


async def test_in_thread_returns_and_raises() -> None:
    assert await in_thread(lambda: 6 * 7) == 42
    with pytest.raises(ZeroDivisionError):
        await in_thread(lambda: 1 / 0)
