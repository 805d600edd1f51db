"""Spending from the ledger grouped by session, sub-agent, key, day or month (UTC): every
process's calls, not one run's log. An open hold counts as held; an expired one (its process
died) as spent at its worst case."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from tuiagent.ledger import Entry

BY = ("session", "agent", "key", "day", "month")


@dataclass
class Group:
    name: str  # the session, agent, key (hash) or day; "" for calls with none
    simulated: bool
    calls: int = 0
    spent: Decimal = Decimal(0)
    held: Decimal = Decimal(0)
    first: float = 0.0
    last: float = 0.0


def _name(entry: Entry, by: str) -> str:
    if by in ("day", "month"):
        return datetime.fromtimestamp(entry.at, UTC).strftime(
            "%Y-%m-%d" if by == "day" else "%Y-%m"
        )
    return getattr(entry.scopes, by) or ""


def group_entries(entries: Iterable[Entry], by: str) -> list[Group]:
    """One group per value (and simulated or not); days and months in order, the rest by
    what they spent, most first."""
    groups: dict[tuple[str, bool], Group] = {}
    for e in entries:
        key = (_name(e, by), e.scopes.simulated)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(key[0], key[1], first=e.at)
        g.calls += 1
        if e.state == "held":
            g.held += e.amount
        else:
            g.spent += e.cost
        g.first, g.last = min(g.first, e.at), max(g.last, e.at)
    found = list(groups.values())
    if by in ("day", "month"):
        return sorted(found, key=lambda g: (g.name, g.simulated))
    return sorted(found, key=lambda g: (-(g.spent + g.held), g.name))
