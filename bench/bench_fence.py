"""Streaming a long code fence: what the chat draws again at each frame.

An answer streams as Markdown blocks, and only the block still growing is drawn again at
each frame (ui/widgets/entries.py). A code fence is one Markdown block, so drawn whole it
is highlighted and wrapped whole at every frame: the longer it gets, the more a frame
costs. It now grows in pieces of PIECE_LINES lines, the last highlighted after at most
CONTEXT_LINES lines before it. Side by side, in one run: the fence drawn whole (as before)
and in pieces, at frames of 80 characters (about a frame of a fast model's stream).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from rich.console import Console
from rich.style import Style

from bench.bench_ui import Tmux, _cpu_seconds, goal
from tuiagent.ui.widgets import entries
from tuiagent.ui.widgets.entries import ChatAnswer, Look

WIDTH = 100
SIZES = (50, 150, 300, 600)
GOAL_MS = 10.0  # a frame's draw at 15 frames a second: 15% of a core at most
Row = tuple[str, str, str]


def _look() -> Look:
    console = Console(width=WIDTH, color_system="truecolor", force_terminal=True)
    styles = {"chat--answer": Style()}
    return Look(console, console.options.update(highlight=False), styles, Style(), 1)


def _code(lines: int) -> str:
    """Real Python, as many lines as asked (this repository's own, repeated)."""
    source = (Path(entries.__file__).read_text() * 4).splitlines(keepends=True)
    return "Here it is:\n\n```python\n" + "".join(source[:lines])


def _frame_ms(lines: int) -> float:
    """The median draw of the growing block over the last 20 frames of the fence."""
    text, look, answer = _code(lines), _look(), ChatAnswer()
    frames = [text[at : at + 80] for at in range(0, len(text), 80)]
    times = []
    for i, frame in enumerate(frames):
        answer.append(frame)
        if i >= len(frames) - 20:
            t = time.perf_counter()
            answer.blocks[-1].lines(look, WIDTH)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


LIVE_LINES = 300


def _live(tmp: Path, whole: bool) -> tuple[float, float]:
    """In tmux (120x40), the app streaming a LIVE_LINES-line fence at 80 tokens a second:
    its CPU from the fence's 100th line to its 200th, and the p95 of 20 keys typed then."""
    pid_file = tmp / "pid"
    cmd = [sys.executable, "-m", "bench.ui_driver", str(tmp / "ws"), str(tmp / "logs"),
           "--code", str(LIVE_LINES), "--tps", "80", "--pid-file", str(pid_file),
           *(["--whole-fences"] if whole else [])]  # fmt: skip
    term = Tmux(cmd, Path(__file__).parent.parent)
    try:
        term.wait_for(lambda s: "palette" in s and "run 2" in s)
        term.run("send-keys", "-t", "b", "Show me the code.", "Enter")
        term.wait_for(lambda s: "# step 100" in s, timeout=120)
        pid = int(pid_file.read_text())
        c0, t0 = _cpu_seconds(pid), time.perf_counter()
        latencies = term.keystrokes(20, 0.2)
        term.wait_for(lambda s: "# step 200" in s, timeout=120)
        cpu = (_cpu_seconds(pid) - c0) / (time.perf_counter() - t0)
    finally:
        term.close()
    return cpu, statistics.quantiles(latencies, n=20)[-1]


def run() -> list[Row]:
    rows: list[Row] = []
    _frame_ms(20)  # imports, lexer
    for lines in SIZES:
        with mock.patch.object(entries, "PIECE_LINES", 10**9):
            whole = _frame_ms(lines)
        pieces = _frame_ms(lines)
        met = "met" if pieces <= GOAL_MS else "NOT MET"
        rows.append(
            (
                f"a frame's draw, {lines}-line fence streaming: whole (before) / in pieces",
                f"{whole:.1f} ms / {pieces:.1f} ms",
                f"<= {GOAL_MS:g} ms: {met}",
            )
        )
    if not shutil.which("tmux"):
        return [*rows, ("streaming a fence in the app (tmux)", "skipped: no tmux", "-")]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "ws").mkdir()
        before, now = _live(tmp, whole=True), _live(tmp, whole=False)
    what = f"{LIVE_LINES}-line fence at 80 tokens/s, lines 100-200"
    rows += [
        (f"CPU streaming a {what}: whole (before) / in pieces",
         f"{before[0]:.0%} / {now[0]:.0%} of a core", goal("<= 20%", now[0] <= 0.2)),
        (f"keystroke to screen (p95) streaming a {what}: whole / in pieces",
         f"{before[1] * 1000:.0f} ms / {now[1] * 1000:.0f} ms", goal("<= 50 ms", now[1] <= 0.05)),
    ]  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))
