"""Which of tuiagent's files one turn runs, and whether its calls go back and forth.

One request on the offline model (`send`: a tool call, then the answer), after a first
request that warms every import, traced with `sys.setprofile`: every Python function call
whose code lives in the tuiagent package. It prints

- the distinct files whose code ran, each with how many calls entered it from another file;
- the calls that cross from one file to another (distinct caller -> callee file pairs);
- the back-and-forth: a call into a file that is already on the stack below another file
  (A -> B -> A), each such chain once, shortest first. The step driver (`EventStream` in
  agent/events.py, which runs each step and the sub-steps it yields, as asyncio's loop runs
  coroutines) is left out of the stacks: a step it resumes is not called back by it.

Run it on any checkout: `python -m bench.trace_turn` (or `--json`). `run()` gives the
figures to `python -m bench bench_...`-style tables; tests/test_trace_turn.py keeps the
bounds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import tuiagent

PACKAGE = Path(tuiagent.__file__).resolve().parent
PROMPT = "What does notes.txt say?"
# The step driver: left out of the stacks (see above). Its file, and its code by name.
RUNTIME = ("agent/events.py", ("EventStream.", "awaited", "_nothing"))


@dataclass
class Trace:
    files: Counter[str] = field(default_factory=Counter)  # file -> calls entering from outside
    edges: Counter[tuple[str, str]] = field(default_factory=Counter)
    back_and_forth: set[tuple[str, ...]] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        return {
            "files": dict(sorted(self.files.items())),
            "edges": [f"{a} -> {b}" for a, b in sorted(self.edges)],
            "back_and_forth": [" -> ".join(c) for c in sorted(self.back_and_forth, key=len)],
        }


def _ours(frame: FrameType | None) -> str | None:
    """The frame's file relative to the package, or None when it is not tuiagent's."""
    if frame is None:
        return None
    name = frame.f_code.co_filename
    if not name.startswith(str(PACKAGE)):
        return None
    return name[len(str(PACKAGE)) + 1 :]


def _runtime(frame: FrameType) -> bool:
    """Is the frame the step driver's?"""
    return _ours(frame) == RUNTIME[0] and frame.f_code.co_qualname.startswith(RUNTIME[1])


def _stack_files(frame: FrameType | None) -> list[str]:
    """tuiagent's files on the stack, outermost first, each run of one file once."""
    files: list[str] = []
    while frame is not None:
        f = _ours(frame)
        if f is not None and not _runtime(frame) and (not files or files[-1] != f):
            files.append(f)
        frame = frame.f_back
    return files[::-1]


def trace(workspace: Path, log_dir: Path) -> Trace:
    from tuiagent.config import Settings
    from tuiagent.session import open_session

    async def main() -> Trace:
        session = open_session(
            Settings().with_changes(log_dir=log_dir), workspace=workspace, offline=True
        )
        agent = session.agent
        agent.start()
        async for _ in agent.send("List the files here"):  # warms every import
            pass
        out = Trace()

        def profile(frame: FrameType, event: str, arg: object) -> None:
            if event != "call":
                return
            callee = _ours(frame)
            if callee is None:
                return
            caller = _ours(frame.f_back)
            if caller == callee:
                return
            out.files[callee] += 1
            if caller is None:
                return
            out.edges[(caller, callee)] += 1
            stack = _stack_files(frame.f_back)
            if not _runtime(frame) and callee in stack:
                out.back_and_forth.add((*stack[stack.index(callee) :], callee))

        sys.setprofile(profile)
        try:
            async for _ in agent.send(PROMPT):
                pass
        finally:
            sys.setprofile(None)
        agent.finish()
        return out

    return asyncio.run(main())


def trace_once() -> Trace:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        (ws / "notes.txt").write_text("TODO: one\nthe notes\n")
        (ws / "a.py").write_text("print(1)\n")
        return trace(ws, Path(tmp) / "logs")


def engine(files: Counter[str]) -> list[str]:
    """The files that are tuiagent's engine, not the offline model (which stands in for the
    network and the model)."""
    return sorted(f for f in files if not f.startswith("offline/"))


def run() -> list[tuple[str, str, str]]:
    t = trace_once()
    return [
        ("tuiagent files one turn runs", str(len(t.files)), "-"),
        ("of them the engine's (the offline model aside)", str(len(engine(t.files))), "<= 20"),
        ("file-to-file call pairs", str(len(t.edges)), "-"),
        ("back-and-forth chains (A -> B -> A)", str(len(t.back_and_forth)), "0"),
    ]


def main(argv: list[str]) -> int:
    t = trace_once()
    if "--json" in argv:
        print(json.dumps(t.as_json(), indent=1))
        return 0
    print(
        f"{len(t.files)} files run by one turn ({PROMPT!r}), {len(engine(t.files))} of them "
        "the engine's (the offline model aside):"
    )
    for name, n in sorted(t.files.items()):
        print(f"  {name}  ({n} calls in)")
    print(f"{len(t.edges)} file-to-file call pairs")
    print(f"{len(t.back_and_forth)} back-and-forth chains:")
    for chain in sorted(t.back_and_forth, key=lambda c: (len(c), c)):
        print("  " + " -> ".join(chain))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
