"""The team ledger: PostgreSQL (psycopg 3), shared by N proxies and runs on N machines.

A reserve is one READ COMMITTED transaction that locks the counter rows of the budgets the
call falls under (`SELECT ... FOR UPDATE`, in one sorted order), checks them, raises them and
writes the hold. Row locks rather than SERIALIZABLE: every reserve that shares a budget
touches the same row (a team's day budget: all of them), so under SERIALIZABLE most of them
would fail and retry; with row locks they queue, each waits only for the commit before it,
and calls that share no budget never wait at all. A deadlock or serialization failure (a
new counter started by two processes at once) is tried again.

Every connection sets a lock timeout, so a ledger stuck behind a lock refuses the call
(one line) instead of holding it forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tuiagent.errors import UsageError
from tuiagent.ledger.store import SCHEMA_VERSION, Dialect, LedgerError

CONNECT_TIMEOUT_S = 5
LOCK_TIMEOUT = "10s"
SCHEMA_LOCK = 0x7475_6961  # pg_advisory_xact_lock: one process creates the tables

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS owners (
    id TEXT PRIMARY KEY, pid INTEGER, host TEXT, what TEXT,
    started_at DOUBLE PRECISION, lease_until DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    key TEXT NOT NULL, bucket TEXT NOT NULL,
    spent BIGINT NOT NULL DEFAULT 0, held BIGINT NOT NULL DEFAULT 0, horizon BIGINT,
    PRIMARY KEY (key, bucket));
CREATE TABLE IF NOT EXISTS entries (
    id BIGSERIAL PRIMARY KEY,
    owner TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, settled_at DOUBLE PRECISION,
    state TEXT NOT NULL, amount BIGINT NOT NULL, actual BIGINT, label TEXT, run TEXT,
    simulated INTEGER NOT NULL DEFAULT 0,
    session TEXT, agent TEXT, key_id TEXT, user_name TEXT, client TEXT, model TEXT, tier TEXT,
    rows TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS entries_at ON entries (at);
CREATE INDEX IF NOT EXISTS entries_held ON entries (owner) WHERE state = 'held';
CREATE TABLE IF NOT EXISTS budgets (
    title TEXT PRIMARY KEY, spec TEXT NOT NULL, seen_at DOUBLE PRECISION);
"""


def shown_url(url: str) -> str:
    """The URL without its password or query (which may hold one)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{parts.username}@" if parts.username else "") + host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PostgresDialect(Dialect):
    name = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise UsageError(
                "ledger_url is a PostgreSQL URL: install its driver with "
                "pip install 'tuiagent[postgres]'"
            ) from None
        self.psycopg = psycopg
        self.url = url
        self.shown = shown_url(url)
        self.retryable = (
            psycopg.errors.SerializationFailure,
            psycopg.errors.DeadlockDetected,
            psycopg.errors.UniqueViolation,  # two processes creating the tables at once
        )

    def connect(self) -> Any:
        return self.psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="tuiagent",
            options=f"-c lock_timeout={LOCK_TIMEOUT}",
        )

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def create(self, conn: Any) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM ledger_meta WHERE name = 'schema'").fetchone()
            if row is not None and row[0] != SCHEMA_VERSION:
                raise LedgerError(
                    f"the ledger was written by another version of tuiagent (schema {row[0]}, "
                    f"this one reads {SCHEMA_VERSION})"
                )
            conn.execute(
                "INSERT INTO ledger_meta (name, value) VALUES ('schema', %s) "
                "ON CONFLICT (name) DO NOTHING",
                (SCHEMA_VERSION,),
            )

    def insert_ids(self, cur: Any, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        """One statement for all the rows: ids come from a sequence, in the order the rows
        are inserted, so the sorted ids are the rows' in order."""
        head, _, one = sql.partition(" VALUES ")
        cur.execute(
            f"{head} VALUES {', '.join([one] * len(rows))} RETURNING id",
            [x for row in rows for x in row],
        )
        return sorted(int(r[0]) for r in cur.fetchall())

    def lazy_commit(self, cur: Any) -> None:
        """A transaction that only settles may be lost if the database crashes: its holds
        then stay held, and expire, at their worst case, never less than the bill."""
        cur.execute("SET LOCAL synchronous_commit = off")

    def failure(self, exc: BaseException) -> LedgerError | None:
        if isinstance(exc, self.psycopg.Error):
            if isinstance(exc, self.psycopg.errors.LockNotAvailable):
                detail = f"a lock was not granted in {LOCK_TIMEOUT}"
            else:
                detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return LedgerError(f"the ledger cannot be reached ({self.shown}: {detail})")
        return None

    def broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)
