"""`tuiagent run`: the agent loop without a screen. One line per turn, or JSON records."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from signal import SIGINT
from typing import Any

from tuiagent.agent.events import (
    AnswerDelta,
    AttemptFailed,
    Event,
    Halted,
    LogRecord,
    Notice,
    RunEnded,
    SubAgentChanged,
    ToolFinished,
    TurnFinished,
)
from tuiagent.cli.output import output_closed
from tuiagent.config import Settings
from tuiagent.cost.display import counted
from tuiagent.exit_codes import EXIT_OK
from tuiagent.offline import OFFLINE_NOTICE
from tuiagent.runs.log import LogWriteError
from tuiagent.runs.outcome import outcome
from tuiagent.runs.records import Attempt, HaltReason, Record, Turn
from tuiagent.session import open_session


def _indent(r: Record) -> str:
    """A sub-agent's lines sit under its parent's, with its id."""
    return "" if r.agent in (None, "main") else f"    {r.agent} "


def _turn_line(r: Turn) -> str:
    at, u = _indent(r), r.usage
    return (
        f"{at}turn {r.turn:>2}  {'' if r.purpose == 'agent' else r.purpose + '  '}"
        f"{r.model}  uncached {u.input_tokens:,}  out {u.output_tokens:,}  "
        f"cache read {u.cache_read_input_tokens:,} write {u.cache_creation_input_tokens:,}  "
        f"${r.cost_usd:.6f}  total ${r.cumulative_cost_usd:.6f}\n"
        f"{' ' * len(at)}         route: {r.route_reason}"
    )


ENDED = ("completed", "stopped", "failed", "interrupted")


# Ctrl-C among them, not left to asyncio.run: a parent that ignores SIGINT (a script's
# background job, `cmd &`) would leave it ignored, and the run would go on spending.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def print_json(record: Record) -> None:
    sys.stdout.write(json.dumps(record.to_json(), separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _unreachable(failure: Attempt | None) -> bool:
    """The last failed attempt never got an answer: a dropped connection or a timeout."""
    return failure is not None and failure.error_type in ("connection_error", "timeout")


def stop_on_signals(task: asyncio.Task[Any] | None) -> list[int]:
    """SIGINT, SIGTERM and SIGHUP stop the run: the task is cancelled, so the call in flight
    is accounted and run_end written; the list gets the signal's number."""
    got: list[int] = []
    if task is None:
        return got
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        if not got:
            got.append(signum)
            task.cancel()

    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop, int(sig))
    return got


def restore_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(sig)


def _show(event: Event, as_json: bool, at_line_start: list[bool]) -> None:
    """One event, as a line for a person (or, with --json, only notices on stderr)."""
    out, err = sys.stdout, sys.stderr
    if as_json:
        if isinstance(event, Notice):
            print(f"tuiagent: {event.text}", file=err)
        elif isinstance(event, Halted):
            print(f"tuiagent: {event.detail}", file=err)
        return
    if isinstance(event, AnswerDelta):
        out.write(event.text)
        at_line_start[0] = event.text.endswith("\n")
    elif isinstance(event, TurnFinished):
        if not at_line_start[0]:
            out.write("\n")
            at_line_start[0] = True
        out.write(_turn_line(event.record) + "\n")
    elif isinstance(event, ToolFinished):
        r = event.record
        mark = "ok" if r.ok else "error"
        size = f"{r.result_tokens:,} tokens"
        if r.result_id:
            size += f" (from {r.original_tokens:,}, {r.method}, {r.result_id})"
        out.write(f"{_indent(r)}  tool {r.name} {mark}  {size}\n")
    elif isinstance(event, AttemptFailed):
        out.write(f"{_indent(event.record)}  attempt failed: {event.record.error}\n")
    elif isinstance(event, SubAgentChanged) and event.state in ENDED:
        why = f": {event.detail}" if event.detail else ""
        out.write(
            f"    {event.agent} {event.state}{why}  {counted(event.turns, 'turn')}, "
            f"${event.spent:.6f} of its ${event.slice_usd:.6f} slice  ({event.task})\n"
        )
    elif isinstance(event, Notice):
        print(f"tuiagent: {event.text}", file=err)
    elif isinstance(event, Halted):
        print(f"tuiagent: halted: {event.detail}", file=err)
    out.flush()


def _say_unwritten(unwritten: list[Record]) -> None:
    """What the disk refused to the end, on stderr: every billed call, so no money goes
    unrecorded."""
    if not unwritten:
        return
    calls = [r for r in unwritten if isinstance(r, Turn | Attempt)]
    billed = sum((c.cost_usd for c in calls), Decimal(0))
    print(
        f"tuiagent: {len(unwritten)} record(s) could not be written to the log, "
        f"{len(calls)} of them billed calls (${billed:.6f}):",
        file=sys.stderr,
    )
    for call in calls:
        why = f"  {call.error_type}" if isinstance(call, Attempt) else ""
        print(f"  {call.type} {call.turn} {call.model} ${call.cost_usd:.6f}{why}", file=sys.stderr)


async def run_headless(
    settings: Settings, prompt: str, *, workspace: Path, offline: bool, as_json: bool
) -> int:
    session = open_session(settings, workspace=workspace, offline=offline)
    agent = session.agent
    err = sys.stderr
    if session.notice:
        print(f"tuiagent: {session.notice}", file=err)
    if session.offline_model is not None and not as_json:
        print(f"[{OFFLINE_NOTICE}]", file=err)
    out = sys.stdout

    def emit(event: LogRecord) -> None:
        if as_json:
            print_json(event.record)

    end = outcome(None)
    at_line_start = [True]
    closed = False  # the reader of our output went away (`| head`)
    last_failure: Attempt | None = None
    stopped_by = stop_on_signals(asyncio.current_task())
    try:
        emit(agent.start())
        async with contextlib.aclosing(agent.send(prompt)) as events:
            async for event in events:
                if output_closed():
                    # The reader went away: stop as on Ctrl-C (closing the events settles
                    # the open call), write run_end, and exit 0 as a filtered command does.
                    closed = True
                    break
                if isinstance(event, LogRecord):
                    emit(event)
                if isinstance(event, AttemptFailed):
                    last_failure = event.record
                _show(event, as_json, at_line_start)
    except (KeyboardInterrupt, asyncio.CancelledError):
        end = outcome(HaltReason.INTERRUPTED, signum=stopped_by[0] if stopped_by else SIGINT)
    except LogWriteError as exc:
        # The run's files cannot be written (a full disk): no further call is sent.
        print(f"tuiagent: {exc}", file=err)
        end = outcome(HaltReason.ERROR)
    else:
        if closed:
            end = outcome(HaltReason.INTERRUPTED)._replace(exit_code=EXIT_OK)
        else:
            end = outcome(agent.state.halt_reason, unreachable=_unreachable(last_failure))
    finally:
        restore_signals()
    ended: RunEnded = agent.finish(end)
    emit(ended)
    _say_unwritten(agent.log.unwritten)
    if not as_json:
        r = ended.record
        why = r.halt_reason if r.halt_reason not in (None, r.status) else None
        sub = f" (+{r.subagent_turns} by sub-agents)" if r.subagent_turns else ""
        out.write(
            f"{r.status}{f' ({why})' if why else ''}: "
            f"{counted(r.turns, 'turn')}{sub}, ${r.total_cost_usd:.6f}  log {agent.log.path}\n"
        )
    return end.exit_code


async def run_estimate(
    settings: Settings, prompt: str, *, workspace: Path, offline: bool, as_json: bool
) -> int:
    """`run --estimate`: what the prompt would cost, sent nowhere. The agent's own files go
    to a folder that is removed: no run is logged; the range is drawn from the log dir."""
    from tuiagent.agent.estimate import History
    from tuiagent.paths import default_log_dir

    log_dir = settings.run.log_dir or default_log_dir()
    with tempfile.TemporaryDirectory(prefix="tuiagent-estimate-") as scratch:
        session = open_session(
            settings.with_changes(log_dir=Path(scratch)), workspace=workspace, offline=offline
        )
        agent = session.agent
        try:
            found = await agent.estimate(prompt, History(log_dir, workspace))
        finally:
            agent.log.close()
            agent.transcript.close()
            if agent.owns_budget:
                agent.budget.close()
    if session.notice:
        print(f"tuiagent: {session.notice}", file=sys.stderr)
    if as_json:
        json.dump(found.as_json(), sys.stdout)
        sys.stdout.write("\n")
    else:
        if session.offline_model is not None:
            print(f"[{OFFLINE_NOTICE}]", file=sys.stderr)
        print(f"estimate: {found.line()}")
        held = found.first_call_held_usd
        print(
            "nothing was sent; the first call would be held at "
            + (f"${held:.6f} (its worst case)" if held is not None else "more than the cap allows")
        )
    return EXIT_OK
