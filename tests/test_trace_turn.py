"""One offline turn, traced (bench/trace_turn.py): no module of the engine calls back into one
that called it, and the engine's files a turn runs stay few.

Before issue 27 the turn ran 31 of the engine's files and went call.py -> loop.py ->
conversation.py -> loop.py -> call.py, loop <-> context, loop <-> tool_step, call <-> meter
(8 such chains). Then three were left: the meter's wait loop asked the call for its plan
(call.py -> meter/core.py -> call.py, twice), and a tool called the toolbox's helpers
(tools/base.py -> tools/workspace.py -> tools/base.py). Now the call loops with the meter's
`Waiting` and writes its own hold record; the toolbox (tools/toolbox.py) sits above the
tools and the helpers they share (tools/base.py); the modules that only served one another
are one (agent/stream.py in events.py, conversation.py in context.py, tool_step.py in
loop.py, run_records.py in call.py, llm/window.py in models.py, meter/sizing.py in
core.py, llm/usage.py in tokens.py); the run's ledger budgets (`Stack`) sit with the cap in
cost/budget.py; the settings reach the turn as values, not calls back into config.py."""

from __future__ import annotations

from bench.trace_turn import engine, trace_once


def test_one_turn_has_no_back_and_forth_and_few_files() -> None:
    trace = trace_once()
    assert not trace.back_and_forth, sorted(trace.back_and_forth)
    files = engine(trace.files)
    assert "agent/loop.py" in files and "agent/call.py" in files  # the trace sees the turn
    assert "config.py" not in files  # the settings come as values
    assert len(files) <= 21, files
    agent = [f for f in files if f.startswith("agent/")]
    assert len(agent) <= 9, agent
