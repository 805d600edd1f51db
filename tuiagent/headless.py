"""`tuiagent run`: the agent loop without a screen. One line per turn, or JSON records."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tuiagent.agent.events import (
    AnswerDelta,
    AttemptFailed,
    Halted,
    LogRecord,
    Notice,
    RunEnded,
    ToolFinished,
    TurnFinished,
)
from tuiagent.config import Settings
from tuiagent.exit_codes import EXIT_INTERRUPTED, EXIT_OK, outcome
from tuiagent.llm.offline import OFFLINE_NOTICE
from tuiagent.session import open_session


def _turn_line(r: dict[str, object]) -> str:
    return (
        f"turn {r['turn']:>2}  {'' if r.get('purpose', 'agent') == 'agent' else str(r['purpose']) + '  '}"
        f"{r['model']}  uncached {r['input_tokens']:,}  out {r['output_tokens']:,}  "
        f"cache read {r['cache_read_input_tokens']:,} write {r['cache_creation_input_tokens']:,}  "
        f"${r['cost_usd']:.6f}  total ${r['cumulative_cost_usd']:.6f}\n"
        f"         route: {r['route_reason']}"
    )


def print_json(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _unreachable(failure: dict[str, object] | None) -> bool:
    """The last failed attempt never got an answer: a dropped connection or a timeout."""
    return failure is not None and failure.get("error_type") in ("connection_error", "timeout")


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

    emit(agent.start())
    status, halt_reason, code = "completed", None, EXIT_OK
    at_line_start = True
    last_failure: dict[str, object] | None = None
    try:
        async for event in agent.send(prompt):
            if isinstance(event, LogRecord):
                emit(event)
            if isinstance(event, AttemptFailed):
                last_failure = event.record
            if as_json:
                if isinstance(event, Notice | Halted):
                    print(f"tuiagent: {getattr(event, 'text', None) or event.detail}", file=err)  # type: ignore[union-attr]
                continue
            if isinstance(event, AnswerDelta):
                out.write(event.text)
                at_line_start = event.text.endswith("\n")
            elif isinstance(event, TurnFinished):
                if not at_line_start:
                    out.write("\n")
                    at_line_start = True
                out.write(_turn_line(event.record) + "\n")
            elif isinstance(event, ToolFinished):
                r = event.record
                mark = "ok" if r["ok"] else "error"
                size = f"{r['result_tokens']:,} tokens"
                if r.get("result_id"):
                    size += f" (from {r['original_tokens']:,}, {r['method']}, {r['result_id']})"
                out.write(f"  tool {r['name']} {mark}  {size}\n")
            elif isinstance(event, AttemptFailed):
                out.write(f"  attempt failed: {event.record['error']}\n")
            elif isinstance(event, Notice):
                print(f"tuiagent: {event.text}", file=err)
            elif isinstance(event, Halted):
                print(f"tuiagent: halted: {event.detail}", file=err)
            out.flush()
    except (KeyboardInterrupt, asyncio.CancelledError):
        status, halt_reason, code = "halted", "interrupted", EXIT_INTERRUPTED
    else:
        status, halt_reason, code = outcome(
            agent.state.halt_reason, unreachable=_unreachable(last_failure)
        )
    end: RunEnded = agent.finish(status, halt_reason)
    emit(end)
    if not as_json:
        r = end.record
        why = r["halt_reason"] if r["halt_reason"] not in (None, r["status"]) else None
        out.write(
            f"{r['status']}{f' ({why})' if why else ''}: "
            f"{r['turns']} turns, ${r['total_cost_usd']:.6f}  log {agent.log.path}\n"
        )
    return code
