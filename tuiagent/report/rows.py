"""The rows of a report: runs, turns, groups (by model, tier, agent), input sources.

Money is Decimal here; `to_json` turns it into JSON numbers in USD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.cost.pricing import ZERO, usd
from tuiagent.llm.tokens import TokenUsage
from tuiagent.report.sessions import AgentRow

# Where a request's input came from, in the order the API reads it (tools, system, messages).
SOURCES = ("tools", "system", "history", "tool_results", "new_message")
SOURCE_LABELS = {
    "tools": "tool definitions",
    "system": "system prompt",
    "history": "conversation history",
    "tool_results": "tool results",
    "new_message": "new message",
}


@dataclass
class SourceShare:
    """One source's part of a turn's input: tokens (scaled to the billed total) and dollars."""

    tokens: int = 0
    cost: Decimal = ZERO
    cost_cached: Decimal = ZERO  # the part of `cost` read from the cache


@dataclass
class TurnRow:
    run_id: str
    turn: int
    purpose: str
    model: str
    tier: str
    simulated: bool
    usage: TokenUsage
    cost: Decimal
    breakdown: dict[str, Decimal]
    stop_reason: str | None
    tool_calls: list[str]
    record: dict[str, Any]
    sources: dict[str, SourceShare] | None = None
    largest_tool_result: tuple[str, int] | None = None  # (what it was, billed tokens)
    # price kind (cache_read, cache_write, input) -> source -> dollars, when the transcript says
    band_sources: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    cause: str = ""
    cause_kind: str = ""
    cause_cost: Decimal = ZERO
    agent: str = "main"  # "a1", "a2", ... for a sub-agent's turn

    @property
    def cache_miss_reason(self) -> str | None:
        reason = self.record.get("cache_miss_reason")
        return reason if isinstance(reason, str) and reason else None

    def as_json(self) -> dict[str, Any]:
        u = self.usage
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "agent": self.agent,
            "turn": self.turn,
            "purpose": self.purpose,
            "model": self.model,
            "tier": self.tier,
            "simulated": self.simulated,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_input_tokens": u.cache_read_input_tokens,
            "cache_creation_input_tokens": u.cache_creation_input_tokens,
            "total_input_tokens": u.total_input_tokens,
            "cost_usd": usd(self.cost),
            "stop_reason": self.stop_reason,
            "tool_calls": self.tool_calls,
            "cause": self.cause,
            "cause_kind": self.cause_kind,
            "cause_cost_usd": usd(self.cause_cost),
            "cache_miss_reason": self.cache_miss_reason,
            "input_sources": None,
        }
        if self.sources is not None:
            out["input_sources"] = {
                k: {"tokens": s.tokens, "cost_usd": usd(s.cost)} for k, s in self.sources.items()
            }
        return out


@dataclass
class RunRow:
    run_id: str
    path: Path
    started_at: str
    ended_at: str | None
    provider: str
    simulated: bool
    turns: int
    failed_attempts: int
    usage: TokenUsage
    cost: Decimal
    saved_by_cache: Decimal | None
    compression_saved_tokens: int | None
    ended: str  # completed | halted (max_cost) | error | live | cut off (no run_end)
    unreadable_lines: int
    replay_of: dict[str, Any] | None
    call_records: list[dict[str, Any]] = field(default_factory=list)  # turns and attempts
    # Calls held and (maybe) sent when the run died, never settled: counted in `cost` at
    # their worst case.
    died_in_flight: Decimal = Decimal(0)
    died_in_flight_calls: int = 0

    @property
    def cache_hit_rate(self) -> float | None:
        total = self.usage.total_input_tokens
        return self.usage.cache_read_input_tokens / total if total else None

    def as_json(self) -> dict[str, Any]:
        u = self.usage
        rate = self.cache_hit_rate
        return {
            "run_id": self.run_id,
            "started_at": self.started_at or None,
            "ended_at": self.ended_at,
            "provider": self.provider,
            "simulated": self.simulated,
            "turns": self.turns,
            "failed_attempts": self.failed_attempts,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_input_tokens": u.cache_read_input_tokens,
            "cache_creation_input_tokens": u.cache_creation_input_tokens,
            "cost_usd": usd(self.cost),
            "cache_hit_rate": None if rate is None else round(rate, 4),
            "saved_by_cache_usd": None if self.saved_by_cache is None else usd(self.saved_by_cache),
            "compression_saved_tokens": self.compression_saved_tokens,
            "ended": self.ended,
            "unreadable_lines": self.unreadable_lines,
            "in_flight_when_the_run_died_usd": usd(self.died_in_flight),
            "in_flight_when_the_run_died_calls": self.died_in_flight_calls,
            "replay_of": self.replay_of,
            "log": str(self.path),
        }


@dataclass
class GroupRow:
    """Cost of one model, tier or agent, over every call (failed attempts included)."""

    name: str
    calls: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost: Decimal = ZERO
    # A sub-agent's row (by agent) is one sub-agent of one run; "main" is every run's.
    run_id: str | None = None
    task: str | None = None

    def as_json(self, key: str, total: Decimal) -> dict[str, Any]:
        extra = {} if key != "agent" else {"run_id": self.run_id, "task": self.task}
        return {
            key: self.name,
            **extra,
            "calls": self.calls,
            "total_input_tokens": self.usage.total_input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cost_usd": usd(self.cost),
            "share": round(float(self.cost / total), 4) if total else None,
        }


@dataclass
class SourceRow:
    source: str
    turns: int
    tokens: int
    cost: Decimal

    def as_json(self, total: Decimal) -> dict[str, Any]:
        return {
            "source": self.source,
            "label": SOURCE_LABELS[self.source],
            "turns": self.turns,
            "tokens": self.tokens,
            "tokens_per_turn": round(self.tokens / self.turns) if self.turns else 0,
            "cost_usd": usd(self.cost),
            "share": round(float(self.cost / total), 4) if total else None,
        }


@dataclass
class McpRow:
    """One MCP server in one run: its tools, what their definitions took per call, and
    what they cost in all."""

    run_id: str
    server: str
    transport: str
    status: str  # started | failed | stopped (the last state seen)
    tools: int
    calls: int = 0  # agent calls that sent its definitions
    tokens: int = 0  # over those calls
    cost: Decimal = ZERO

    def as_json(self) -> dict[str, Any]:
        per_call = self.cost / self.calls if self.calls else ZERO
        return {
            "run_id": self.run_id,
            "server": self.server,
            "transport": self.transport,
            "status": self.status,
            "tools": self.tools,
            "calls": self.calls,
            "tokens_per_call": self.tokens // self.calls if self.calls else 0,
            "cost_per_call_usd": usd(per_call),
            "cost_usd": usd(self.cost),
        }


@dataclass
class Report:
    log_dir: Path
    runs: list[RunRow]
    turns: list[TurnRow]
    by_model: list[GroupRow]
    by_tier: list[GroupRow]
    top: int
    warnings: list[str] = field(default_factory=list)
    hidden: int = 0  # runs with no model call, left out (all_runs shows them)
    by_agent: list[GroupRow] = field(default_factory=list)
    mcp: list[McpRow] = field(default_factory=list)
    sessions: list[AgentRow] = field(default_factory=list)  # proxied calls, by session

    def costliest_subagent(self) -> GroupRow | None:
        subs = [g for g in self.by_agent if g.name != "main"]
        return max(subs, key=lambda g: g.cost) if subs else None

    @property
    def unreadable_lines(self) -> int:
        return sum(r.unreadable_lines for r in self.runs)

    @property
    def total_cost(self) -> Decimal:
        return sum((r.cost for r in self.runs), ZERO)

    def top_turns(self) -> list[TurnRow]:
        return sorted(self.turns, key=lambda t: t.cost, reverse=True)[: self.top]

    def input_sources(self) -> list[SourceRow]:
        split = [t for t in self.turns if t.sources is not None]
        rows = []
        for key in SOURCES:
            shares = [t.sources[key] for t in split if t.sources is not None]
            rows.append(
                SourceRow(
                    key,
                    len(split),
                    sum(s.tokens for s in shares),
                    sum((s.cost for s in shares), ZERO),
                )
            )
        return rows

    @property
    def turns_without_transcript(self) -> int:
        return sum(1 for t in self.turns if t.sources is None)

    def to_json(self) -> dict[str, Any]:
        total = self.total_cost
        sources = self.input_sources()
        source_total = sum((s.cost for s in sources), ZERO)
        costliest = self.costliest_subagent()
        return {
            "log_dir": str(self.log_dir),
            "runs": [r.as_json() for r in self.runs],
            "top_turns": [t.as_json() for t in self.top_turns()],
            "by_model": [g.as_json("model", total) for g in self.by_model],
            "by_tier": [g.as_json("tier", total) for g in self.by_tier],
            "by_agent": [g.as_json("agent", total) for g in self.by_agent],
            "costliest_subagent": None if costliest is None else costliest.as_json("agent", total),
            "input_sources": [s.as_json(source_total) for s in sources],
            "mcp_servers": [m.as_json() for m in self.mcp],
            "proxy_sessions": [r.as_json() for r in self.sessions],
            "total_cost_usd": usd(total),
            "unreadable_lines": self.unreadable_lines,
            "turns_without_transcript": self.turns_without_transcript,
            "warnings": self.warnings,
            "hidden_runs_without_calls": self.hidden,
        }
