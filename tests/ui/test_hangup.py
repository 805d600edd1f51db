"""The app ends when its terminal closes (tmux kill-server: SIGHUP, the pty gone) or on
SIGTERM, at any moment: while it starts, and while a call streams, with two CPU hogs
running. No process is left behind, and a run that began has its end recorded.

TUIAGENT_HANGUP_TRIES sets the number of tries (default 9: a third each of a hangup while
it starts, a hangup while a call streams, a SIGTERM while it starts; the issue's full check
is 50)."""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TUIAGENT = Path(sys.executable).parent / "tuiagent"
TRIES = int(os.environ.get("TUIAGENT_HANGUP_TRIES", "9"))
START_S = 3.0  # the first seconds, where the hangs were

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None or not TUIAGENT.exists(),
    reason="needs tmux and the installed tuiagent script",
)


@pytest.fixture
def cpu_hogs() -> Iterator[None]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class App:
    """The installed app in a tmux server of its own."""

    def __init__(self, socket: str, workspace: Path, logs: Path, home: Path) -> None:
        self.tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
        command = " ".join(
            [
                *("exec", "env", "-u", "COLUMNS", "-u", "LINES", "TERM=xterm-256color"),
                f"XDG_DATA_HOME={shlex.quote(str(home / 'data'))}",
                f"XDG_CONFIG_HOME={shlex.quote(str(home / 'config'))}",
                shlex.quote(str(TUIAGENT)),
                *("--offline", "--log-dir", shlex.quote(str(logs))),
            ]
        )
        size = ("-x", "120", "-y", "40")
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", "app", *size, "-c", str(workspace), command],
            check=True,
        )
        self._tmux("set-option", "-t", "app", "remain-on-exit", "on")
        self.pid = int(self._tmux("display", "-p", "-t", "app", "#{pane_pid}"))

    def _tmux(self, *args: str) -> str:
        return subprocess.run([*self.tmux, *args], capture_output=True, text=True).stdout

    def wait_for(self, text: str) -> bool:
        for _ in range(600):
            if text in self._tmux("capture-pane", "-p", "-t", "app"):
                return True
            time.sleep(0.05)
        return False

    def send(self, keys: str) -> None:
        self._tmux("send-keys", "-t", "app", keys, "Enter")

    def close_terminal(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)

    def ended_by(self) -> str:
        """How the pane's process ended: `status N` or `signal N`. tmux learns of it a moment
        after the pane is dead (the pty closes first; the status comes when tmux reaps the
        process): until then both are empty."""
        status = signum = ""
        for _ in range(100):
            shown = self._tmux(
                "display", "-p", "-t", "app", "#{pane_dead_status} #{pane_dead_signal}"
            )
            status, _, signum = shown.strip().partition(" ")
            if status or signum:
                break
            time.sleep(0.05)
        return f"signal {signum}" if signum and signum != "0" else f"status {status}"


def test_the_app_ends_when_its_terminal_closes_at_any_moment(
    workspace: Path, tmp_path: Path, cpu_hogs: None
) -> None:
    rng = random.Random(24)
    stuck: list[tuple[object, ...]] = []
    unended: list[tuple[int, float, str]] = []
    began = 0
    for n in range(TRIES):
        logs = tmp_path / f"logs{n}"
        app = App(f"tuiagent-hup-{os.getpid()}-{n}", workspace, logs, tmp_path)
        streaming, terminated = n % 3 == 1, n % 3 == 2
        if streaming and app.wait_for("run 2"):  # the session is open: ask, then hang up
            app.send("read notes.txt and data.csv")
        wait = rng.uniform(0.0, START_S)
        time.sleep(wait)
        if terminated:
            os.kill(app.pid, signal.SIGTERM)
        else:
            app.close_terminal()
        deadline = time.monotonic() + 20
        while alive(app.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(app.pid):
            stuck.append((n, round(wait, 2)))
            os.kill(app.pid, signal.SIGKILL)
        elif terminated:
            # Killed by it before tuiagent's handler is in (tmux 3.3 shows the signal as
            # the status), else a quit's status, 128 + 15. Now and then tmux 3.3 never
            # reaps a pane whose process ends just as the app is up (seen by hand: the
            # process a zombie, no thread left, tmux's status empty for good): the process
            # did end, and its run_end is checked below; only a wrong status fails here.
            ended = app.ended_by()
            if ended not in ("status 143", "signal 15", "status 15", "status "):
                stuck.append((n, round(wait, 2), ended))
        if terminated:
            app.close_terminal()
        for log in logs.glob("*.jsonl"):
            types = [json.loads(line)["type"] for line in log.read_text().splitlines()]
            began += "run_start" in types
            if "run_start" in types and "run_end" not in types:
                unended.append((n, round(wait, 2), log.name))
    assert stuck == [], f"{len(stuck)} of {TRIES} apps never ended right: (try, seconds) {stuck}"
    assert unended == [], f"runs begun and never ended: {unended}"
    assert began or TRIES < 2  # the calls tried did start runs: their ends were checked
