"""The ledger: every hold and settlement of every tuiagent process (the app, `run`, sub-agents,
`replay`, the proxy), each tagged with its scopes, and the budgets checked against it.

SQLite in the data dir by default (every process on the machine shares it); a team sets
`ledger_url = "postgresql://..."` and N proxies on N machines share that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tuiagent.ledger.scopes import SCOPES, BudgetSpec, Scopes, key_id, proxy_scopes
from tuiagent.ledger.store import (
    DEFAULT_LEASE_S,
    BudgetLine,
    Entry,
    Ledger,
    LedgerError,
    LedgerHold,
    Refused,
)
from tuiagent.ledger.windows import Window

LEDGER_FILE = "ledger.sqlite3"

__all__ = [
    "DEFAULT_LEASE_S",
    "SCOPES",
    "BudgetLine",
    "BudgetSpec",
    "Entry",
    "Ledger",
    "LedgerError",
    "LedgerHold",
    "Refused",
    "Scopes",
    "Window",
    "check_url",
    "key_id",
    "open_ledger",
    "proxy_scopes",
    "shown",
]


def shown(url: str, data_dir: Path) -> str:
    """The ledger as messages name it (a PostgreSQL URL without its password)."""
    if url.startswith(("postgresql://", "postgres://")):
        from tuiagent.ledger.postgres import shown_url

        return shown_url(url)
    return str(sqlite_path(url, data_dir))


def sqlite_path(url: str, data_dir: Path) -> Path:
    """`""`: the data dir's ledger; `sqlite:////abs/path`, `sqlite:///relative/path`."""
    if not url:
        return data_dir / LEDGER_FILE
    return Path(url.removeprefix("sqlite:///")).expanduser()


def check_url(url: str) -> str:
    """`""` (SQLite in the data dir), `sqlite:///PATH` or `postgresql://...`; else
    ValueError saying so."""
    if url == "" or url.startswith(("postgresql://", "postgres://")):
        return url
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return url
    raise ValueError(
        '"" (SQLite in the data dir), "sqlite:////ABSOLUTE/PATH" or "postgresql://..."'
    )


def open_ledger(
    url: str,
    data_dir: Path,
    *,
    clock: Callable[[], float] = time.time,
    lease_s: float = DEFAULT_LEASE_S,
    what: str = "tuiagent",
    heartbeat: bool = True,
) -> Ledger:
    """Open (and if need be create) the ledger `url` names. LedgerError, one line, when it
    cannot be reached or written; UsageError when its driver is not installed."""
    check_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from tuiagent.ledger.postgres import PostgresDialect

        pg = PostgresDialect(url)
        return Ledger(pg, pg.shown, clock=clock, lease_s=lease_s, what=what, heartbeat=heartbeat)
    from tuiagent.ledger.sqlite import SqliteDialect

    path = sqlite_path(url, data_dir)
    return Ledger(
        SqliteDialect(path), str(path), clock=clock, lease_s=lease_s, what=what, heartbeat=heartbeat
    )
