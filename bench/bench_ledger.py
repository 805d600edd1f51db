"""What the ledger adds to a call, how many holds a team's PostgreSQL takes, and whether a
budget ever passes its cap when four processes spend from it at once.

- reserve + settle added per call, p50 and p99, on SQLite (a file, as on a laptop) and on
  PostgreSQL on 127.0.0.1 (a cluster this benchmark starts, fsync on), with a team's stack of
  budgets (a global day, a session, a key's month). A reserve waits for its commit; a settle
  does not (it is written with the next batch). Goals: p50 <= 1 ms SQLite, <= 3 ms PostgreSQL.
  Beside it, one durable commit on this disk: the floor under any reserve that is written
  before its request is sent.
- holds per second, 64 clients on one PostgreSQL: four processes (as four proxies) of 16
  clients each, every client holding and settling as fast as it can (goal >= 2,000/s).
- overshoot: four processes fire 1,000 holds at once (250 each) at a budget that fits a tenth
  of them, and every hold taken is billed at its worst case (goal $0 over the cap).

BENCH_LEDGER_CALLS sets the calls timed per backend (default 1,000); BENCH_LEDGER_SECONDS
how long the clients run (default 5).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from tests.postgres import cluster, fresh_database
from tuiagent.cost.budget import Budget
from tuiagent.ledger import BudgetSpec, Scopes, Stack, Window, open_ledger

D = Decimal
CALLS = int(os.environ.get("BENCH_LEDGER_CALLS", "1000"))
SECONDS = float(os.environ.get("BENCH_LEDGER_SECONDS", "5"))
TEAM = (
    BudgetSpec("global", Window.parse("day"), D("1000000")),
    BudgetSpec("session", Window.parse("run"), D("100000")),
    BudgetSpec("key", Window.parse("month"), D("1000000")),
)


def _budget(url: str, data: Path, specs: tuple[BudgetSpec, ...], what: str) -> Budget:
    ledger = open_ledger(url, data, what=what)
    return Budget(D("1000000"), stack=Stack(ledger, specs, Scopes(key="k-bench")))


def per_call(url: str, data: Path) -> tuple[float, float]:
    """Milliseconds a call waits for its reserve and settle: (p50, p99)."""
    budget = _budget(url, data, TEAM, "bench per call")
    times = []
    for i in range(CALLS + 50):
        scopes = Scopes(session=f"s{i % 8}")
        started = time.perf_counter()
        hold = budget.reserve(D("0.0123"), "bench", scopes)
        assert hold is not None
        hold.settle(D("0.0042"))
        if i >= 50:  # the first calls start the counters and the connections
            times.append(time.perf_counter() - started)
    budget.close()
    times.sort()
    return 1000 * statistics.median(times), 1000 * times[int(len(times) * 0.99)]


def commit_ms(url: str) -> float:
    """One durable commit of one row on this cluster: the floor under a written hold."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (n BIGINT)")
        conn.execute("INSERT INTO bench_commit VALUES (0)")
        times = []
        for _ in range(200):
            started = time.perf_counter()
            with conn.transaction():
                conn.execute("UPDATE bench_commit SET n = n + 1")
            times.append(time.perf_counter() - started)
        conn.execute("DROP TABLE bench_commit")
    return 1000 * statistics.median(times)


def _clients(url: str, data: str, worker: int, clients: int, seconds: float, out: object) -> None:
    """One process of `clients` threads holding and settling until `seconds` pass."""
    budget = _budget(url, Path(data), TEAM, f"bench clients {worker}")
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        scopes = Scopes(session=f"w{worker}-c{i}")
        while time.monotonic() < stop:
            hold = budget.reserve(D("0.0123"), "bench", scopes)
            assert hold is not None
            hold.settle(D("0.0042"))
            counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    budget.close()
    out.put(sum(counts))  # type: ignore[attr-defined]


def holds_per_second(url: str, data: Path, processes: int = 4, clients: int = 16) -> float:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_clients, args=(url, str(data), w, clients, SECONDS, out))
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=120 + SECONDS) for _ in procs)
    for p in procs:
        p.join()
    return total / SECONDS


def _burst(url: str, data: str, worker: int, n: int, go: object, out: object) -> None:
    """`n` holds fired at once at a tight budget; every one taken billed at worst case."""
    tight = (BudgetSpec("global", Window.parse("day"), D("1.00")),)
    budget = _budget(url, Path(data), tight, f"bench burst {worker}")
    taken: list[object] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        hold = budget.reserve(D("0.01"), "burst", Scopes(session=f"b{worker}-{i}"))
        if hold is not None:
            with lock:
                taken.append(hold)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    go.wait()  # type: ignore[attr-defined]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for hold in taken:
        hold.settle(D("0.01"))  # type: ignore[attr-defined]
    budget.close()
    out.put(len(taken))  # type: ignore[attr-defined]


def overshoot(url: str, data: Path, processes: int = 4, total: int = 1000) -> tuple[Decimal, int]:
    """What was billed beyond the cap, and how many holds were taken."""
    ctx = multiprocessing.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_burst, args=(url, str(data), w, total // processes, go, out))
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    time.sleep(3)  # every process has its threads ready
    go.set()
    taken = sum(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join()
    ledger = open_ledger(url, data, heartbeat=False)
    billed = sum((e.cost for e in ledger.entries() if e.label == "burst"), D(0))
    ledger.close()
    return max(billed - D("1.00"), D(0)), taken


def run() -> list[tuple[str, str, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        p50, p99 = per_call(f"sqlite:///{data / 'bench.sqlite3'}", data)
        rows.append(("SQLite: reserve + settle per call, p50", f"{p50:.3f} ms", "<= 1 ms"))
        rows.append(("SQLite: reserve + settle per call, p99", f"{p99:.3f} ms", "-"))
        with cluster(durable=True) as pg:
            rows.append(
                ("PostgreSQL: one durable commit (the floor)", f"{commit_ms(pg):.3f} ms", "-")
            )
            p50, p99 = per_call(fresh_database(pg, "per_call"), data)
            rows.append(("PostgreSQL: reserve + settle per call, p50", f"{p50:.3f} ms", "<= 3 ms"))
            rows.append(("PostgreSQL: reserve + settle per call, p99", f"{p99:.3f} ms", "-"))
            rate = holds_per_second(fresh_database(pg, "clients"), data)
            rows.append(
                ("PostgreSQL: holds/s, 64 clients in 4 processes", f"{rate:,.0f}/s", ">= 2,000/s")
            )
            over, taken = overshoot(fresh_database(pg, "burst"), data)
            rows.append(
                (
                    "overshoot: 4 processes x 250 holds at once, $1.00 cap",
                    f"${over} ({taken} of 1,000 held)",
                    "$0",
                )
            )
    return rows


if __name__ == "__main__":
    for name, value, goal in run():
        print(f"{name:55} {value:>24}   goal {goal}")
