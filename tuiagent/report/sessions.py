"""Proxied calls grouped as their users think of them: by client, then the coding agent's
session, then its agents (each sub-agent under its parent), with what each spent, its cache
hit rate and why its last call cost what it did."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tuiagent.cost.pricing import ZERO, usd
from tuiagent.ledger import BudgetLine
from tuiagent.ledger.scopes import clean_value
from tuiagent.llm.tokens import TokenUsage
from tuiagent.report.misses import MISS_WORDS
from tuiagent.runs.records import ProxyAttempt, ProxyTurn, Record, RefusedCall

MAIN = "main"  # the session's own agent (its calls name no agent id)


def miss_words(reason: str | None) -> str:
    return MISS_WORDS.get(reason or "", reason or "")


def call_cause(record: Record) -> str:
    """Why a proxied call cost what it did, in a few words ("" when nothing stands out):
    refused, failed, a cache miss and its cause, max_tokens lowered (to fit), a wait for the
    calls in flight."""
    if isinstance(record, RefusedCall):
        why = record.error.removeprefix("tuiagent proxy: ").removeprefix("refused before sending: ")
        return "refused: " + why
    if not isinstance(record, ProxyTurn):
        return ""
    parts = []
    if isinstance(record, ProxyAttempt):
        parts.append(f"failed ({record.error_type or 'error'})")
    if record.cache_miss_reason:
        parts.append(f"cache miss: {miss_words(record.cache_miss_reason)}")
    if record.lowered:
        parts.append(
            f"max_tokens lowered {record.max_tokens_requested:,}->{record.max_tokens:,} "
            f"({record.lowered})"
        )
    if record.waited_s:
        parts.append(f"waited {record.waited_s:.1f}s for calls in flight")
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


class SessionBook:
    """Proxied calls grouped as they come (the proxy's dashboard and its total on exit), or
    all at once (`report`): one row per agent of each session, kept up to date."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], AgentRow] = {}

    def add(self, run_id: str, rec: Record) -> None:
        """Count one record (a call or a refusal; anything else is left out)."""
        if not isinstance(rec, ProxyTurn | RefusedCall):
            return
        session, agent = rec.session or "", rec.agent_id or MAIN
        parent, client = rec.parent_agent_id, rec.client
        key = (client if not session else "", session, agent)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = AgentRow(client, session, agent, parent)
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

    def rows(self) -> list[AgentRow]:
        """Each session's main agent first, then its agents, each sub-agent under its
        parent; sessions by cost, most first."""
        return _as_tree(list(self._rows.values()))

    def tree(self) -> list[GroupLine]:
        """The rows as the dashboard shows them: each client (its sessions' totals), under
        it each session (its agents' totals), under that its agents (when it has
        sub-agents); clients and sessions by cost, most first."""
        by_client: dict[str, dict[tuple[str, str], list[AgentRow]]] = {}
        for row in self.rows():  # in tree order: a session's rows stay together, in order
            of_client = by_client.setdefault(row.client, {})
            of_client.setdefault(_session_of(row), []).append(row)
        lines: list[GroupLine] = []
        for client, sessions in sorted(
            by_client.items(), key=lambda kv: -sum(r.cost for rs in kv[1].values() for r in rs)
        ):
            lines.append(
                GroupLine(
                    "client",
                    client or "(unnamed client)",
                    0,
                    _total([r for rs in sessions.values() for r in rs], client, "", ""),
                )
            )
            for (_, session), members in sessions.items():
                total = _total(members, client, session, "")
                lines.append(GroupLine("session", session or "(none named)", 1, total))
                if [r.agent for r in members] != [MAIN]:  # (its own agent alone: no more)
                    lines.extend(GroupLine("agent", r.agent, 2 + r.depth, r) for r in members)
        return lines


@dataclass(frozen=True)
class GroupLine:
    """A line of the dashboard's tree: a client, a session or an agent, at its depth."""

    kind: str  # "client", "session" or "agent"
    name: str
    depth: int
    row: AgentRow  # the group's own numbers (a client's, a session's: its members' sums)


def _total(rows: list[AgentRow], client: str, session: str, agent: str) -> AgentRow:
    """The sums of some rows, its last call the latest of theirs."""
    total = AgentRow(client, session, agent)
    for r in rows:
        total.calls += r.calls
        total.refused += r.refused
        total.failed += r.failed
        total.usage = total.usage + r.usage
        total.cost += r.cost
        total.runs |= r.runs
        if r.last_turn >= total.last_turn:
            total.last_turn, total.last_cost, total.last_cause = (
                r.last_turn,
                r.last_cost,
                r.last_cause,
            )
    return total


def group_sessions(calls: Iterable[tuple[str, Record]]) -> list[AgentRow]:
    """The rows of proxied calls ((run id, record) in order): each session's main agent
    first, then its agents, each sub-agent under its parent; sessions by cost, most first."""
    book = SessionBook()
    for run_id, rec in calls:
        book.add(run_id, rec)
    return book.rows()


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


def group_budget(lines: Iterable[BudgetLine], group: GroupLine) -> BudgetLine | None:
    """The ledger's budget of this client, session or agent (a `[[budgets]]` of that
    scope), if one is in use: the tightest, by what is left."""
    raw = {"client": group.row.client, "session": group.row.session}.get(
        group.kind, group.row.agent
    )
    value = clean_value(raw)  # as the ledger keeps it (the records keep a client's raw)
    mine = [ln for ln in lines if ln.spec.scope == group.kind and ln.value == value]
    return min(mine, key=lambda ln: ln.left, default=None)
