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
- overshoot: 1,000 requests at once through four real `tuiagent proxy` processes on one
  PostgreSQL ledger, against a $0.05 day budget that fits a few of them; what the upstream
  billed (by its own books) beyond the cap (goal $0).

BENCH_LEDGER_CALLS sets the calls timed per backend (default 1,000); BENCH_LEDGER_SECONDS
how long the clients run (default 5); BENCH_LEDGER_BURST the requests at once (1,000).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

from tests.support.postgres import cluster, fresh_database
from tuiagent.cost.budget import Budget, Stack
from tuiagent.ledger import BudgetSpec, Scopes, Window, open_ledger

D = Decimal
CALLS = int(os.environ.get("BENCH_LEDGER_CALLS", "1000"))
SECONDS = float(os.environ.get("BENCH_LEDGER_SECONDS", "5"))
BURST = int(os.environ.get("BENCH_LEDGER_BURST", "1000"))
MODEL = "claude-sonnet-4-5"
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


@contextmanager
def _proxies(n: int, upstream: str, config: Path, logs: Path) -> Iterator[list[str]]:
    """`n` real `tuiagent proxy` processes on free ports; their URLs."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tuiagent",
                "proxy",
                "--no-ui",
                "--port",
                "0",
                "--upstream",
                upstream,
                "--config",
                str(config),
                "--log-dir",
                str(logs),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(n)
    ]
    try:
        urls = []
        for proc in procs:
            assert proc.stdout is not None
            urls.append(proc.stdout.readline().rsplit(" ", 1)[1].strip())
            threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield urls
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _fire(urls: list[str], total: int) -> int:
    """`total` requests at once, spread over the proxies; how many were answered 200."""
    import httpx

    body = {
        "model": MODEL,
        "max_tokens": 1024,
        "stream": True,
        "messages": [{"role": "user", "content": "List the files here and say what each is."}],
    }
    limits = httpx.Limits(max_connections=total, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        go = asyncio.Event()

        async def one(i: int) -> int:
            await go.wait()
            async with client.stream(
                "POST",
                f"{urls[i % len(urls)]}/v1/messages",
                json=body,
                headers={"x-api-key": "sk-ant-api03-bench", "x-claude-code-session-id": f"b{i}"},
            ) as answer:
                async for _ in answer.aiter_bytes():
                    pass
                return answer.status_code

        tasks = [asyncio.create_task(one(i)) for i in range(total)]
        await asyncio.sleep(0.5)
        go.set()
        codes = await asyncio.gather(*tasks, return_exceptions=True)
    return sum(1 for c in codes if c == 200)


def overshoot(url: str, data: Path, processes: int = 4, total: int = BURST) -> tuple[Decimal, int]:
    """`total` requests at once through `processes` real proxies on one ledger, against a
    budget that fits a few of them: what the upstream billed beyond the cap (by its own
    books), and how many requests were answered."""
    from tests.support.hostile import HostileModel
    from tests.support.loopback import LoopbackAPI
    from tuiagent.cost.pricing import Pricer

    cap = D("0.05")
    config = data / "burst.toml"
    config.write_text(
        f'ledger_url = "{url}"\nmax_cost_usd = 100\n'
        f'[[budgets]]\nscope = "global"\nwindow = "day"\nmax_cost_usd = {cap}\n'
    )
    upstream = HostileModel([])  # honest answers, with the upstream's own books
    with LoopbackAPI(upstream) as api, _proxies(processes, api.base_url, config, data) as urls:
        answered = asyncio.run(_fire(urls, total))
    billed = upstream.bill(Pricer())
    return max(billed - cap, D(0)), answered


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
            over, answered = overshoot(fresh_database(pg, "burst"), data)
            rows.append(
                (
                    f"overshoot: 4 proxies, {BURST:,} requests at once, $0.05 day",
                    f"${over} ({answered} answered)",
                    "$0",
                )
            )
    return rows


if __name__ == "__main__":
    for name, value, goal in run():
        print(f"{name:55} {value:>24}   goal {goal}")
