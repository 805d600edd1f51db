"""The installed `tuiagent --offline` in a real terminal (tmux): send a message, read the
tokens, the cost and the cap off the screen, raise the cap, quit."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TUIAGENT = Path(sys.executable).parent / "tuiagent"

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None or not TUIAGENT.exists(),
    reason="needs tmux and the installed tuiagent script",
)


class Terminal:
    def __init__(self, socket: str, name: str) -> None:
        self.socket, self.name = socket, name

    def tmux(self, *args: str) -> str:
        cmd = ["tmux", "-L", self.socket, *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def screen(self, scrolled: bool = False) -> str:
        """What the pane shows; `scrolled`: with the lines scrolled off its top."""
        return self.tmux("capture-pane", "-p", "-t", self.name, *(["-S", "-"] * scrolled))

    def wait_for(
        self, cond: Callable[[str], bool], what: str, tries: int = 300, scrolled: bool = False
    ) -> str:
        for _ in range(tries):
            text = self.screen(scrolled)
            if cond(text):
                return text
            time.sleep(0.05)
        raise AssertionError(f"never on screen: {what}\n{self.screen(scrolled)}")


@pytest.fixture
def terminal(workspace: Path, tmp_path: Path) -> Iterator[Terminal]:
    yield from _terminal(workspace, tmp_path, 120, 40)


@pytest.fixture
def small_terminal(workspace: Path, tmp_path: Path) -> Iterator[Terminal]:
    yield from _terminal(workspace, tmp_path, 80, 24)


def _terminal(workspace: Path, tmp_path: Path, width: int, height: int) -> Iterator[Terminal]:
    # The pid too: the same test of another worktree's suite, run at once, has the same
    # tmp_path name, and the two would share (and kill) one tmux server.
    socket = f"tuiagent-test-{os.getpid()}-{tmp_path.name}"
    env = {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "TERM": "xterm-256color",
    }
    command = " ".join(
        [
            "env",
            "-u",
            "COLUMNS",  # pytest sets them; Textual would take them over the terminal's size
            "-u",
            "LINES",
            *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
            shlex.quote(str(TUIAGENT)),
            "--offline",
            "--log-dir",
            shlex.quote(str(tmp_path / "logs")),
        ]
    )
    term = Terminal(socket, "app")
    term.tmux(
        "new-session",
        "-d",
        "-s",
        "app",
        "-x",
        str(width),
        "-y",
        str(height),
        "-c",
        str(workspace),
        command,
    )
    term.tmux("set-option", "-t", "app", "remain-on-exit", "on")  # to read what it prints last
    try:
        yield term
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def test_installed_app_in_tmux(terminal: Terminal, tmp_path: Path) -> None:
    terminal.wait_for(lambda s: "OFFLINE - simulated model" in s, "the offline badge")
    terminal.wait_for(lambda s: "run 2" in s, "the session opened")
    terminal.keys("List the files here.", "Enter")
    screen = terminal.wait_for(lambda s: "turns left" in s and "data.csv" in s, "the answer")
    screen = terminal.wait_for(
        lambda s: re.search(r"^\s*2\s+[a-z]+-", s, re.M) is not None, "turn 2"
    )
    rows = re.findall(
        r"^\s*(\d)\s+[a-z]+-\S+\s+([\d,]+)\s+([\d,]+)\s.*\$(0\.\d+)\s+\S+\s*$", screen, re.M
    )
    assert [r[0] for r in rows] == ["1", "2"]
    assert all(int(r[1].replace(",", "")) > 0 and int(r[2]) > 0 for r in rows)
    total = rows[-1][3]
    terminal.wait_for(lambda s: f"spent ${total}" in s, "the spend on the gauge")
    terminal.keys("F3")
    screen = terminal.wait_for(lambda s: "cap $1.10" in s, "the raised cap")
    spent = re.search(r"spent \$(\d+\.\d+) / cap \$1\.10", screen)
    assert spent is not None and float(spent.group(1)) > 0
    terminal.keys("F4")
    terminal.wait_for(lambda s: "tier fast" in s, "the tier")
    terminal.keys("C-q")
    logs = tmp_path / "logs"
    for _ in range(100):
        runs = list(logs.glob("*.jsonl"))
        if runs and '"run_end"' in runs[0].read_text():
            break
        time.sleep(0.05)
    records = [json.loads(line) for line in runs[0].read_text().splitlines()]
    assert records[-1]["type"] == "run_end"
    assert records[-1]["total_cost_usd"] == pytest.approx(float(spent.group(1)), abs=1e-4)


def test_at_80x24_the_chat_the_input_and_every_key_are_on_screen(small_terminal: Terminal) -> None:
    term = small_terminal
    term.wait_for(lambda s: "run 2" in s, "the session opened")
    term.keys("Read notes.txt", "Enter")
    screen = term.wait_for(lambda s: "this message $" in s, "the answer and its subtotal")
    lines = screen.splitlines()
    assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
    assert "Read notes.txt" in screen and "notes.txt" in screen  # the chat
    assert "Ask about the files here" in screen  # the input, with its placeholder
    assert "spent $0.0" in screen and "cache hit" in screen  # the gauge, the status line
    footer = lines[-1]
    for key in ("^q Quit", "f2 Cap-", "f3 Cap+", "f4 Tier", "esc Stop", "f5 Panels", "f8 Report"):
        assert key in footer
    term.keys("F5")  # narrow: F5 shows one panel at a time in the turns table's place
    term.wait_for(lambda s: "Router" in s and "why" in s, "the router panel")
    term.keys("C-q")
    # Printed on the terminal the app gave back: at 80 columns its log's path wraps, and a
    # line of it once scrolled off the top of the pane (CI), so the scrolled lines count.
    screen = term.wait_for(
        lambda s: "tuiagent: session " in s, "the session's total on quit", scrolled=True
    )
    assert re.search(r"tuiagent: session \S+: \$0\.\d+ in 2 calls; log ", screen)
