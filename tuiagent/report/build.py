"""Reports over run logs: what each run cost, the costliest turns and why, where input came from.

Reads the JSONL run logs of a log dir (and each run's transcript beside them, when there is
one). Everything readable is reported: a line cut by a killed run is counted and skipped, a
record type or field this version does not know is ignored, a field an older version did not
write is treated as absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.cost.pricing import ZERO, Pricer
from tuiagent.errors import UsageError
from tuiagent.llm.tokens import TokenUsage
from tuiagent.report.attribution import split_input
from tuiagent.report.causes import explain
from tuiagent.report.rows import GroupRow, McpRow, Report, RunRow, TurnRow
from tuiagent.report.sessions import group_sessions
from tuiagent.runs.layout import RunFile, list_runs, select_runs
from tuiagent.runs.log import has_torn_tail, is_live
from tuiagent.runs.records import (
    Call,
    HoldRecord,
    McpCost,
    McpServerState,
    ProxyTurn,
    Record,
    RefusedCall,
    RunEnd,
    RunStart,
    int_of,
    money_of,
    str_of,
    usage_of,
)
from tuiagent.runs.transcript import requests_by_turn


def build_report(
    log_dir: Path,
    *,
    last: int | None = None,
    run_ids: Iterable[str] = (),
    top: int = 5,
    pricer: Pricer | None = None,
    all_runs: bool = False,
) -> Report:
    """Runs with no model call are left out (and counted) unless `all_runs` or named by id:
    `last=1` is the last run that called a model."""
    pricer = pricer or Pricer()
    every = list_runs(log_dir)
    wanted = list(run_ids)
    shown = every if all_runs or wanted else [r for r in every if r.has_calls]
    if not shown:
        raise UsageError(
            f"no run in {log_dir} called a model ({len(every)} without a call; --all lists them)"
        )
    runs = select_runs(shown, last=last, run_ids=wanted)
    report = Report(log_dir, [], [], [], [], top, hidden=len(every) - len(shown))
    models: dict[str, GroupRow] = {}
    tiers: dict[str, GroupRow] = {}
    agents: dict[tuple[str, str], GroupRow] = {}
    proxied: list[tuple[str, Record]] = []
    for run in runs:
        proxied += [(run.run_id, r) for r in run.typed if isinstance(r, ProxyTurn | RefusedCall)]
        turns = _turn_rows(run, pricer, report.warnings)
        report.turns.extend(turns)
        report.runs.append(_run_row(run, turns, pricer))
        report.mcp.extend(_mcp_rows(run))
        for call in run.calls:
            agent = call.agent or "main"
            sub = agent != "main"
            model = call.model or "?"
            for group in (
                models.setdefault(model, GroupRow(model)),
                tiers.setdefault(_tier(call), GroupRow(_tier(call))),
                agents.setdefault(
                    (run.run_id if sub else "", agent),
                    GroupRow(agent, run_id=run.run_id if sub else None, task=call.task or None),
                ),
            ):
                group.calls += 1
                group.usage = group.usage + call.usage
                group.cost += call.cost_usd
        if run.unreadable_lines:
            why = (
                "the last is a torn record: the run was killed while writing it, or its disk "
                "filled; it is cut when the run is resumed"
                if has_torn_tail(run.path)
                else "cut by a killed run, or not a record this version can trust"
            )
            report.warnings.append(
                f"{run.path.name}: {run.unreadable_lines} unreadable line(s) skipped ({why})"
            )
    report.by_model = sorted(models.values(), key=lambda g: g.cost, reverse=True)
    report.by_tier = sorted(tiers.values(), key=lambda g: g.cost, reverse=True)
    report.by_agent = sorted(agents.values(), key=lambda g: g.cost, reverse=True)
    report.sessions = group_sessions(proxied)
    return report


def _mcp_rows(run: RunFile) -> list[McpRow]:
    """Each MCP server of the run: its state, and its definitions' tokens and cost."""
    rows: dict[str, McpRow] = {}
    for r in run.typed:
        if isinstance(r, McpServerState):
            row = rows.setdefault(r.server, McpRow(run.run_id, r.server, r.transport, "", 0))
            row.status = r.status
            row.tools = max(row.tools, r.tools)
        elif isinstance(r, McpCost):
            for server, tokens in r.tokens.items():
                row = rows.setdefault(server, McpRow(run.run_id, server, "?", "?", 0))
                row.calls += 1
                row.tokens += tokens
                row.cost += r.cost_usd.get(server, ZERO)
    return list(rows.values())


def _tier(call: Call) -> str:
    """A proxied call has no tier (its client chose the model): it is grouped by source."""
    return call.source if isinstance(call, ProxyTurn) else call.tier or "?"


def _run_row(run: RunFile, turns: list[TurnRow], pricer: Pricer) -> RunRow:
    start, end = run.start, run.end
    attempts = [c for c in run.calls if c.type == "attempt"]
    usage = sum((t.usage for t in turns), TokenUsage())
    usage = sum((a.usage for a in attempts), usage)
    cost = sum((t.cost for t in turns), ZERO) + sum((a.cost_usd for a in attempts), ZERO)
    live = end is None and is_live(run.path)
    died = [] if live else _died_in_flight(run)
    cost += sum((h.reserved_usd for h in died), ZERO)
    if end is None:
        # No run_end: still being written (its writer holds the log's lock), or cut off.
        ended = "live" if live else "cut off (no run_end)"
    else:
        ended = end.status or "?"
        halt = end.halt_reason if isinstance(end, RunEnd) else None
        if halt and ended != "error":
            ended += f" ({halt})"
    tools = [r for r in run.records if r.get("type") == "tool"]
    compressed = [t for t in tools if "original_tokens" in t and "compressed_tokens" in t]
    return RunRow(
        run_id=run.run_id,
        path=run.path,
        started_at=run.started_at,
        ended_at=end.ended_at or None if end else None,
        provider=start.provider or "?" if start else "?",
        simulated=start.simulated if start else False,
        turns=len(turns),
        failed_attempts=len(attempts),
        usage=usage,
        cost=cost,
        saved_by_cache=_saved_by_cache(turns, pricer),
        compression_saved_tokens=(
            # (a tool record of an older version may lack the two counts: dicts here)
            sum(int_of(t, "original_tokens") - int_of(t, "compressed_tokens") for t in compressed)
            if compressed
            else None
        ),
        ended=ended,
        unreadable_lines=run.unreadable_lines,
        replay_of=start.replay_of if isinstance(start, RunStart) else None,
        call_records=[r for r in run.records if r.get("type") in ("turn", "attempt")],
        died_in_flight=sum((h.reserved_usd for h in died), ZERO),
        died_in_flight_calls=len(died),
    )


def _died_in_flight(run: RunFile) -> list[HoldRecord]:
    """The holds no call record closes: calls held (and maybe sent) when the run was
    killed. Each may have been billed up to its worst case."""
    closed = {r.get("hold_id") for r in run.records if r.get("type") in ("turn", "attempt")}
    return [h for h in run.typed if isinstance(h, HoldRecord) and h.hold_id not in closed]


def _saved_by_cache(turns: list[TurnRow], pricer: Pricer) -> Decimal | None:
    """What the cache saved: the log's own figure when it has one, else the same usage priced
    with every cached token as plain input, minus what was paid (negative: writes not yet
    read back)."""
    saved = ZERO
    for t in turns:
        logged = money_of(t.record.get("saved_by_cache_usd"))
        if logged is not None:
            saved += logged
            continue
        u = t.usage
        if not (u.cache_read_input_tokens or u.cache_creation_input_tokens):
            continue
        try:
            saved += pricer.without_cache(t.model, u) - pricer.price(t.model, u).total
        except UsageError:
            return None  # a model this version cannot price: no figure rather than a wrong one
    return saved


def _turn_rows(run: RunFile, pricer: Pricer, warnings: list[str]) -> list[TurnRow]:
    start = run.first("run_start") or {}
    models = start.get("models")
    tier_models: dict[str, Any] = models if isinstance(models, dict) else {}
    tool_names = {
        str_of(r, "tool_use_id"): _tool_label(r) for r in run.records if r.get("type") == "tool"
    }
    requests: dict[str, dict[tuple[int, str], dict[str, Any]]] = {}
    rows = []
    for index, rec in enumerate(r for r in run.records if r.get("type") == "turn"):
        turn = int_of(rec, "turn") or index + 1
        cost = money_of(rec.get("cost_usd")) or ZERO
        raw = rec.get("cost_breakdown_usd")
        breakdown = {
            k: money_of(v) or ZERO for k, v in (raw.items() if isinstance(raw, dict) else [])
        }
        tool_calls = rec.get("tool_calls")
        row = TurnRow(
            run_id=run.run_id,
            turn=turn,
            purpose=str_of(rec, "purpose", "agent"),
            model=str_of(rec, "model", "?"),
            tier=str_of(rec, "tier", str_of(rec, "source", "?")),
            simulated=bool(rec.get("simulated", False)),
            usage=usage_of(rec),
            cost=cost,
            breakdown=breakdown,
            stop_reason=rec.get("stop_reason") if isinstance(rec.get("stop_reason"), str) else None,
            tool_calls=[str(x) for x in tool_calls] if isinstance(tool_calls, list) else [],
            record=rec,
            agent=str_of(rec, "agent", "main"),
        )
        if row.agent not in requests:  # a sub-agent's conversation is in its own transcript
            requests[row.agent] = requests_by_turn(run, warnings, row.agent)
        request = requests[row.agent].get((turn, row.purpose))
        if request is not None:
            split_input(row, request, tool_names)
        explain(row, pricer, tier_models)
        rows.append(row)
    return rows


def _tool_label(record: Mapping[str, Any]) -> str:
    name = str_of(record, "name", "tool")
    args = record.get("input")
    if isinstance(args, dict):
        for key in ("path", "pattern", "query"):
            if isinstance(args.get(key), str):
                return f"{name} {args[key]}"
    return name
