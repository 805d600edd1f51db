"""`tuiagent budgets` (each budget of the config with what is spent, held and left, and when it
resets) and `tuiagent report --by` (spending from the ledger by session, agent, key, day or
month): the command bodies."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from tuiagent.cli.report import console_for
from tuiagent.config import Settings
from tuiagent.cost.display import cap as show_cap
from tuiagent.cost.display import money, resets
from tuiagent.cost.pricing import usd
from tuiagent.ledger import BudgetLine, Ledger, open_ledger
from tuiagent.ledger.store import in_use
from tuiagent.paths import data_dir
from tuiagent.report.by import BY, group_entries

SHOWN_PER_BUDGET = 20  # values of a scoped budget listed without --all


@contextmanager
def _ledger(settings: Settings) -> Iterator[Ledger]:
    ledger = open_ledger(
        settings.ledger.url,
        data_dir(),
        lease_s=settings.ledger.lease_s,
        what="tuiagent budgets",
        heartbeat=False,
    )
    try:
        ledger.sweep()  # the holds of dead processes count as spent (worst case), not held
        yield ledger
    finally:
        ledger.close()


def _console() -> Console:
    return console_for(200)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def line_json(line: BudgetLine) -> dict[str, Any]:
    w = line.spec.window
    return {
        "budget": line.title,
        "scope": line.spec.scope,
        "value": line.value if line.spec.scope != "global" else None,
        "window": w.label,
        "timezone": w.tz if w.kind in ("day", "week", "month") else None,
        "simulated": line.simulated,
        "cap_usd": usd(line.cap),
        "spent_usd": usd(line.spent),
        "held_usd": usd(line.held),
        "left_usd": usd(line.left),
        "resets_at": _iso(line.resets_at),
    }


def run_budgets(settings: Settings, *, as_json: bool, show_all: bool) -> int:
    with _ledger(settings) as ledger:
        # The config's budgets, and those other processes on this ledger hold against.
        specs = list(settings.ledger.budgets)
        titles = {s.title for s in specs}
        specs += [s for s in ledger.registered() if s.title not in titles]
        lines, more = in_use(ledger, specs, limit=None if show_all else SHOWN_PER_BUDGET)
        now = ledger.clock()
        where = ledger.shown
    if as_json:
        json.dump({"ledger": where, "budgets": [line_json(x) for x in lines]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not specs:
        print(f"no budgets: add [[budgets]] to the config, or --budget (the ledger is {where})")
        return 0
    table = Table(title=f"budgets (ledger {where})", title_justify="left")
    for col, justify in (
        ("budget", "left"),
        ("of", "left"),
        ("spent", "right"),
        ("held", "right"),
        ("left", "right"),
        ("cap", "right"),
        ("resets", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for line in lines:
        of = "" if line.spec.scope == "global" else f"{line.spec.scope} {line.value}"
        table.add_row(
            line.title + (" (simulated)" if line.simulated else ""),
            of,
            money(line.spent),
            money(line.held),
            money(line.left),
            show_cap(line.cap),
            resets(line, now),
        )
    _console().print(table)
    if more:
        print(f"... and {more} more in use (--all lists them)")
    return 0


def run_report_by(settings: Settings, by: str, *, output: str) -> int:
    """Spending from the ledger, grouped `by` (session, agent, key, day, month)."""
    if by not in BY:
        raise ValueError(by)
    with _ledger(settings) as ledger:
        groups = group_entries(ledger.entries(), by)
        where = ledger.shown
    if output == "json":
        rows = [
            {
                by: g.name,
                "calls": g.calls,
                "spent_usd": usd(g.spent),
                "held_usd": usd(g.held),
                "simulated": g.simulated,
                "first_at": _iso(g.first),
                "last_at": _iso(g.last),
            }
            for g in groups
        ]
        json.dump({"ledger": where, "by": by, "rows": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    table = Table(title=f"spending by {by} (ledger {where})", title_justify="left")
    for col in (by, "calls", "spent", "held now", "first", "last"):
        table.add_column(col, justify="right" if col in ("calls", "spent", "held now") else "left")
    total = Decimal(0)
    for g in groups:
        total += g.spent
        table.add_row(
            (g.name or "-") + (" (simulated)" if g.simulated else ""),
            str(g.calls),
            money(g.spent),
            money(g.held),
            _short(g.first),
            _short(g.last),
        )
    _console().print(table)
    print(f"total spent {money(total)} in {sum(g.calls for g in groups)} calls")
    return 0


def _short(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")
