"""No control byte from a file, a file name or the model reaches the terminal through the app:
what the screen writes (under Pilot, and the real app in tmux) holds only Textual's own
sequences; a hostile text shows as text (`␛]52;...`)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import Collapsible

from tests.cli.test_terminal_outputs import C0, SEQUENCES, assert_clean, file_text
from tests.support.app import idle, ready, send
from tuiagent.ui.app import TuiagentApp

# What Textual itself writes: SGR colours and cursor moves (the payload holds neither).
TEXTUAL_OWN = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\d+;\d+H")


def screen_bytes(app: TuiagentApp) -> str:
    """Everything the screen would write to the terminal now, as the compositor writes it."""
    update = app.screen._compositor.render_update(full=True)
    return update.render_segments(app.console)


async def test_hostile_text_in_the_app_reaches_the_terminal_as_text(
    make_app: Callable[..., TuiagentApp], workspace: Path
) -> None:
    (workspace / "evil.txt").write_text(file_text())
    for n, name in enumerate([*SEQUENCES, "".join(C0[1:])]):
        (workspace / f"{n}{name.replace('/', '')}.txt").write_text("x\n")
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        for prompt in ("read evil.txt", "list the files"):
            await send(pilot, prompt)
            await idle(pilot)
        for block in app.screen.query(Collapsible):
            block.collapsed = False  # the tool output on screen too
        await pilot.pause()
        shown = screen_bytes(app)
        app.exit()
    assert "␛]52;c;cHduZWQ=" in shown
    assert_clean(TEXTUAL_OWN.sub("", shown))


def test_the_backstop_filters_a_strip_built_past_textual(
    make_app: Callable[..., TuiagentApp],
) -> None:
    """A segment made without Textual's or Rich's text classes: the last guard
    (ui/terminal.py, installed by importing the app) still shows it as text."""
    out = Strip([Segment("a\x1b]52;c;eA==\x07b\x9b\u202e")]).render(make_app().console)
    assert out == "a␛]52;c;eA==␇b\\x9b\\u202e"


TUIAGENT = Path(sys.executable).parent / "tuiagent"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_the_real_app_in_tmux_sets_no_clipboard_and_no_title(
    workspace: Path, tmp_path: Path
) -> None:
    (workspace / "evil.txt").write_text("a \x1b]52;c;cHduZWQ=\x1b\\ b \x1b]2;TITLE\x1b\\ c\n")
    socket = f"tuiagent-osc-{tmp_path.name}"

    def tmux(*args: str) -> str:
        done = subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True)
        return done.stdout

    command = " ".join(
        [
            *("env", "-u", "COLUMNS", "-u", "LINES", "TERM=xterm-256color"),
            f"XDG_DATA_HOME={shlex.quote(str(tmp_path / 'data'))}",
            f"XDG_CONFIG_HOME={shlex.quote(str(tmp_path / 'config'))}",
            shlex.quote(str(TUIAGENT)),
            *("--offline", "--log-dir", shlex.quote(str(tmp_path / "logs"))),
        ]
    )
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "app", "-x", "160", "-y", "48")
    tmux("set-option", "-g", "set-clipboard", "on")
    tmux("set-option", "-g", "allow-rename", "on")
    tmux("respawn-pane", "-k", "-t", "app", "-c", str(workspace), command)
    title = tmux("display", "-p", "-t", "app", "#{pane_title}")
    try:
        screen = _wait(tmux, lambda s: "OFFLINE" in s and "run 2" in s, "the app")
        tmux("send-keys", "-t", "app", "read evil.txt", "Enter")
        screen = _wait(tmux, lambda s: "(1 line seen)" in s, "the answer")
        time.sleep(1)  # a few more redraws
        buffers = tmux("list-buffers")
        after = tmux("display", "-p", "-t", "app", "#{pane_title}")
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    assert "␛]52;c;cHduZWQ=␛\\ b ␛]2;TITLE␛\\ c" in screen
    assert buffers == ""  # no OSC 52 reached tmux: nothing was copied
    assert after == title and "TITLE" not in after


def _wait(tmux: Callable[..., str], cond: Callable[[str], bool], what: str) -> Any:
    for _ in range(400):
        screen = tmux("capture-pane", "-p", "-t", "app")
        if cond(screen):
            return screen
        time.sleep(0.05)
    raise AssertionError(f"never on screen: {what}\n{screen}")
