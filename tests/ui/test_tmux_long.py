"""A long session of the installed app in a real terminal at 80x24 (issue 28): messages with an
edit approved on its diff, one /undo, a restart with --resume (by a prefix of the run id), and
`expand r1` after it giving the same exact lines as before.

CI runs 30 messages (every step of the session, at a price the suite can afford on 2 cores);
the issue's 100 are `TUIAGENT_LONG_MESSAGES=100 pytest tests/ui/test_tmux_long.py`."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .test_tmux import TUIAGENT, Terminal, pytestmark  # noqa: F401  (the same skip)

# The messages of the session: 30 in CI, any number from the environment (at least 4: the
# read, the recall, the edit and one more).
MESSAGES = max(4, int(os.environ.get("TUIAGENT_LONG_MESSAGES", "30")))


def start(workspace: Path, tmp_path: Path, *args: str) -> Terminal:
    socket = f"tuiagent-long-{os.getpid()}-{tmp_path.name}"  # as test_tmux.py's
    config = tmp_path / "config" / "tuiagent"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text("offline_tokens_per_second = 1000000\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "d")}
    command = " ".join(
        [
            "env",
            "-u",
            "COLUMNS",
            "-u",
            "LINES",
            *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
            "TERM=xterm-256color",
            shlex.quote(str(TUIAGENT)),
            "--offline",
            "--log-dir",
            shlex.quote(str(tmp_path / "logs")),
            *map(shlex.quote, args),
        ]
    )
    term = Terminal(socket, "app")
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    term.tmux("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", "-c", str(workspace))
    term.tmux("set-option", "-t", "app", "remain-on-exit", "on")
    term.tmux("respawn-pane", "-k", "-t", "app", command)
    return term


def stop(term: Terminal) -> None:
    """End the terminal and the app in it (the app goes with its terminal; if it were slow
    to, it is killed: no test leaves a process behind)."""
    try:
        pid = int(term.tmux("display-message", "-p", "-t", "app", "#{pane_pid}").strip())
    except (subprocess.CalledProcessError, ValueError):
        pid = 0
    subprocess.run(["tmux", "-L", term.socket, "kill-server"], capture_output=True)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def records(tmp_path: Path, kind: str, run: str = "") -> list[dict[str, Any]]:
    out = []
    for log in sorted((tmp_path / "logs").glob(f"{run}*.jsonl")):
        for line in log.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line being written
            if rec.get("type") == kind:
                out.append(rec)
    return out


def wait(cond: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def wait_count(count: Callable[[], int], target: int, what: str, stall_s: float = 120) -> None:
    """Until `count()` reaches `target`, failing only when it stops moving for `stall_s`
    (a loaded machine is slow, not stuck; never a wall-time assertion on the whole)."""
    seen, since = count(), time.monotonic()
    while seen < target:
        time.sleep(0.2)
        now = count()
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since > stall_s:
            raise AssertionError(f"stuck at {seen} of {target}: {what}")


def test_a_long_session_with_an_edit_undo_and_resume_in_tmux(
    workspace: Path, tmp_path: Path
) -> None:
    (workspace / "server.log").write_text(
        "".join(f"2026-01-01 12:00:{i % 60:02d} INFO request {i} served\n" for i in range(3000))
    )
    notes = workspace / "notes.txt"
    term = start(workspace, tmp_path)
    try:
        term.wait_for(lambda s: "run 2" in s, "the session opened", tries=600)

        def say(text: str, answers: int) -> None:
            term.keys("-l", text)
            term.keys("Enter")
            wait(lambda: len(records(tmp_path, "answer")) >= answers, f"the answer to {text!r}")

        say("read server.log", 1)
        say("expand r1 lines 10-12", 2)
        before = records(tmp_path, "answer")[-1]["text"]
        assert "request 10 served" in before
        term.keys("-l", 'replace "beta" with "BETA" in notes.txt')
        term.keys("Enter")
        term.wait_for(lambda s: "wants to write a change to notes.txt" in s, "the diff")
        term.keys("y")
        wait(lambda: notes.read_text() == "alpha\nBETA\ngamma\n", "the edit")
        wait(lambda: len(records(tmp_path, "answer")) >= 3, "the edit's answer")
        for i in range(3, MESSAGES):  # one at a time: each typed once the last is answered
            term.keys("-l", "List the files here." if i % 2 else "What does README.md say?")
            term.keys("Enter")
            wait_count(lambda: len(records(tmp_path, "answer")), i + 1, f"answer {i + 1}")
        assert len(records(tmp_path, "user")) == MESSAGES
        for _ in range(30):  # /undo waits till the agent is free: said again till it is
            term.keys("-l", "/undo")
            term.keys("Enter")
            with contextlib.suppress(AssertionError):
                wait(lambda: notes.read_text() == "alpha\nbeta\ngamma\n", "the undo", 5)
                break
        assert notes.read_text() == "alpha\nbeta\ngamma\n"
        term.keys("C-q")
        wait(lambda: len(records(tmp_path, "run_end")) == 1, "run_end")
        run_id = records(tmp_path, "run_start")[0]["run_id"]
    finally:
        stop(term)

    again = start(workspace, tmp_path, "--resume", run_id[:19])
    try:
        again.wait_for(lambda s: "resumed run" in s, "the resumed session", tries=600)
        again.keys("-l", "expand r1 lines 10-12")
        again.keys("Enter")
        runs = sorted((tmp_path / "logs").glob("*.jsonl"))
        wait(lambda: len(records(tmp_path, "answer", runs[-1].stem)) == 1, "the recall")
        assert records(tmp_path, "answer", runs[-1].stem)[0]["text"] == before
        screen = again.wait_for(lambda s: "Expanded r1, lines 10-12" in s, "the lines on screen")
        assert len(screen.splitlines()) == 24 and all(len(ln) <= 80 for ln in screen.splitlines())
    finally:
        stop(again)
