"""The embedded ledger: one SQLite file in the data dir, shared by every tuiagent process on
the machine. WAL, so readers never wait; each reserve and each settle is one short `BEGIN
IMMEDIATE` transaction (the one write lock), so two processes can never both take the last
dollar. `synchronous=NORMAL`: a commit survives the process being killed (WAL), not a power
cut, which also takes the calls in flight. `tuiagent statusline` reads a session's entries
by `entries_session` (a ledger made before it gets the index when next opened to write)."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuiagent.ledger.store import SCHEMA_VERSION, Dialect, LedgerError

BUSY_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS owners (
    id TEXT PRIMARY KEY, pid INTEGER, host TEXT, what TEXT,
    started_at REAL, lease_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    key TEXT NOT NULL, bucket TEXT NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0, held INTEGER NOT NULL DEFAULT 0, horizon INTEGER,
    PRIMARY KEY (key, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL, at REAL NOT NULL, settled_at REAL, state TEXT NOT NULL,
    amount INTEGER NOT NULL, actual INTEGER, label TEXT, run TEXT,
    simulated INTEGER NOT NULL DEFAULT 0,
    session TEXT, agent TEXT, key_id TEXT, user_name TEXT, client TEXT, model TEXT, tier TEXT,
    rows TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS entries_at ON entries (at);
CREATE INDEX IF NOT EXISTS entries_held ON entries (owner) WHERE state = 'held';
CREATE INDEX IF NOT EXISTS entries_session ON entries (session);
CREATE TABLE IF NOT EXISTS budgets (title TEXT PRIMARY KEY, spec TEXT NOT NULL, seen_at REAL);
"""


class SqliteDialect(Dialect):
    name = "sqlite"
    begin_write = "BEGIN IMMEDIATE"

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except FileExistsError:  # something that is not a directory is in the way
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        # Created with a mode of its own (the ledger names sessions and users). Only while
        # it does not exist: closing any descriptor of a file drops every POSIX lock the
        # process holds on it, the locks SQLite's other connections here rely on.
        if not self.path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def create(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            _check_version(
                conn.execute("SELECT value FROM ledger_meta WHERE name = 'schema'").fetchone()
            )
            conn.execute(
                "INSERT INTO ledger_meta (name, value) VALUES ('schema', ?) "
                "ON CONFLICT (name) DO NOTHING",
                (SCHEMA_VERSION,),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def insert_ids(self, cur: Any, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        ids = []
        for row in rows:
            cur.execute(sql, row)
            ids.append(int(cur.lastrowid))
        return ids

    def failure(self, exc: BaseException) -> LedgerError | None:
        if isinstance(exc, sqlite3.Error | OSError):
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return LedgerError(f"the ledger cannot be written ({self.path}: {detail})")
        return None


def _check_version(row: Any) -> None:
    if row is not None and row[0] != SCHEMA_VERSION:
        raise LedgerError(
            f"the ledger was written by another version of tuiagent (schema {row[0]}, "
            f"this one reads {SCHEMA_VERSION})"
        )
