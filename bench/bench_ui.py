"""The app's speed: first frame, ready, streaming cost, keystroke latency, long chats, CPU.

Each figure is printed beside its goal (issue 27), and each is a ratio or a difference
taken in the same run as its reference, so the load of the machine weighs on both sides;
the load average is printed too (final figures are taken with it under 1).

Terminal figures are measured in a real terminal (tmux, 120x40) by polling the screen; a
screen poll costs a few milliseconds, so those figures are upper bounds. Streaming figures
run the app headless (`App.run_test`) against the same agent loop run without a screen, the
two back to back in pairs, in several fresh processes (the median of all the pairs'
ratios: PROCESSES, ROUNDS).
The package's bytecode is compiled first, as `pip install .` does (a development checkout
with PYTHONDONTWRITEBYTECODE set would otherwise compile every module at every start,
which the bare app, whose Textual is installed, never does).
"""

from __future__ import annotations

import asyncio
import compileall
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ui_driver import LongModel, bench_settings, prefill

BARE_APP = """
from textual.app import App
from textual.widgets import Footer, Header, Input

class Bare(App):
    def compose(self):
        yield Header()
        yield Input()
        yield Footer()

Bare().run()
"""

Row = tuple[str, str, str]


def goal(text: str, met: bool) -> str:
    return f"{text}: {'met' if met else 'NOT MET'}"


class Tmux:
    def __init__(self, command: list[str], cwd: Path) -> None:
        self.socket = f"tuiagent-bench-{os.getpid()}-{time.monotonic_ns()}"
        env = ["env", "-u", "COLUMNS", "-u", "LINES", "TERM=xterm-256color"]
        self.started = time.perf_counter()
        self.run("new-session", "-d", "-s", "b", "-x", "120", "-y", "40", "-c", str(cwd),
                 " ".join(shlex.quote(c) for c in [*env, *command]))  # fmt: skip

    def run(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True)
        return out.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "b")

    def wait_for(self, cond: Callable[[str], bool], timeout: float = 30.0) -> float:
        """Seconds from now until the screen satisfies cond."""
        t = time.perf_counter()
        while time.perf_counter() - t < timeout:
            if cond(self.screen()):
                return time.perf_counter() - t
            time.sleep(0.002)
        raise TimeoutError("the screen never showed what was expected")

    def keystrokes(self, n: int, pause: float) -> list[float]:
        """Type `x` n times, `pause` apart: the seconds each took to show (a run of x's)."""
        latencies = []
        for i in range(1, n + 1):
            self.run("send-keys", "-t", "b", "x")
            latencies.append(
                self.wait_for(lambda s, n=i: max(map(len, re.findall("x+", s)), default=0) >= n)
            )
            time.sleep(pause)
        return latencies

    def close(self) -> None:
        self.run("kill-server")


def _first_frame(command: list[str], cwd: Path) -> float:
    term = Tmux(command, cwd)
    try:
        term.wait_for(lambda s: "palette" in s)
        return time.perf_counter() - term.started
    finally:
        term.close()


def _startup(tmp: Path) -> list[Row]:
    bare = tmp / "bare.py"
    bare.write_text(BARE_APP)
    ws = tmp / "ws"
    app_cmd = _app_command(tmp)
    bare_cmd = [sys.executable, str(bare)]
    ours, theirs = [], []
    for _ in range(2):  # warm the file cache
        _first_frame(app_cmd, ws), _first_frame(bare_cmd, ws)
    for _ in range(7):
        ours.append(_first_frame(app_cmd, ws))
        theirs.append(_first_frame(bare_cmd, ws))
    a, b = statistics.median(ours), statistics.median(theirs)
    return [
        ("first frame: tuiagent (median, tmux)", f"{a * 1000:.0f} ms", "-"),
        ("first frame: bare Textual app (median, tmux)", f"{b * 1000:.0f} ms", "-"),
        ("first frame ratio tuiagent / bare", f"{a / b:.2f}", goal("<= 1.2", a / b <= 1.2)),
    ]


def _app_command(tmp: Path) -> list[str]:
    env_dirs = [f"XDG_DATA_HOME={tmp / 'xdg'}", f"XDG_CONFIG_HOME={tmp / 'xdg'}"]
    return ["env", *env_dirs, sys.executable, "-m", "tuiagent", "--offline", "--log-dir",
            str(tmp / "logs")]  # fmt: skip


def _ready(tmp: Path) -> tuple[float, float]:
    """From start to the agent built (the top bar names the run), and how long a key typed
    as soon as the screen shows takes to appear meanwhile (the SDK loads in a thread)."""
    term = Tmux(_app_command(tmp), tmp / "ws")
    try:
        term.wait_for(lambda s: "palette" in s)
        term.run("send-keys", "-t", "b", "q")
        typed = term.wait_for(lambda s: "│ q" in s)
        term.wait_for(lambda s: "run 2" in s)
        return time.perf_counter() - term.started, typed
    finally:
        term.close()


def _sdk_import() -> float:
    """A fresh interpreter importing the SDK, start to end."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import anthropic"], check=True)
    return time.perf_counter() - t


def _readiness(tmp: Path) -> list[Row]:
    ready, sdk, typed = [], [], []
    for _ in range(5):
        r, k = _ready(tmp)
        ready.append(r)
        typed.append(k)
        sdk.append(_sdk_import())
    r, s = statistics.median(ready), statistics.median(sdk)
    worst_key = max(typed)
    return [
        ("ready (the agent built): tuiagent (median, tmux)", f"{r:.2f} s", "-"),
        ("importing the SDK alone (median)", f"{s:.2f} s", "-"),
        ("ready minus the SDK's import", f"{r - s:+.2f} s", goal("<= +0.30 s", r - s <= 0.3)),
        ("a key typed while the SDK loads, to screen (worst)", f"{worst_key * 1000:.0f} ms",
         goal("<= 50 ms", worst_key <= 0.05)),
    ]  # fmt: skip


END_WORDS = "That is the whole answer."


def _model(tokens: int) -> LongModel:
    """The long answer, ending in words found nowhere else in it (they show it all arrived)."""
    model = LongModel(tokens)
    model.text += END_WORDS
    return model


Timed = tuple[float, float]  # seconds of wall time, and of CPU time of this process


async def _headless_stream(tmp: Path, tokens: int) -> Timed:
    from tuiagent.agent.events import AnswerDelta
    from tuiagent.session import open_session

    session = open_session(
        bench_settings(tmp / "logs", tokens),
        workspace=tmp / "ws",
        offline=True,
        offline_model=_model(tokens),
    )
    session.agent.start()
    t, c = time.perf_counter(), time.process_time()
    # What `tuiagent run` does with the answer (headless.py): write and flush each delta.
    with open(os.devnull, "w") as out:
        async for event in session.agent.send("Tell me everything."):
            if isinstance(event, AnswerDelta):
                out.write(event.text)
                out.flush()
    elapsed = time.perf_counter() - t, time.process_time() - c
    session.agent.finish()
    return elapsed


async def _ui_stream(tmp: Path, tokens: int, earlier: int = 0) -> Timed:
    from textual import events

    from tuiagent.ui.app import TuiagentApp

    app = TuiagentApp(
        bench_settings(tmp / "logs", tokens),
        workspace=tmp / "ws",
        offline=True,
        offline_model=_model(tokens),
        state_path=tmp / "state.json",
        themes_dir=tmp / "none",
    )
    async with app.run_test(size=(120, 40)) as pilot:
        while app.agent is None:
            await pilot.pause(0.01)
        if earlier:
            prefill(app, earlier)
            await pilot.pause(0.5)
        app.main.input.load_text("Tell me everything.")
        await pilot.pause()
        # Enter as the terminal sends it, then short sleeps: Pilot.press and Pilot.pause()
        # wait for 20 ms windows without CPU work, which would count as the app's time.
        t, c = time.perf_counter(), time.process_time()
        app.post_message(events.Key("enter", "\r"))
        # The clock stops once the turn is over and the answer's last words are drawn in the
        # chat, as Markdown.
        while (
            app.turn_worker is None  # the turn has not started yet
            or app.busy
            or app.main.chat.answer is not None
            or END_WORDS not in _chat_text(app)
        ):
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t, time.process_time() - c
        app.finish_run()
    return elapsed


def _chat_text(app: Any) -> str:
    """The words the chat draws now: its lines in view, as the compositor takes them. (Not
    the whole screen's render: that is the bench's own work, as costly as a frame.)"""
    from textual.geometry import Region

    chat = app.main.chat
    lines = chat.render_lines(Region(0, 0, chat.size.width, chat.size.height))
    return " ".join(" ".join(s.text.split()) for s in lines)


ROUNDS = 5


def _in_turn(first: Callable[[], Any], second: Callable[[], Any]) -> list[tuple[Timed, Timed]]:
    """ROUNDS pairs of runs of two streams, back to back (first, second; then second,
    first; ...) after one untimed pair: the first runs in a process pay for imports, and
    the machine's speed, which drifts, is about the same within a pair."""
    asyncio.run(first())
    asyncio.run(second())
    pairs = []
    for i in range(ROUNDS):
        if i % 2:
            b = asyncio.run(second())
            a = asyncio.run(first())
        else:
            a = asyncio.run(first())
            b = asyncio.run(second())
        pairs.append((a, b))
    return pairs


# The streams run in fresh processes, PROCESSES of them, and each ratio is the median of the
# ratios of all their pairs. One process's figure moved by up to 0.1 from the next at idle
# (its hash seed, its memory's layout, the machine's speed meanwhile: a VM's), and the best
# run of each side, taken apart, moved by more than the pairs' median.
PROCESSES = 5
TOKENS, SHORT = 20_000, 5_000


def _streams(tmp: Path) -> dict[str, list[tuple[Timed, Timed]]]:
    """One process's streams (`python -m bench.bench_ui --streams DIR`): the app against the
    headless agent, and the app with 100 earlier messages against an empty one."""
    return {
        "stream": _in_turn(lambda: _ui_stream(tmp, TOKENS), lambda: _headless_stream(tmp, TOKENS)),
        "kept": _in_turn(
            lambda: _ui_stream(tmp, SHORT, earlier=100), lambda: _ui_stream(tmp, SHORT)
        ),
    }


def _streaming(tmp: Path) -> list[Row]:
    pairs: dict[str, list[tuple[Timed, Timed]]] = {"stream": [], "kept": []}
    for _ in range(PROCESSES):
        done = subprocess.run(
            [sys.executable, "-m", "bench.bench_ui", "--streams", str(tmp)],
            cwd=Path(__file__).parent.parent, capture_output=True, text=True, check=True,
        )  # fmt: skip
        for key, runs in json.loads(done.stdout.splitlines()[-1]).items():
            pairs[key] += runs

    def ratio(key: str, at: int, invert: bool = False) -> tuple[float, str]:
        """The median of the pairs' ratios, and the middle half of them."""
        ratios = sorted((b[at] / a[at]) if invert else (a[at] / b[at]) for a, b in pairs[key])
        q = statistics.quantiles(ratios, n=4)
        mid = statistics.median(ratios)
        return mid, f"{mid:.2f} ({q[0]:.2f}-{q[2]:.2f})"

    def times(key: str, side: int) -> Timed:
        runs = [pair[side] for pair in pairs[key]]
        return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)

    stream, stream_text = ratio("stream", 0)
    stream_cpu, stream_cpu_text = ratio("stream", 1)
    kept, kept_text = ratio("kept", 0, invert=True)
    kept_cpu, kept_cpu_text = ratio("kept", 1, invert=True)
    of = f"median of {PROCESSES * ROUNDS} pairs in {PROCESSES} processes (middle half)"
    return [
        (f"stream {TOKENS:,} tokens: headless (wall, CPU; median)", _timed(times("stream", 1)), "-"),
        (f"stream {TOKENS:,} tokens: app (wall, CPU; median)", _timed(times("stream", 0)), "-"),
        (f"stream ratio app / headless, {of}", stream_text, goal("<= 1.2", stream <= 1.2)),
        (f"stream ratio app / headless, in CPU time, {of}", stream_cpu_text,
         goal("<= 1.2", stream_cpu <= 1.2)),
        (f"stream {SHORT:,} tokens: empty chat (median)",
         f"{SHORT / times('kept', 1)[0]:,.0f} tok/s", "-"),
        (f"stream {SHORT:,} tokens: 100 earlier messages (median)",
         f"{SHORT / times('kept', 0)[0]:,.0f} tok/s", "-"),
        (f"throughput ratio 100 earlier / empty, {of}", kept_text, goal(">= 0.9", kept >= 0.9)),
        (f"throughput ratio 100 earlier / empty, in CPU time, {of}", kept_cpu_text,
         goal(">= 0.9", kept_cpu >= 0.9)),
    ]  # fmt: skip


def _timed(t: Timed) -> str:
    return f"{t[0]:.2f} s, {t[1]:.2f} s CPU"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _live(tmp: Path) -> list[Row]:
    pid_file = tmp / "pid"
    cmd = [sys.executable, "-m", "bench.ui_driver", str(tmp / "ws"), str(tmp / "logs"),
           "--tokens", "20000", "--tps", "80", "--pid-file", str(pid_file)]  # fmt: skip
    term = Tmux(cmd, Path(__file__).parent.parent)
    try:
        term.wait_for(lambda s: "palette" in s and "run 2" in s)
        term.run("send-keys", "-t", "b", "Tell me everything.", "Enter")
        term.wait_for(lambda s: "Part 1" in s)
        pid = int(pid_file.read_text())
        c0, t0 = _cpu_seconds(pid), time.perf_counter()
        time.sleep(8.0)
        cpu = (_cpu_seconds(pid) - c0) / (time.perf_counter() - t0)
        latencies = term.keystrokes(40, 0.05)
    finally:
        term.close()
    p95 = statistics.quantiles(latencies, n=20)[-1]
    return [
        ("CPU while streaming at 80 tokens/s", f"{cpu:.0%} of a core", goal("<= 20%", cpu <= 0.2)),
        ("keystroke to screen while streaming (p50)", f"{statistics.median(latencies) * 1000:.0f} ms", "-"),
        ("keystroke to screen while streaming (p95)", f"{p95 * 1000:.0f} ms", goal("<= 50 ms", p95 <= 0.05)),
    ]  # fmt: skip


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def run() -> list[Row]:
    import tuiagent

    compileall.compile_dir(Path(tuiagent.__file__).parent, quiet=1)
    rows: list[Row] = [("load average (1 min) at the start", _load(), "< 1 for final figures")]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "ws").mkdir()
        (tmp / "ws" / "notes.txt").write_text("alpha\n")
        if shutil.which("tmux"):
            rows += _startup(tmp)
            rows += _readiness(tmp)
        else:
            rows.append(("first frame and ready (tmux)", "skipped: no tmux", "-"))
        rows += _streaming(tmp)
        if shutil.which("tmux"):
            rows += _live(tmp)
    rows.append(("load average (1 min) at the end", _load(), "< 1 for final figures"))
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--streams"]:
        print(json.dumps(_streams(Path(sys.argv[2]))))
    else:
        for row in run():
            print(*row, sep="  |  ")
