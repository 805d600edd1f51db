"""The ledger's books, in SQL that SQLite and PostgreSQL both run.

Three tables:
- `entries`: every hold, one row each, tagged with the call's scopes; a hold is `held` until
  it is `settled` (what the call billed), `released` (nothing was billed) or `expired` (its
  process stopped renewing its lease: kept at its worst case).
- `usage`: one counter per budget scope value and window bucket (`session=abc`, `day@...`):
  what is spent there and what is held. A reserve checks and raises the counters of every
  budget the call falls under in one transaction; a settle moves its hold from held to
  spent. A counter that does not exist yet starts from the entries already in its window.
- `owners`: each process's lease. A process renews it while it lives; any process finds the
  holds of one whose lease ran out and settles them at their worst case.

Money is kept in whole picodollars (10^-12 USD, rounded up), exact in both databases.

Every write goes through one writer thread per process, which takes what has queued up
(reserves, settles, expiries) and writes it in one transaction: under load a batch of
calls costs one commit, and the rows every call shares (a team's day budget) are locked
once per batch rather than once per call. A reserve waits for its batch's commit (the hold
is written before the request is sent); a settle does not wait: until it is written the hold
counts at its worst case, which is never less than the bill.

The dialects differ in how a transaction takes its locks: SQLite takes the database's one
write lock (`BEGIN IMMEDIATE`), so writers across processes go one at a time; PostgreSQL
locks only the rows a batch touches (`SELECT ... FOR UPDATE`), always in one order
(entries by id, then counters, then minute counters, each sorted), so two transactions never
wait on each other in a circle, and calls that share no budget never wait at all.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from tuiagent.errors import TuiagentError
from tuiagent.ledger.scopes import BudgetSpec, Scopes
from tuiagent.ledger.windows import first_minute, minute_bucket, minute_of

PICO = Decimal(10) ** 12
SCHEMA_VERSION = "1"
DEFAULT_LEASE_S = 30.0
ANSWER_TIMEOUT_S = 60.0  # a reserve that the database has not answered by then is refused
MAX_BATCH = 256
SETTLE_LINGER_S = 0.005  # settles alone wait this long for a reserve to be written with
RESERVE_LINGER_S = 0.0005  # under load, a reserve waits this long for others to join it
ROLLING = "rolling"  # the bucket of a rolling budget's anchor row (its lock, its horizon)
MINUTES_END = "m:999999999999"

# The entries' column per scope (`user` and `key` are words SQL keeps for itself).
COLUMNS = {
    "session": "session",
    "agent": "agent",
    "key": "key_id",
    "user": "user_name",
    "client": "client",
    "model": "model",
    "tier": "tier",
}

Row = tuple[str, str]  # a counter: (key, bucket)


class LedgerError(TuiagentError):
    """The ledger cannot be reached or written: nothing is sent. One line says why."""


def to_pico(amount: Decimal) -> int:
    return int((amount * PICO).to_integral_value(rounding=ROUND_CEILING))


def from_pico(n: int | None) -> Decimal:
    return Decimal(n or 0) / PICO


def _is_minute(row: Row) -> bool:
    return row[1].startswith("m:")


@dataclass(frozen=True)
class Check:
    """One budget a call falls under, at the time of the call."""

    spec: BudgetSpec
    value: str  # the call's value of the budget's scope ("" for global)
    key: str  # the counter: scope=value (sim: first for simulated calls)
    bucket: str  # the window's bucket; for a rolling window the current minute
    start: float | None  # the window's start (epoch s; None: from the beginning)
    end: float | None  # its end (None: open)
    simulated: bool

    @property
    def cap(self) -> int:
        return to_pico(self.spec.max_cost_usd)

    @property
    def rolling(self) -> bool:
        return self.spec.window.rolling

    @property
    def lock_row(self) -> Row:
        """The row a reserve locks for this budget: its counter, or a rolling one's anchor."""
        return (self.key, ROLLING if self.rolling else self.bucket)


@dataclass(frozen=True)
class BudgetLine:
    """One budget as it stands: what a gauge, a refusal and `tuiagent budgets` show."""

    spec: BudgetSpec
    value: str
    cap: Decimal
    spent: Decimal
    held: Decimal
    resets_at: float | None  # when a calendar window starts over; None: run or rolling
    simulated: bool = False

    @property
    def left(self) -> Decimal:
        return max(self.cap - self.spent - self.held, Decimal(0))

    @property
    def title(self) -> str:
        return self.spec.title


@dataclass(frozen=True)
class LedgerHold:
    """A hold written to the ledger: its id, and the budgets it counts in as they stand."""

    id: int
    amount: Decimal
    lines: tuple[BudgetLine, ...]


@dataclass(frozen=True)
class Refused:
    """A hold the ledger did not take: the budget it did not fit, as it stood."""

    line: BudgetLine
    amount: Decimal


@dataclass(frozen=True)
class Entry:
    """One hold as the ledger keeps it (for reports)."""

    id: int
    at: float
    state: str
    amount: Decimal
    actual: Decimal | None
    label: str
    scopes: Scopes

    @property
    def cost(self) -> Decimal:
        """What it counts as spent: its bill; an open or expired hold its worst case."""
        if self.state == "held":
            return self.amount
        if self.state == "expired":
            return max(self.amount, self.actual or Decimal(0))
        return self.actual or Decimal(0)


def _counted(state: str, amount: int, actual: int | None) -> int:
    """An entry as a counter counts it when the counter starts from the entries: an open
    hold at its worst case (its settle will not reach this counter)."""
    if state == "released":
        return 0
    if state == "settled":
        return actual or 0
    return max(amount, actual or 0)


@dataclass
class _Reserve:
    pico: int
    checks: Sequence[Check]
    scopes: Scopes
    label: str
    at: float
    future: concurrent.futures.Future[LedgerHold | Refused] = field(
        default_factory=concurrent.futures.Future
    )


@dataclass
class _Close:
    """A settle (state settled, `pico` None: released) or an expiry (state expired)."""

    entry_id: int
    pico: int | None
    state: str
    at: float


@dataclass
class _Barrier:
    """Answered once everything queued before it has been through the writer."""

    future: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


Op = _Reserve | _Close | _Barrier


class _Stale(Exception):
    """A connection found broken: the operation is tried once more on a new one."""

    def __init__(self, failure: LedgerError) -> None:
        self.failure = failure


class _Rollback(Exception):
    """Ends a write transaction without writing anything; `_write` returns `result`."""

    def __init__(self, result: Any) -> None:
        self.result = result


class Dialect:
    """What differs between the databases. The SQL here uses `?` placeholders."""

    name = ""
    begin_write = "BEGIN"
    for_update = ""
    retryable: tuple[type[BaseException], ...] = ()

    def connect(self) -> Any:
        raise NotImplementedError

    def create(self, conn: Any) -> None:
        raise NotImplementedError

    def sql(self, text: str) -> str:
        return text

    def insert_ids(self, cur: Any, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Insert `rows`; their ids, in order."""
        raise NotImplementedError

    def lazy_commit(self, cur: Any) -> None:
        """This transaction may be lost in a crash of the database (it only settles)."""

    def failure(self, exc: BaseException) -> LedgerError | None:
        """The one line for a database error, or None if it is not the database's."""
        raise NotImplementedError

    def broken(self, conn: Any) -> bool:
        return False


class Ledger:
    """The holds and settlements of every tuiagent process that opens the same ledger.

    Thread-safe. One writer thread writes everything (see above) and renews this process's
    lease; reads run on the caller's thread, each thread with its own connection. `clock`
    is wall time (epoch seconds), injectable.
    """

    def __init__(
        self,
        dialect: Dialect,
        shown: str,
        *,
        clock: Callable[[], float] = time.time,
        lease_s: float = DEFAULT_LEASE_S,
        what: str = "tuiagent",
        heartbeat: bool = True,
    ) -> None:
        self.dialect = dialect
        self.shown = shown  # the ledger as messages name it (never a password)
        self.clock = clock
        self.lease_s = lease_s
        self.what = what
        self.heartbeat = heartbeat  # renew the lease and sweep on a timer (tests: by hand)
        self.owner = uuid.uuid4().hex
        self._local = threading.local()
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._pending: list[_Close] = []  # settles the database refused: written next batch
        self._known: set[Row] = set()  # counters known to exist (none is ever deleted)
        self._last_reserves = 0  # reserves in the last batch: more than one, calls are busy
        self._lease_until = 0.0
        self._next_beat = 0.0
        self._writer: threading.Thread | None = None
        self._closed = False
        with self._guard():
            dialect.create(self._conn())
        self._write(self._renew)

    # --- connections and transactions -------------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.dialect.connect()
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            _quietly(conn.close)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Database errors as one line (LedgerError); a broken connection is dropped."""
        try:
            yield
        except (LedgerError, _Stale):
            raise
        except Exception as exc:
            failure = self.dialect.failure(exc)
            if failure is None:
                raise
            conn = getattr(self._local, "conn", None)
            if conn is not None and self.dialect.broken(conn):
                self._drop()
                if getattr(self._local, "fresh", False) is False:
                    raise _Stale(failure) from None
            raise failure from None

    def _once_more_if_stale(self, work: Callable[[], Any]) -> Any:
        """`work()`; once more on a new connection if the one it used had gone stale (the
        server restarted, an idle connection cut): only a second failure is the ledger's.
        (A write whose commit was cut may then be written twice: its first copy is a hold
        never settled, which counts at worst case: more, never less.)"""
        try:
            return work()
        except _Stale:
            self._local.fresh = True
            try:
                return work()
            except _Stale as again:
                raise again.failure from None
            finally:
                self._local.fresh = False

    def _write(self, work: Callable[[Any], Any]) -> Any:
        """Run `work(cursor)` in one write transaction; again when PostgreSQL chose it to
        break a deadlock or a serialization conflict."""
        return self._once_more_if_stale(lambda: self._write_once(work))

    def _write_once(self, work: Callable[[Any], Any]) -> Any:
        attempts = 8
        for attempt in range(attempts):
            with self._guard():
                cur = self._conn().cursor()
                try:
                    cur.execute(self.dialect.begin_write)
                    result = work(cur)
                    cur.execute("COMMIT")
                    return result
                except _Rollback as undo:
                    _quietly(cur.execute, "ROLLBACK")
                    return undo.result
                except self.dialect.retryable:
                    _quietly(cur.execute, "ROLLBACK")
                    if attempt == attempts - 1:
                        raise
                    time.sleep(0.001 * (attempt + 1))
                except BaseException:
                    _quietly(cur.execute, "ROLLBACK")
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, work: Callable[[Any], Any]) -> Any:
        def once() -> Any:
            with self._guard():
                return work(self._conn().cursor())

        return self._once_more_if_stale(once)

    def _x(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self.dialect.sql(sql), tuple(params))
        return cur

    # --- the writer -----------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._writer is None:
            with self._lock:
                if self._writer is None and not self._closed:
                    self._writer = threading.Thread(
                        target=self._run, name="tuiagent-ledger", daemon=True
                    )
                    self._writer.start()

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._collect()
            self._batch(batch)
            if self.heartbeat and self.clock() >= self._next_beat:
                self._beat()
        self._drop()

    def _collect(self) -> tuple[list[Op], bool]:
        """What has queued up (and whether the ledger is closing). Settles alone wait a
        moment for a reserve to go with them: every transaction locks the counters it
        touches, a team's day budget among them, so fewer of them is more holds a second."""
        batch: list[Op] = []
        linger_until = 0.0
        # Calls come in together (many clients): wait a moment for the rest of them too.
        busy = self._last_reserves > 1
        while len(batch) < MAX_BATCH:
            timeout: float | None
            if not batch:
                timeout = max(self.lease_s / 3, 0.05) if self.heartbeat else None
            elif any(isinstance(op, _Barrier) for op in batch):
                timeout = 0.0
            elif any(isinstance(op, _Reserve) for op in batch):
                left = linger_until - SETTLE_LINGER_S + RESERVE_LINGER_S - time.monotonic()
                timeout = max(left, 0.0) if busy else 0.0
            else:
                timeout = max(linger_until - time.monotonic(), 0.0)
            try:
                op = self._queue.get_nowait() if timeout == 0 else self._queue.get(timeout=timeout)
            except queue.Empty:
                return batch, self._closed and not batch
            if op is None:
                return batch, True
            if not batch:
                linger_until = time.monotonic() + SETTLE_LINGER_S
            batch.append(op)
        return batch, False

    def _beat(self) -> None:
        """Renew the lease, and settle dead processes' holds at their worst case."""
        self._next_beat = self.clock() + max(self.lease_s / 3, 0.05)
        try:
            self._write(self._renew)
            self.sweep()
        except LedgerError:
            pass  # the holds stay held at worst case; the next reserve says what is wrong

    def _renew(self, cur: Any) -> None:
        now = self.clock()
        self._x(
            cur,
            "INSERT INTO owners (id, pid, host, what, started_at, lease_until) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "lease_until = excluded.lease_until",
            (
                self.owner,
                os.getpid(),
                socket.gethostname()[:64],
                self.what,
                now,
                now + self.lease_s,
            ),
        )
        self._lease_until = now + self.lease_s

    def _batch(self, batch: Sequence[Op]) -> None:
        with self._lock:
            closes, self._pending = self._pending, []
        closes += [op for op in batch if isinstance(op, _Close)]
        # A reserve whose caller has gone (its future cancelled) is not made; the rest can
        # no longer be cancelled, and a caller that goes now releases what it gets.
        reserves = [
            op
            for op in batch
            if isinstance(op, _Reserve) and op.future.set_running_or_notify_cancel()
        ]
        self._last_reserves = len(reserves)
        try:
            if closes or reserves:
                self._start_counters([c for r in reserves for c in r.checks])
                results = self._write(lambda cur: self._apply(cur, reserves, closes))
                for r, result in zip(reserves, results, strict=True):
                    r.future.set_result(result)
        except Exception as exc:  # a bug, too, must not leave a caller waiting
            failure = exc if isinstance(exc, LedgerError) else LedgerError(f"the ledger: {exc!r}")
            with self._lock:
                self._pending[:0] = closes
            for r in reserves:
                r.future.set_exception(failure)
        finally:
            for op in batch:
                if isinstance(op, _Barrier):
                    op.future.set_result(None)

    def _apply(
        self, cur: Any, reserves: Sequence[_Reserve], closes: Sequence[_Close]
    ) -> list[LedgerHold | Refused]:
        """One transaction: the closes, then each reserve in turn (a reserve sees the ones
        before it)."""
        if reserves and self.clock() + self.lease_s / 3 > self._lease_until:
            self._renew(cur)  # the lease must outlive the holds written now
        delta: dict[Row, list[int]] = {}  # counter -> [held change, spent change]
        closed = self._close_entries(cur, closes, delta)
        checks = [c for r in reserves for c in r.checks]
        states = self._lock_and_read(cur, checks, [r for r in delta if not _is_minute(r)])
        results: list[LedgerHold | Refused] = []
        accepted: list[tuple[_Reserve, list[Row]]] = []
        for r in reserves:
            now = {c: _with(states[c], delta, c) for c in r.checks}
            worst: tuple[int, Check] | None = None
            for c in r.checks:
                left = c.cap - now[c][0] - now[c][1]
                if r.pico > left and (worst is None or left < worst[0]):
                    worst = (left, c)
            if worst is not None:
                c = worst[1]
                results.append(Refused(_line(c, now[c], r.at), from_pico(r.pico)))
                continue
            rows = sorted({row for c in r.checks for row in self._rows_of(c, r.at)})
            for row in rows:
                delta.setdefault(row, [0, 0])[0] += r.pico
            lines = tuple(_line(c, (now[c][0], now[c][1] + r.pico), r.at) for c in r.checks)
            results.append(LedgerHold(0, from_pico(r.pico), lines))
            accepted.append((r, rows))
        if not accepted and not closed:
            raise _Rollback(results)  # nothing to write (the counters it started go too)
        self._apply_delta(cur, delta)
        if accepted:
            ids = self.dialect.insert_ids(
                cur,
                self.dialect.sql(
                    "INSERT INTO entries (owner, at, state, amount, label, run, simulated, "
                    "session, agent, key_id, user_name, client, model, tier, rows) "
                    "VALUES (?, ?, 'held', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                [
                    (
                        self.owner,
                        r.at,
                        r.pico,
                        r.label[:200],
                        r.scopes.run,
                        1 if r.scopes.simulated else 0,
                        *(r.scopes.value(s) for s in COLUMNS),
                        "\n".join(f"{k}\t{b}" for k, b in rows),
                    )
                    for r, rows in accepted
                ],
            )
            held = iter(ids)
            results = [
                LedgerHold(next(held), x.amount, x.lines) if isinstance(x, LedgerHold) else x
                for x in results
            ]
        elif closed:
            self.dialect.lazy_commit(cur)
        return results

    def _rows_of(self, c: Check, at: float) -> list[Row]:
        """The counters a hold under this budget raises."""
        return [(c.key, minute_bucket(at) if c.rolling else c.bucket)]

    def _close_entries(
        self, cur: Any, closes: Sequence[_Close], delta: dict[Row, list[int]]
    ) -> bool:
        """Lock the entries being settled or expired, and note what each does to its
        counters. Returns whether any changes."""
        if not closes:
            return False
        by_id: dict[int, _Close] = {}
        for op in closes:
            by_id.setdefault(op.entry_id, op)  # a second close of one hold does nothing
        ids = sorted(by_id)
        marks = ", ".join("?" for _ in ids)
        found = self._x(
            cur,
            f"SELECT id, state, amount, actual, rows FROM entries WHERE id IN ({marks}) "
            f"ORDER BY id" + self.dialect.for_update,
            ids,
        ).fetchall()
        updates = []
        for entry_id, was, amount, before, rows_text in found:
            op = by_id[int(entry_id)]
            amount = int(amount)
            if was == "held":
                spent = amount if op.state == "expired" else (op.pico or 0)
                held_change = -amount
                state = "released" if op.state == "settled" and op.pico is None else op.state
                actual = amount if op.state == "expired" else op.pico
            elif was == "expired" and op.state == "settled" and op.pico is not None:
                # Expired at its worst case while its process still lived: only a bill
                # above that adds anything.
                settled = int(before if before is not None else amount)
                held_change, spent = 0, max(op.pico - settled, 0)
                state, actual = "expired", max(op.pico, settled)
            else:
                continue  # settled already, or released: nothing changes twice
            for line in str(rows_text).splitlines():
                key, _, bucket = line.partition("\t")
                d = delta.setdefault((key, bucket), [0, 0])
                d[0] += held_change
                d[1] += spent
            updates.append((state, actual, op.at, int(entry_id)))
        if updates:
            self._x(
                cur,
                f"WITH v (id, state, actual, at) AS "
                f"(VALUES {_marks(len(updates), 4, ints=(0, 2))}) "
                "UPDATE entries SET state = v.state, actual = v.actual, settled_at = v.at "
                "FROM v WHERE entries.id = v.id",
                [x for row in updates for x in (row[3], row[0], row[1], row[2])],
            )
        return bool(updates)

    def _start_counters(self, checks: Sequence[Check]) -> None:
        """Start the counters these budgets need that do not exist yet, each from the
        entries already in its window, in a transaction of its own (committed before any
        counter is locked, so the batch takes every lock in order)."""
        wanted = sorted({c.lock_row for c in checks} - self._known)
        if not wanted:
            return
        exist = self._read(lambda cur: self._select(cur, wanted, lock=False))
        self._known.update(exist)
        firsts = {c.lock_row: c for c in checks}
        missing = [r for r in wanted if r not in exist]
        if not missing:
            return

        def start(cur: Any) -> None:
            for key, bucket in missing:
                c = firsts[(key, bucket)]
                if c.rolling:  # an anchor: minute counters are kept from the next minute on
                    spent, horizon = 0, minute_of(self.clock()) + 60
                else:
                    spent, horizon = self._from_entries(cur, c, c.start, c.end), None
                self._x(
                    cur,
                    "INSERT INTO usage (key, bucket, spent, held, horizon) VALUES (?, ?, ?, 0, ?) "
                    "ON CONFLICT (key, bucket) DO NOTHING",
                    (key, bucket, spent, horizon),
                )

        self._write(start)
        self._known.update(missing)

    def _lock_and_read(
        self, cur: Any, checks: Sequence[Check], also: Sequence[Row]
    ) -> dict[Check, tuple[int, int, int]]:
        """Lock the counters the checks read and those in `also`, in order; each check's
        (spent, held) before this batch, and for a rolling one the first minute it reads."""
        wanted = sorted({c.lock_row for c in checks} | set(also))
        rows = self._select(cur, wanted, lock=True)
        states: dict[Check, tuple[int, int, int]] = {}
        for c in checks:
            if c in states:
                continue
            if c.lock_row not in rows:  # pragma: no cover - _start_counters made it
                raise LedgerError(f"the ledger {self.shown} lost the counter {c.lock_row}")
            spent, held, horizon = rows[c.lock_row]
            if not c.rolling:
                states[c] = (spent, held, 0)
                continue
            since = int(first_minute(self.clock(), c.spec.window.span_s))
            if horizon is not None and since < horizon:
                self._backfill_minutes(cur, c, since, horizon)
                self._x(
                    cur,
                    "UPDATE usage SET horizon = ? WHERE key = ? AND bucket = ?",
                    (since, c.key, ROLLING),
                )
                rows[c.lock_row] = (spent, held, since)
            states[c] = (*self._minutes(cur, c.key, since), since)
        return states

    def _apply_delta(self, cur: Any, delta: dict[Row, list[int]]) -> None:
        """Apply the batch's changes: the window counters (locked already) in one
        statement, then the minute counters in another."""
        changed = sorted((row, d) for row, d in delta.items() if d[0] or d[1])
        counters = [(k, b, h, s) for (k, b), (h, s) in changed if not _is_minute((k, b))]
        minutes = [(k, b, s, h) for (k, b), (h, s) in changed if _is_minute((k, b))]
        if counters:
            self._x(
                cur,
                f"WITH v (key, bucket, dh, ds) AS (VALUES {_marks(len(counters), 4, ints=(2, 3))}) "
                "UPDATE usage SET held = usage.held + v.dh, spent = usage.spent + v.ds "
                "FROM v WHERE usage.key = v.key AND usage.bucket = v.bucket",
                [x for row in counters for x in row],
            )
        if minutes:
            self._x(
                cur,
                f"INSERT INTO usage (key, bucket, spent, held) VALUES {_marks(len(minutes), 4)} "
                "ON CONFLICT (key, bucket) DO UPDATE SET "
                "spent = usage.spent + excluded.spent, held = usage.held + excluded.held",
                [x for row in minutes for x in row],
            )

    def _select(
        self, cur: Any, wanted: Sequence[Row], lock: bool
    ) -> dict[Row, tuple[int, int, int | None]]:
        if not wanted:
            return {}
        pairs = ", ".join("(?, ?)" for _ in wanted)
        sql = (
            f"SELECT key, bucket, spent, held, horizon FROM usage WHERE (key, bucket) IN "
            f"(VALUES {pairs}) ORDER BY key, bucket"
        )
        if lock:
            sql += self.dialect.for_update
        found = self._x(cur, sql, [v for row in wanted for v in row]).fetchall()
        return {(k, b): (int(s), int(h), None if z is None else int(z)) for k, b, s, h, z in found}

    def _minutes(self, cur: Any, key: str, since: int) -> tuple[int, int]:
        row = self._x(
            cur,
            "SELECT COALESCE(SUM(spent), 0), COALESCE(SUM(held), 0) FROM usage "
            "WHERE key = ? AND bucket >= ? AND bucket <= ?",
            (key, minute_bucket(since), MINUTES_END),
        ).fetchone()
        return int(row[0]), int(row[1])

    # --- reading the entries ----------------------------------------------------------

    def _matching(self, c: Check) -> tuple[str, list[Any]]:
        where: list[str] = ["simulated = ?"]
        params: list[Any] = [1 if c.simulated else 0]
        if c.spec.scope != "global":
            where.append(f"{COLUMNS[c.spec.scope]} = ?")
            params.append(c.value)
        return " AND ".join(where), params

    def _from_entries(self, cur: Any, c: Check, start: float | None, end: float | None) -> int:
        """What the entries in [start, end) of this budget's scope value count for."""
        where, params = self._matching(c)
        if start is not None:
            where += " AND at >= ?"
            params.append(start)
        if end is not None:
            where += " AND at < ?"
            params.append(end)
        found = self._x(
            cur, f"SELECT state, amount, actual FROM entries WHERE {where}", params
        ).fetchall()
        return sum(_counted(s, int(a), None if x is None else int(x)) for s, a, x in found)

    def _backfill_minutes(self, cur: Any, c: Check, since: int, horizon: int) -> None:
        """Start the minute counters of [since, horizon) from the entries, for a rolling
        budget whose span reaches back before its counters were kept."""
        where, params = self._matching(c)
        found = self._x(
            cur,
            f"SELECT at, state, amount, actual FROM entries WHERE {where} AND at >= ? AND at < ?",
            [*params, since, horizon],
        ).fetchall()
        per_minute: dict[str, int] = {}
        for at, s, a, x in found:
            bucket = minute_bucket(float(at))
            counted = _counted(s, int(a), None if x is None else int(x))
            per_minute[bucket] = per_minute.get(bucket, 0) + counted
        if per_minute:
            cur.executemany(
                self.dialect.sql(
                    "INSERT INTO usage (key, bucket, spent, held) VALUES (?, ?, ?, 0) "
                    "ON CONFLICT (key, bucket) DO UPDATE SET spent = usage.spent + excluded.spent"
                ),
                [(c.key, b, s) for b, s in sorted(per_minute.items())],
            )

    def read(self, checks: Sequence[Check]) -> list[BudgetLine]:
        """Each budget as it stands now (nothing is written or locked)."""
        if not checks:
            return []
        now = self.clock()

        def work(cur: Any) -> list[BudgetLine]:
            rows = self._select(cur, sorted({c.lock_row for c in checks}), lock=False)
            lines = []
            for c in checks:
                row = rows.get(c.lock_row)
                if c.rolling:
                    since = int(first_minute(now, c.spec.window.span_s))
                    spent, held = self._minutes(cur, c.key, since) if row else (0, 0)
                    horizon = row[2] if row else None
                    if horizon is None or since < horizon:
                        spent += self._from_entries(cur, c, since, horizon)
                    state = (spent, held)
                elif row is None:
                    state = (self._from_entries(cur, c, c.start, c.end), 0)
                else:
                    state = (row[0], row[1])
                lines.append(_line(c, state, now))
            return lines

        result: list[BudgetLine] = self._read(work)
        return result

    # --- reserve and settle ------------------------------------------------------------

    def reserve(
        self, amount: Decimal, checks: Sequence[Check], scopes: Scopes, label: str = ""
    ) -> LedgerHold | Refused:
        """Hold `amount` in every budget of `checks` and write the hold, in one transaction;
        or, if it does not fit one of them, write nothing and say which. LedgerError when
        the ledger cannot be written."""
        op = self.submit(amount, checks, scopes, label)
        try:
            return op.result(timeout=ANSWER_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            raise LedgerError(
                f"the ledger cannot be reached ({self.shown}: no answer in {ANSWER_TIMEOUT_S:g}s)"
            ) from None

    def submit(
        self, amount: Decimal, checks: Sequence[Check], scopes: Scopes, label: str = ""
    ) -> concurrent.futures.Future[LedgerHold | Refused]:
        """`reserve`, answered through a future (an event loop awaits it without blocking)."""
        if self._closed:
            raise LedgerError(f"the ledger {self.shown} is closed")
        op = _Reserve(to_pico(amount), checks, scopes, label, self.clock())
        self._ensure_writer()
        self._queue.put(op)
        return op.future

    def settle(self, entry_id: int, actual: Decimal | None) -> None:
        """Replace a hold by what the call billed (`None`: it billed nothing). Never waits
        and never raises: it is written with the next batch, tried again until written,
        and until then the hold counts at its worst case. A hold its process let expire is
        already spent at its worst case: a bill above that adds the excess."""
        pico = None if actual is None else to_pico(actual)
        op = _Close(entry_id, pico, "settled", self.clock())
        if self._closed:
            with self._lock:
                self._pending.append(op)
            return
        self._ensure_writer()
        self._queue.put(op)

    def flush(self) -> None:
        """Wait until every settle made so far is written; LedgerError if some cannot be
        (they stay pending, and are tried again with the next batch)."""
        if self._writer is not None and self._writer.is_alive():
            barrier = _Barrier()
            self._queue.put(barrier)
            barrier.future.result(timeout=ANSWER_TIMEOUT_S)
        else:
            self._batch([])
        with self._lock:
            pending = len(self._pending)
        if pending:
            self._write(lambda cur: None)  # says why, if the database still cannot be reached
            raise LedgerError(f"the ledger {self.shown}: {pending} settles are not written yet")

    # --- dead processes -------------------------------------------------------------

    def sweep(self) -> int:
        """Settle at their worst case the holds of every process whose lease ran out (or
        that has none left); returns how many."""
        now = self.clock()

        def dead(cur: Any) -> list[int]:
            found = self._x(
                cur,
                "SELECT id FROM entries WHERE state = 'held' AND owner NOT IN "
                "(SELECT id FROM owners WHERE lease_until >= ?)",
                (now,),
            ).fetchall()
            return [int(r[0]) for r in found]

        ids: list[int] = self._read(dead)
        if ids:
            closes = [_Close(i, None, "expired", now) for i in ids]
            self._write(lambda cur: self._apply(cur, (), closes))
        self._write(
            lambda cur: self._x(
                cur,
                "DELETE FROM owners WHERE lease_until < ? AND id <> ?",
                (now - self.lease_s, self.owner),
            )
        )
        return len(ids)

    # --- the budgets in use ------------------------------------------------------------

    def register(self, specs: Sequence[BudgetSpec]) -> None:
        """Note the budgets this process holds against (by title; the last word wins)."""
        if not specs:
            return
        now = self.clock()
        rows = [(s.title, json.dumps(s.to_json()), now) for s in specs]

        def write(cur: Any) -> None:
            for row in rows:
                self._x(
                    cur,
                    "INSERT INTO budgets (title, spec, seen_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (title) DO UPDATE SET spec = excluded.spec, "
                    "seen_at = excluded.seen_at",
                    row,
                )

        self._write(write)

    def registered(self) -> list[BudgetSpec]:
        """The budgets the processes on this ledger hold against, most recently seen first
        (one that cannot be read, written by another version, is left out)."""

        def work(cur: Any) -> list[tuple[str, str]]:
            found = self._x(cur, "SELECT title, spec FROM budgets ORDER BY seen_at DESC").fetchall()
            return [(str(t), str(s)) for t, s in found]

        specs = []
        for _, text in self._read(work):
            try:
                specs.append(BudgetSpec.from_json(json.loads(text)))
            except (ValueError, KeyError, TypeError, ArithmeticError):
                continue
        return specs

    # --- reports --------------------------------------------------------------------

    def entries(self, since: float | None = None, until: float | None = None) -> list[Entry]:
        """Every hold in [since, until), oldest first."""
        where, params = "1 = 1", list[Any]()
        if since is not None:
            where, params = where + " AND at >= ?", [*params, since]
        if until is not None:
            where, params = where + " AND at < ?", [*params, until]
        cols = ", ".join(COLUMNS.values())

        def work(cur: Any) -> list[Entry]:
            rows = self._x(
                cur,
                f"SELECT id, at, state, amount, actual, label, run, simulated, {cols} "
                f"FROM entries WHERE {where} ORDER BY at, id",
                params,
            ).fetchall()
            out = []
            for r in rows:
                values = dict(zip(COLUMNS, r[8:], strict=True))
                scopes = Scopes(run=r[6], simulated=bool(r[7]), **values)
                actual = None if r[4] is None else from_pico(int(r[4]))
                out.append(
                    Entry(int(r[0]), float(r[1]), r[2], from_pico(int(r[3])), actual, r[5], scopes)
                )
            return out

        result: list[Entry] = self._read(work)
        return result

    def values(self, spec: BudgetSpec, since: float | None) -> list[tuple[str, bool]]:
        """The values of a budget's scope with entries since `since` (and whether they are
        simulated), the most recent first: the budgets in use."""
        glob = spec.scope == "global"
        column = None if glob else COLUMNS[spec.scope]
        where = "1 = 1" if column is None else f"{column} IS NOT NULL"
        params: list[Any] = []
        if spec.match is not None and column is not None:
            where, params = f"{column} = ?", [spec.match]
        if since is not None:
            where, params = where + " AND at >= ?", [*params, since]
        group = "simulated" if column is None else f"{column}, simulated"

        def work(cur: Any) -> list[tuple[str, bool]]:
            rows = self._x(
                cur,
                f"SELECT {group}, MAX(at) FROM entries WHERE {where} "
                f"GROUP BY {group} ORDER BY MAX(at) DESC",
                params,
            ).fetchall()
            if column is None:
                return [("", bool(r[0])) for r in rows]
            return [(str(r[0]), bool(r[1])) for r in rows]

        result: list[tuple[str, bool]] = self._read(work)
        return result

    # --- the end --------------------------------------------------------------------

    def close(self) -> None:
        """Write what is queued, settle at worst case any hold of this process still open
        (a call cut off before its settle), give up the lease."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            writer = self._writer
        if writer is not None:
            self._queue.put(None)
            writer.join(timeout=ANSWER_TIMEOUT_S)
        try:
            self._batch([])  # settles the writer could not write
            now = self.clock()

            def mine(cur: Any) -> list[int]:
                found = self._x(
                    cur, "SELECT id FROM entries WHERE state = 'held' AND owner = ?", (self.owner,)
                ).fetchall()
                return [int(r[0]) for r in found]

            ids: list[int] = self._read(mine)
            if ids:
                closes = [_Close(i, None, "expired", now) for i in ids]
                self._write(lambda cur: self._apply(cur, (), closes))
            self._write(lambda cur: self._x(cur, "DELETE FROM owners WHERE id = ?", (self.owner,)))
        except LedgerError:
            pass  # the lease runs out instead: the holds are then settled at worst case
        finally:
            with self._lock:
                conns, self._conns = self._conns, []
            for conn in conns:
                _quietly(conn.close)
            self._local = threading.local()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _line(c: Check, state: tuple[int, int], now: float) -> BudgetLine:
    return BudgetLine(
        c.spec,
        c.value,
        c.spec.max_cost_usd,
        from_pico(state[0]),
        from_pico(state[1]),
        c.spec.window.resets_at(now),
        c.simulated,
    )


def _with(base: tuple[int, int, int], delta: dict[Row, list[int]], c: Check) -> tuple[int, int]:
    """A budget's (spent, held) with what this batch has done to its counters so far."""
    spent, held, since = base
    if c.rolling:
        first = minute_bucket(since)
        rows = [r for r in delta if r[0] == c.key and _is_minute(r) and r[1] >= first]
    else:
        rows = [(c.key, c.bucket)]
    for row in rows:
        d = delta.get(row)
        if d is not None:
            held, spent = held + d[0], spent + d[1]
    return spent, held


def _marks(rows: int, width: int, ints: Sequence[int] = ()) -> str:
    """`(?, ?), (?, ?)` for a VALUES list; the columns `ints` typed as whole numbers (so
    PostgreSQL knows them in a VALUES list of its own)."""
    one = ", ".join("CAST(? AS BIGINT)" if i in ints else "?" for i in range(width))
    return ", ".join(f"({one})" for _ in range(rows))


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    with suppress(Exception):
        fn(*args)


def check(spec: BudgetSpec, value: str, simulated: bool, now: float) -> Check:
    """The budget `spec` for the scope value `value`, in the window `now` falls in."""
    start, end = spec.window.bounds(now)
    key = spec.counter_key(value, simulated)
    return Check(spec, value, key, spec.window.bucket(now), start, end, simulated)


def in_use(
    ledger: Ledger, specs: Sequence[BudgetSpec], *, limit: int | None = None
) -> tuple[list[BudgetLine], int]:
    """Each budget of `specs` as it stands, one line per scope value with calls in its
    window now (a global budget always), the most recently used first, at most `limit` per
    budget; and how many more there are."""
    now = ledger.clock()
    checks, more = [], 0
    for spec in specs:
        start, _ = spec.window.bounds(now)
        values = ledger.values(spec, start)
        if spec.scope == "global" and ("", False) not in values:
            values.append(("", False))
        shown = values if limit is None else values[:limit]
        more += len(values) - len(shown)
        checks += [check(spec, value, sim, now) for value, sim in shown]
    return ledger.read(checks), more
