"""One offline turn, traced (bench/trace_turn.py): no module of the engine calls back into one
that called it, and the agent's own files a turn runs stay few. Before issue 27 the turn
went call.py -> loop.py -> conversation.py -> loop.py -> call.py, and loop <-> context,
loop <-> tool_step, call <-> meter (8 such chains); then the meter's wait loop asked the
call for its plan (call.py -> meter/core.py -> call.py): now the call loops, with the
meter's `Waiting`."""

from __future__ import annotations

from bench.trace_turn import engine, trace_once

# A tool (a plugin the toolbox runs) calls the toolbox's own helpers (in_thread, as_utf8):
# tools/base.py -> tools/workspace.py -> tools/base.py.
PLUGIN = ("agent/tools/base.py", "agent/tools/workspace.py", "agent/tools/base.py")


def test_one_turn_has_no_back_and_forth_and_few_files() -> None:
    trace = trace_once()
    assert trace.back_and_forth <= {PLUGIN}, sorted(trace.back_and_forth)
    files = engine(trace.files)
    assert "agent/loop.py" in files and "agent/call.py" in files  # the trace sees the turn
    agent = [f for f in files if f.startswith("agent/")]
    assert len(agent) <= 12, agent
