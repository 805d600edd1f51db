"""Proxied calls grouped as their users think of them: by client, then the coding agent's
session, then its agents (each sub-agent under its parent), with what each spent, its cache
hit rate and why its last call cost what it did."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tuiagent.cost.pricing import ZERO, usd
from tuiagent.llm.usage import TokenUsage
from tuiagent.report.misses import MISS_WORDS
from tuiagent.runs.records import ProxyAttempt, ProxyTurn, Record, RefusedCall

MAIN = "main"  # the session's own agent (its calls name no agent id)


def miss_words(reason: str | None) -> str:
    return MISS_WORDS.get(reason or "", reason or "")


def call_cause(record: Record) -> str:
    """Why a proxied call cost what it did, in a few words ("" when nothing stands out):
    refused, failed, a cache miss and its cause, max_tokens lowered to fit."""
    if isinstance(record, RefusedCall):
        return "refused: " + record.error.removeprefix("tuiagent proxy: ")
    if not isinstance(record, ProxyTurn):
        return ""
    parts = []
    if isinstance(record, ProxyAttempt):
        parts.append(f"failed ({record.error_type or 'error'})")
    if record.cache_miss_reason:
        parts.append(f"cache miss: {miss_words(record.cache_miss_reason)}")
    if record.lowered:
        parts.append(
            f"max_tokens lowered to fit ({record.lowered}): "
            f"{record.max_tokens:,} of {record.max_tokens_requested:,}"
        )
    return "; ".join(parts)


@dataclass
class AgentRow:
    """One agent of one session (MAIN: the session's own calls)."""

    client: str
    session: str  # "" when the client names none
    agent: str
    parent: str | None = None
    depth: int = 0  # 0 the session's main agent; 1 its sub-agents; 2 theirs...
    calls: int = 0
    refused: int = 0
    failed: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost: Decimal = ZERO
    last_turn: int = 0
    last_cost: Decimal = ZERO
    last_cause: str = ""
    runs: set[str] = field(default_factory=set)

    @property
    def cache_hit_rate(self) -> float | None:
        total = self.usage.total_input_tokens
        return self.usage.cache_read_input_tokens / total if total else None

    def as_json(self) -> dict[str, Any]:
        rate = self.cache_hit_rate
        return {
            "client": self.client,
            "session": self.session or None,
            "agent": self.agent,
            "parent_agent": self.parent,
            "calls": self.calls,
            "refused": self.refused,
            "failed": self.failed,
            "cost_usd": usd(self.cost),
            "total_input_tokens": self.usage.total_input_tokens,
            "cache_read_input_tokens": self.usage.cache_read_input_tokens,
            "cache_hit_rate": None if rate is None else round(rate, 4),
            "last_call": {"turn": self.last_turn, "cost_usd": usd(self.last_cost)},
            "last_cause": self.last_cause or None,
            "runs": sorted(self.runs),
        }


def group_sessions(calls: Iterable[tuple[str, Record]]) -> list[AgentRow]:
    """The rows of proxied calls ((run id, record) in order): each session's main agent
    first, then its agents, each sub-agent under its parent; sessions by cost, most first."""
    rows: dict[tuple[str, str, str], AgentRow] = {}
    for run_id, rec in calls:
        if not isinstance(rec, ProxyTurn | RefusedCall):
            continue
        session, agent = rec.session or "", rec.agent_id or MAIN
        parent, client = rec.parent_agent_id, rec.client
        key = (client if not session else "", session, agent)
        row = rows.get(key)
        if row is None:
            row = rows[key] = AgentRow(client, session, agent, parent)
        row.runs.add(run_id)
        row.calls += 1
        if isinstance(rec, RefusedCall):
            row.refused += 1
            row.last_turn, row.last_cost = rec.turn, ZERO
        else:
            row.failed += isinstance(rec, ProxyAttempt)
            row.usage = row.usage + rec.usage
            row.cost += rec.cost_usd
            row.last_turn, row.last_cost = rec.turn, rec.cost_usd
            row.parent = row.parent or parent
        row.last_cause = call_cause(rec)
    return _as_tree(list(rows.values()))


def _session_of(row: AgentRow) -> tuple[str, str]:
    return (row.client if not row.session else "", row.session)


def _as_tree(rows: list[AgentRow]) -> list[AgentRow]:
    """Each session's rows, sessions by cost: its main agent, then each agent under its
    parent (one whose parent made no call here, or whose parents loop, under the main)."""
    by_session: dict[tuple[str, str], list[AgentRow]] = {}
    for row in rows:
        by_session.setdefault(_session_of(row), []).append(row)
    out: list[AgentRow] = []
    for members in sorted(by_session.values(), key=lambda rs: -sum(r.cost for r in rs)):
        names = {r.agent for r in members}
        children: dict[str | None, list[AgentRow]] = {}
        for r in sorted(members, key=lambda r: -r.cost):
            if r.agent != MAIN:
                children.setdefault(r.parent if r.parent in names else None, []).append(r)
        main = [r for r in members if r.agent == MAIN]
        todo = [(r, 0) for r in main] + [(r, int(bool(main))) for r in children.get(None, [])]
        todo.reverse()
        seen: set[str] = set()
        while todo or len(seen) < len(members):
            if not todo:  # a cycle of parents: what is left hangs under the main agent
                todo = [(next(r for r in members if r.agent not in seen), 1)]
            row, depth = todo.pop()
            if row.agent in seen:
                continue
            seen.add(row.agent)
            row.depth = depth
            out.append(row)
            todo += [(c, depth + 1) for c in reversed(children.get(row.agent, []))]
    return out
