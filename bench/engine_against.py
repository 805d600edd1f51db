"""The engine's overhead per turn (bench_engine) here and in another checkout, side by side in
one run: `python -m bench.engine_against /path/to/other/checkout [rounds]`.

Each round runs bench_engine once in each tree, alternately, in a fresh process (the tree's
own code and its own bench_engine), so both see the same load over time; the figure is the
median of the rounds' medians, and the ratio this tree / the other. Beside it, the CPU time
per turn of bench_engine's sessions (the process's own, the offline model's included: the
same in both trees), which a loaded machine disturbs far less than wall time. On a loaded
machine compare the ratios, not the milliseconds.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
_ONE = """
import asyncio, tempfile, time
from pathlib import Path
from bench.bench_engine import _session_once, run

async def sessions(ws, logs):
    for _ in range(3):  # warm-up
        await _session_once(ws, logs)
    cpu, turns = time.process_time(), 0
    for _ in range(30):
        turns += (await _session_once(ws, logs))[2]
    return (time.process_time() - cpu) / turns * 1000

with tempfile.TemporaryDirectory() as tmp:
    ws = Path(tmp) / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("TODO: one\\n" * 50)
    (ws / "big.txt").write_text("x" * 20_000)
    for i in range(20):
        (ws / f"f{i}.py").write_text(f"# file {i}\\nprint({i})\\n")
    cpu_ms = asyncio.run(sessions(ws, Path(tmp) / "logs"))
rows = dict((name, value) for name, value, _ in run())
print(rows["engine overhead per turn (median)"].split()[0], cpu_ms)
"""


def _once(tree: Path) -> tuple[float, float]:
    """(bench_engine's median overhead per turn in ms, CPU ms per turn of its sessions)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", _ONE], cwd=tree, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"bench_engine failed in {tree}:\n{out.stderr[-2000:]}")
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    other, rounds = Path(argv[0]).resolve(), int(argv[1]) if len(argv) > 1 else 5
    runs: dict[Path, list[tuple[float, float]]] = {HERE: [], other: []}
    for _ in range(rounds):
        for tree in runs:
            runs[tree].append(_once(tree))
    medians = {
        tree: (statistics.median(w for w, _ in got), statistics.median(c for _, c in got))
        for tree, got in runs.items()
    }
    print(f"bench_engine, {rounds} rounds each, alternately:")
    for tree, (wall, cpu) in medians.items():
        walls = [round(w, 2) for w, _ in runs[tree]]
        print(f"  {tree}: {wall:.2f} ms per turn (wall, model aside) {walls}; {cpu:.2f} ms CPU")
    (aw, ac), (bw, bc) = medians[HERE], medians[other]
    print(f"  ratio this / other: wall {aw / bw:.2f}, CPU {ac / bc:.2f}")
    print(f"  load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
