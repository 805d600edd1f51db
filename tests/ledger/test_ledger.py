"""The ledger on both of its databases: SQLite (a file, as on a laptop) and a real
PostgreSQL cluster started for the tests. Budgets stacked over scopes and windows, a window
that starts over exactly at its boundary (an injected clock), holds of a dead process
settled at their worst case, counters that start from what is already in the ledger, and
reserves from several processes at once that never pass a cap."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tuiagent.cost.budget import Stack
from tuiagent.ledger import (
    BudgetSpec,
    Ledger,
    LedgerError,
    LedgerHold,
    Refused,
    Scopes,
    Window,
    open_ledger,
)
from tuiagent.ledger.windows import time_zone

D = Decimal
# 2026-03-28 23:59:58 UTC, a Saturday: a day, a week and (in Paris) a DST change away.
T0 = datetime(2026, 3, 28, 23, 59, 58, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def spec(scope: str, window: str, cap: str, **kw: str) -> BudgetSpec:
    tz = kw.pop("tz", "UTC")
    return BudgetSpec(scope, Window.parse(window, tz), D(cap), **kw)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def opened(url: str, tmp_path: Path) -> Iterator[Callable[..., Ledger]]:
    """Opens ledgers on `url` (closed at the end); no heartbeat unless asked."""
    made: list[Ledger] = []

    def make(clock: Callable[[], float] | None = None, **kw: object) -> Ledger:
        kw.setdefault("heartbeat", False)
        ledger = open_ledger(url, tmp_path, clock=clock or Clock(), **kw)  # type: ignore[arg-type]
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        ledger.close()


def test_windows_start_at_midnight_in_their_time_zone() -> None:
    paris = time_zone("Europe/Paris")
    # 2026-03-29 is the day Paris moves to summer time: a 23-hour day.
    noon = datetime(2026, 3, 29, 12, 0, tzinfo=paris).timestamp()
    start, end = Window.parse("day", "Europe/Paris").bounds(noon)
    assert start == datetime(2026, 3, 29, 0, 0, tzinfo=paris).timestamp()
    assert end is not None and start is not None and end - start == 23 * 3600
    week = Window.parse("week").bounds(T0)  # Saturday: the week began on Monday the 23rd
    assert week[0] == datetime(2026, 3, 23, tzinfo=UTC).timestamp()
    assert week[1] == datetime(2026, 3, 30, tzinfo=UTC).timestamp()
    month = Window.parse("month").bounds(T0)
    assert month == (
        datetime(2026, 3, 1, tzinfo=UTC).timestamp(),
        datetime(2026, 4, 1, tzinfo=UTC).timestamp(),
    )
    assert Window.parse("90m").label == "90m" and Window.parse("48h").label == "2d"
    for bad in ("0h", "5", "h", "5 h", "1y", "day ", "367d", "٥h"):
        with pytest.raises(ValueError):
            Window.parse(bad)
    with pytest.raises(ValueError, match="unknown time zone"):
        Window.parse("day", "Mars/Olympus")


def test_a_day_budget_lets_the_next_call_through_exactly_at_midnight(
    opened: Callable[..., Ledger],
) -> None:
    clock = Clock()
    stack = Stack(opened(clock), [spec("global", "day", "1.00")], Scopes(session="s"))
    held = stack.hold(D("0.60"), None, "one")
    assert isinstance(held, LedgerHold)
    stack.settle(held, D("0.90"))
    stack.ledger.flush()
    refused = stack.hold(D("0.20"), None, "two")
    assert isinstance(refused, Refused)
    midnight = datetime(2026, 3, 29, tzinfo=UTC).timestamp()
    assert refused.line.resets_at == midnight and refused.line.left == D("0.10")
    clock.t = midnight - 0.001
    assert isinstance(stack.hold(D("0.20"), None, "still yesterday"), Refused)
    clock.t = midnight
    after = stack.hold(D("0.20"), None, "today")
    assert isinstance(after, LedgerHold)
    assert after.lines[0].spent == 0 and after.lines[0].held == D("0.20")


def test_a_call_goes_only_if_it_fits_every_budget_it_falls_under(
    opened: Callable[..., Ledger],
) -> None:
    specs = [
        spec("global", "day", "1.00"),
        spec("session", "run", "0.20"),
        spec("key", "month", "0.50"),
        spec("model", "week", "0.05", match="claude-fable-5-2"),
    ]
    ledger = opened()
    stack = Stack(ledger, specs, Scopes(key="k-1"))
    a = stack.hold(D("0.15"), Scopes(session="a"), "a")
    assert isinstance(a, LedgerHold) and {line.title for line in a.lines} == {
        "global day",
        "session run",
        "key month",
    }
    refused = stack.hold(D("0.10"), Scopes(session="a"), "a again")
    assert isinstance(refused, Refused) and refused.line.title == "session run"
    assert refused.line.value == "a" and refused.line.left == D("0.05")
    # Another session has its own $0.20; the key's month is shared.
    assert isinstance(stack.hold(D("0.20"), Scopes(session="b"), "b"), LedgerHold)
    assert isinstance(stack.hold(D("0.20"), Scopes(session="c"), "c"), Refused)
    # The dearest model has a budget of its own, and only it.
    fable = stack.hold(D("0.06"), Scopes(session="d", model="claude-fable-5-2"), "fable")
    assert isinstance(fable, Refused) and fable.line.title == "model week claude-fable-5-2"
    # A refusal writes nothing: two holds, no more.
    assert [e.label for e in ledger.entries()] == ["a", "b"]
    assert stack.tightest(Scopes(session="a")) is not None


def test_a_settle_replaces_the_hold(opened: Callable[..., Ledger]) -> None:
    ledger = opened()
    stack = Stack(ledger, [spec("session", "run", "1.00")], Scopes(session="s"))
    held = [stack.hold(D("0.30"), None, str(i)) for i in range(3)]
    assert all(isinstance(h, LedgerHold) for h in held)
    a, b, c = (h for h in held if isinstance(h, LedgerHold))
    stack.settle(a, D("0.0123"))
    stack.settle(b, None)  # billed nothing
    stack.settle(a, D("0.25"))  # a second settle of one hold changes nothing
    ledger.flush()
    line = stack.tightest()
    assert line is not None
    assert (line.spent, line.held) == (D("0.0123"), D("0.30"))
    assert [(e.state, e.actual) for e in ledger.entries()] == [
        ("settled", D("0.0123")),
        ("released", None),
        ("held", None),
    ]
    stack.settle(c, D("0.31"))  # billed above its hold: spent all the same
    ledger.flush()
    line = stack.tightest()
    assert line is not None and (line.spent, line.held) == (D("0.3223"), 0)


def test_a_dead_process_holds_are_settled_at_worst_case_after_its_lease(
    opened: Callable[..., Ledger],
) -> None:
    clock = Clock(T0 - 3600)
    dead = opened(clock, lease_s=10.0)
    alive = opened(clock, lease_s=10.0)
    specs = [spec("global", "day", "1.00")]
    gone = Stack(dead, specs, Scopes())
    late = gone.hold(D("0.40"), None, "in flight when killed")
    assert isinstance(late, LedgerHold)
    survivor = Stack(alive, specs, Scopes())
    clock.t += 5
    alive.sweep()  # within the lease: still held
    line = survivor.tightest()
    assert line is not None and (line.spent, line.held) == (0, D("0.40"))
    clock.t += 6  # the lease has run out
    alive._write(alive._renew)  # (the heartbeat's job)
    assert alive.sweep() == 1
    line = survivor.tightest()
    assert line is not None and (line.spent, line.held) == (D("0.40"), 0)
    assert [e.state for e in alive.entries()] == ["expired"]
    # It was not dead after all: a bill below the worst case changes nothing, one above
    # it adds the excess.
    gone.settle(late, D("0.10"))
    dead.flush()
    line = survivor.tightest()
    assert line is not None and line.spent == D("0.40")
    gone.settle(late, D("0.45"))
    dead.flush()
    line = survivor.tightest()
    assert line is not None and line.spent == D("0.45")


def test_a_new_budget_counts_what_its_window_already_spent(
    opened: Callable[..., Ledger],
) -> None:
    clock = Clock(T0 - 3600)
    ledger = opened(clock)
    before = Stack(ledger, [], Scopes(session="s", user="ann"))
    for amount, bill in (("0.10", "0.04"), ("0.20", None), ("0.30", "0.30")):
        held = before.hold(D(amount), None, amount)
        assert isinstance(held, LedgerHold)
        before.settle(held, None if bill is None else D(bill))
    open_hold = before.hold(D("0.05"), None, "open")  # still held: counts at worst case
    assert isinstance(open_hold, LedgerHold)
    ledger.flush()
    clock.t = T0
    after = Stack(
        ledger,
        [spec("user", "day", "1.00"), spec("user", "30m", "1.00"), spec("user", "2h", "1.00")],
        Scopes(user="ann"),
    )
    line = {line.title: line for line in after.ledger.read(after.checks(after.scopes))}
    assert line["user day"].spent == D("0.39")
    assert line["user 30m"].spent == 0  # an hour ago: outside half an hour
    assert line["user 2h"].spent == D("0.39")
    held = after.hold(D("0.60"), None, "fits")
    assert isinstance(held, LedgerHold)
    assert isinstance(after.hold(D("0.02"), None, "does not"), Refused)


def test_a_rolling_window_lets_spending_go_as_it_ages(opened: Callable[..., Ledger]) -> None:
    clock = Clock()
    stack = Stack(opened(clock), [spec("key", "5h", "1.00")], Scopes(key="k"))
    first = stack.hold(D("0.70"), None, "first")
    assert isinstance(first, LedgerHold)
    clock.t += 3600
    assert isinstance(stack.hold(D("0.40"), None, "too soon"), Refused)
    second = stack.hold(D("0.30"), None, "fits")
    assert isinstance(second, LedgerHold)
    clock.t = T0 + 5 * 3600 + 60  # the first call's minute has left the window
    line = stack.tightest()
    assert line is not None and line.held == D("0.30")
    assert isinstance(stack.hold(D("0.70"), None, "room again"), LedgerHold)


def test_simulated_spending_never_spends_a_real_budget(opened: Callable[..., Ledger]) -> None:
    ledger = opened()
    specs = [spec("global", "day", "0.10")]
    offline = Stack(ledger, specs, Scopes(simulated=True))
    real = Stack(ledger, specs, Scopes())
    assert isinstance(offline.hold(D("0.10"), None, "sim"), LedgerHold)
    assert isinstance(offline.hold(D("0.01"), None, "sim"), Refused)
    assert isinstance(real.hold(D("0.10"), None, "real"), LedgerHold)


def test_a_ledger_that_cannot_be_written_refuses_in_one_line(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(LedgerError, match=r"^the ledger cannot be written \(") as caught:
        open_ledger(f"sqlite:///{blocked}/ledger.sqlite3", tmp_path)
    assert "\n" not in str(caught.value)
    with pytest.raises(LedgerError, match=r"^the ledger cannot be reached \(postgresql://x@"):
        open_ledger("postgresql://x:hunter2@127.0.0.1:1/none", tmp_path)
    try:
        open_ledger("postgresql://x:hunter2@127.0.0.1:1/none", tmp_path)
    except LedgerError as exc:
        assert "hunter2" not in str(exc)


def test_a_postgres_ledger_that_goes_away_refuses_then_comes_back(
    pg_url: str, tmp_path: Path
) -> None:
    import psycopg

    ledger = open_ledger(pg_url, tmp_path, heartbeat=False)
    stack = Stack(ledger, [spec("global", "day", "1.00")], Scopes())
    first = stack.hold(D("0.10"), None, "before")
    assert isinstance(first, LedgerHold)
    name = pg_url.rsplit("/", 1)[1]
    admin = pg_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    stack.settle(first, D("0.05"))  # kept, to be written when the ledger is back
    with pytest.raises(LedgerError, match="the ledger cannot be reached"):
        stack.hold(D("0.10"), None, "while down")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert isinstance(stack.hold(D("0.10"), None, "after"), LedgerHold)
    ledger.flush()
    assert [(e.label, e.state) for e in ledger.entries()] == [
        ("before", "settled"),
        ("after", "held"),
    ]
    ledger.close()


def _hammer(url: str, data_dir: str, worker: int, results: multiprocessing.Queue[object]) -> None:
    """One process: holds of random sizes against a tight day budget until refused five
    times in a row; settles half at their worst case and the rest lower."""
    import random

    ledger = open_ledger(url, Path(data_dir), what=f"worker {worker}")
    stack = Stack(ledger, [spec("global", "day", "1.00"), spec("session", "run", "0.30")], Scopes())
    rng = random.Random(worker)
    refused = held = 0
    while refused < 5:
        amount = D(rng.randint(1, 40)) / 1000
        got = stack.hold(amount, Scopes(session=f"s{rng.randint(0, 7)}"), f"w{worker}")
        if isinstance(got, Refused):
            refused += 1
            continue
        refused, held = 0, held + 1
        stack.settle(got, amount if rng.random() < 0.5 else amount / 2)
    ledger.close()
    results.put(held)


@pytest.mark.parametrize("workers", [4])
def test_processes_reserving_at_once_never_pass_a_budget(
    url: str, tmp_path: Path, workers: int
) -> None:
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[object] = ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(url, str(tmp_path), w, results)) for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert sum(int(results.get()) for _ in procs) > workers  # type: ignore[call-overload]
    ledger = open_ledger(url, tmp_path, heartbeat=False)
    entries = ledger.entries()
    assert all(e.state in ("settled", "released") for e in entries), [
        (e.id, e.state, e.label, e.amount, e.actual)
        for e in entries
        if e.state not in ("settled", "released")
    ]
    spent = sum((e.cost for e in entries), D(0))
    assert D("0.9") < spent <= D("1.00")
    per_session: dict[str | None, Decimal] = {}
    for e in entries:
        per_session[e.scopes.session] = per_session.get(e.scopes.session, D(0)) + e.cost
    assert max(per_session.values()) <= D("0.30")
    ledger.close()


async def test_a_caller_stopped_as_its_hold_is_granted_stops_and_leaves_nothing_held(
    opened: Callable[..., Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C as a hold was granted: Python 3.11's asyncio.wait_for, cancelled after the
    # future it awaited finished, returned its result and dropped the cancellation, so the
    # run went on with its next call and ended as completed (exit 0 in CI, not 130).
    stack = Stack(opened(), [spec("global", "day", "1.00")], Scopes(session="s"))
    submitted: list[concurrent.futures.Future[Any]] = []
    submit = stack.ledger.submit

    def recorded(*args: Any) -> concurrent.futures.Future[Any]:
        submitted.append(submit(*args))
        return submitted[-1]

    monkeypatch.setattr(stack.ledger, "submit", recorded)
    task = asyncio.create_task(stack.hold_async(D("0.60"), None, "stopped"))
    await asyncio.sleep(0)  # it has asked, and waits
    assert isinstance(submitted[0].result(timeout=30), LedgerHold)  # granted; the loop waits
    task.cancel()  # the signal, before the caller woke to its hold
    with pytest.raises(asyncio.CancelledError):
        await task
    stack.ledger.flush()
    stack.ledger.flush()  # its release, queued as it went
    held = await stack.hold_async(D("1.00"), None, "all of it")
    assert isinstance(held, LedgerHold), held


async def test_callers_that_go_while_their_holds_are_written_leave_nothing_held(
    opened: Callable[..., Ledger],
) -> None:
    # A sub-agent stopped while its hold was being written: the writer thread used to die
    # on the cancelled future (InvalidStateError), and every later hold waited for nothing.
    stack = Stack(opened(), [spec("global", "day", "1.00")], Scopes(session="s"))
    for delay in (0.0, 0.0, 0.0005, 0.001, 0.002, 0.005, 0.01):
        tasks = [
            asyncio.create_task(stack.hold_async(D("0.10"), None, f"gone {i}")) for i in range(8)
        ]
        await asyncio.sleep(delay)
        for task in tasks:
            task.cancel()
        for got in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(
                got, LedgerHold
            ):  # granted before its caller went: the caller's to settle
                stack.settle(got, None)
    stack.ledger.flush()
    stack.ledger.flush()  # the releases queued as the last holds were granted
    held = await stack.hold_async(D("1.00"), None, "all of it")
    assert isinstance(held, LedgerHold), held
