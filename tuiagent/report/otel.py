"""The turns of a report as OpenTelemetry spans, in OTLP/JSON (what `POST /v1/traces` takes).

Attribute names follow the OpenTelemetry GenAI semantic conventions and their Anthropic page:
one `chat {model}` CLIENT span per model call, under one `invoke_agent tuiagent` span per run,
with `gen_ai.usage.input_tokens` = input + cache read + cache write (Anthropic's
`input_tokens` excludes cached tokens). `gen_ai.system` is the pre-1.37 name of
`gen_ai.provider.name`, kept for backends on the older conventions. tuiagent's own figures
(dollars, tier, cause) are `tuiagent.*` attributes. IDs derive from the run id, so exporting
the same run twice gives the same spans.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import tuiagent
from tuiagent.cost.pricing import ZERO, usd
from tuiagent.report.rows import Report, RunRow, TurnRow
from tuiagent.runs.records import money_of, usage_of

SPAN_KIND_INTERNAL, SPAN_KIND_CLIENT = 1, 3
STATUS_UNSET, STATUS_ERROR = 0, 2


def _id(*parts: object, length: int) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:length]


def _nanos(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return None


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # int64 is a string in OTLP/JSON
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in values.items() if v is not None]


def _seconds(record: dict[str, Any], key: str) -> float:
    value = record.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def call_attributes(
    record: dict[str, Any], conversation_id: str, simulated: bool
) -> dict[str, Any]:
    """One call's span attributes (GenAI conventions, then tuiagent's own); None is unset."""
    usage = usage_of(record)
    model = str(record.get("model", ""))
    failed = record.get("type") == "attempt"
    stop = record.get("stop_reason")
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.system": "anthropic",
        "gen_ai.conversation.id": conversation_id,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": record.get("max_tokens"),
        "gen_ai.response.model": None if failed else model,
        "gen_ai.response.id": record.get("message_id") or None,
        "gen_ai.response.finish_reasons": [stop] if isinstance(stop, str) else None,
        "gen_ai.usage.input_tokens": usage.total_input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_input_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_creation_input_tokens,
        "error.type": str(record.get("error_type") or "_OTHER") if failed else None,
        "tuiagent.agent": record.get("agent"),
        "tuiagent.turn": record.get("turn"),
        "tuiagent.tier": record.get("tier"),
        "tuiagent.source": record.get("source"),
        "tuiagent.client": record.get("client"),
        "tuiagent.usage_unknown": record.get("usage_unknown"),
        "tuiagent.simulated": bool(record.get("simulated", simulated)),
        "tuiagent.cost_usd": usd(money_of(record.get("cost_usd")) or ZERO),
        "tuiagent.request_id": record.get("request_id"),
        "tuiagent.route_reason": record.get("route_reason"),
    }


def _call_span(
    run: RunRow, record: dict[str, Any], end: int, row: TurnRow | None, index: int, parent: str
) -> dict[str, Any]:
    model = str(record.get("model", ""))
    failed = record.get("type") == "attempt"
    attrs = call_attributes(record, run.run_id, run.simulated)
    attrs["tuiagent.cause"] = row.cause if row else None
    start = end - int(_seconds(record, "latency_s") * 1e9)
    span: dict[str, Any] = {
        "traceId": _id(run.run_id, length=32),
        "spanId": _id(run.run_id, record.get("type"), index, length=16),
        "parentSpanId": parent,
        "name": f"chat {model}",
        "kind": SPAN_KIND_CLIENT,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": _attributes(attrs),
        "status": {"code": STATUS_UNSET},
    }
    if failed:
        span["status"] = {"code": STATUS_ERROR, "message": str(record.get("error", ""))}
    return span


def _agent_span(
    run: RunRow, agent: str, calls: list[tuple[dict[str, Any], dict[str, Any]]], parent: str
) -> dict[str, Any]:
    """A sub-agent: an `invoke_agent` span under the turn that delegated to it, holding its
    calls ((span, record) pairs)."""
    first, record = calls[0]
    cost = sum((money_of(r.get("cost_usd")) or ZERO for _, r in calls), ZERO)
    return {
        "traceId": _id(run.run_id, length=32),
        "spanId": _id(run.run_id, "agent", agent, length=16),
        "parentSpanId": parent,
        "name": f"invoke_agent {agent}",
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": first["startTimeUnixNano"],
        "endTimeUnixNano": max(str(span["endTimeUnixNano"]) for span, _ in calls),
        "attributes": _attributes(
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "gen_ai.conversation.id": run.run_id,
                "tuiagent.agent": agent,
                "tuiagent.parent_agent": record.get("parent_agent"),
                "tuiagent.task": record.get("task"),
                "tuiagent.cost_usd": usd(cost),
            }
        ),
        "status": {"code": STATUS_UNSET},
    }


def _run_spans(run: RunRow, rows: list[TurnRow]) -> list[dict[str, Any]]:
    started = _nanos(run.started_at) or 0
    by_turn = {(r.agent, r.turn, r.purpose): r for r in rows}
    root_id = _id(run.run_id, "run", length=16)
    spans = []
    turn_spans: dict[tuple[str, Any], str] = {}  # (agent, turn) -> the span of its agent call
    sub_calls: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    clock = started  # for logs without per-call times: calls laid end to end from the start
    for index, record in enumerate(run.call_records):
        end = _nanos(record.get("ended_at") if isinstance(record.get("ended_at"), str) else None)
        if end is None:
            end = clock + int(_seconds(record, "latency_s") * 1e9)
        clock = end
        agent = str(record.get("agent") or "main")
        key = (agent, record.get("turn"), record.get("purpose", "agent"))
        row = by_turn.get(key) if record.get("type") == "turn" else None  # type: ignore[arg-type]
        parent = root_id if agent == "main" else _id(run.run_id, "agent", agent, length=16)
        span = _call_span(run, record, end, row, index, parent)
        if record.get("type") == "turn" and record.get("purpose", "agent") == "agent":
            turn_spans[(agent, record.get("turn"))] = span["spanId"]
        if agent != "main":
            sub_calls.setdefault(agent, []).append((span, record))
        spans.append(span)
    for agent, calls in sub_calls.items():
        first = calls[0][1]
        # Nested under the turn that delegated to it (the run itself when that is not known).
        delegating = turn_spans.get((str(first.get("parent_agent")), first.get("parent_turn")))
        spans.append(_agent_span(run, agent, calls, delegating or root_id))
    ended = _nanos(run.ended_at) or clock
    root = {
        "traceId": _id(run.run_id, length=32),
        "spanId": _id(run.run_id, "run", length=16),
        "name": "invoke_agent tuiagent",
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(started),
        "endTimeUnixNano": str(max(ended, clock)),
        "attributes": _attributes(
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "tuiagent",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.system": "anthropic",
                "gen_ai.conversation.id": run.run_id,
                "gen_ai.usage.input_tokens": run.usage.total_input_tokens,
                "gen_ai.usage.output_tokens": run.usage.output_tokens,
                "tuiagent.provider": run.provider,
                "tuiagent.simulated": run.simulated,
                "tuiagent.cost_usd": usd(run.cost),
                "tuiagent.ended": run.ended,
            }
        ),
        "status": {"code": STATUS_ERROR if run.ended.startswith("error") else STATUS_UNSET},
    }
    return [root, *spans]


def otel_traces(report: Report) -> dict[str, Any]:
    spans = []
    for run in report.runs:
        spans += _run_spans(run, [t for t in report.turns if t.run_id == run.run_id])
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes({"service.name": "tuiagent"})},
                "scopeSpans": [
                    {
                        "scope": {"name": "tuiagent", "version": tuiagent.__version__},
                        "spans": spans,
                    }
                ],
            }
        ]
    }
