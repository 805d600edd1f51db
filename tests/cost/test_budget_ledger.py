"""`Budget` reserving against the ledger: the run's cap in memory, the config's `[[budgets]]`
in the ledger every process shares. A hold goes only if it fits both; a refused one leaves
nothing behind; a sub-agent's holds are written once, under its own agent scope; a ledger
that cannot be reached refuses before anything is sent. And the faces: `tuiagent run` halts
naming the budget that stopped it and when it resets, `tuiagent budgets` and `report --by`
read the same ledger, and a ledger that cannot be written sends nothing."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tuiagent.config import Settings, settings_from_toml
from tuiagent.cost.budget import Budget, Stack, open_run_budget
from tuiagent.ledger import LedgerError, Scopes, open_ledger
from tuiagent.ledger.scopes import BudgetSpec
from tuiagent.ledger.windows import Window

D = Decimal


def settings_with(tmp_path: Path, toml: str, url: str = "") -> Settings:
    import tomllib

    data = tomllib.loads(toml)
    if url:
        data["ledger_url"] = url
    return settings_from_toml(data, "test")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


BUDGETS = """
max_cost_usd = 5
[[budgets]]
scope = "global"
window = "day"
max_cost_usd = 1.00
[[budgets]]
scope = "agent"
window = "run"
max_cost_usd = 0.10
"""


def test_a_hold_must_fit_the_cap_and_every_budget(url: str, tmp_path: Path) -> None:
    settings = settings_with(tmp_path, BUDGETS, url)
    budget = open_run_budget(settings, Scopes(session="s1"), what="test")
    other = open_run_budget(settings, Scopes(session="s2"), what="another process")
    try:
        first = other.reserve(D("0.70"), "elsewhere")
        assert first is not None
        assert budget.remaining == D("0.30")  # the cap leaves $5: the day budget binds
        line = budget.binding()
        assert line is not None and line.title == "global day" and line.left == D("0.30")
        assert budget.reserve(D("0.31"), "too much") is None
        assert (budget.in_flight, budget.snapshot().holds) == (0, 0)  # nothing left behind
        hold = budget.reserve(D("0.30"), "fits")
        assert hold is not None and budget.in_flight == D("0.30")
        snap = budget.snapshot()
        assert snap.tightest is not None and snap.tightest.title == "global day"
        assert snap.tightest.left == 0
        first.settle(D("0.05"))
        other.stack.ledger.flush()  # type: ignore[union-attr]
        assert budget.remaining == D("0.65")
        hold.settle(D("0.01"))
        assert budget.settled == D("0.01")
        # A sub-agent: its holds count in the parent's cap, the day budget, and its own
        # agent budget (a sub-agent's only: the parent's calls have no agent).
        child = budget.slice(D("1"), "a1")
        assert child.stack is not None and child.stack.scopes.agent == "s1/a1"
        assert child.reserve(D("0.11"), "sub") is None  # over the agent's $0.10
        sub = child.reserve(D("0.10"), "sub")
        assert sub is not None and budget.in_flight == D("0.10")
        assert budget.reserve(D("0.20"), "parent") is not None  # no agent budget for it
        sub.settle(D("0.02"))
        ledger = budget.stack.ledger  # type: ignore[union-attr]
        ledger.flush()
        agents = [e.scopes.agent for e in ledger.entries() if e.label == "sub"]
        assert agents == ["s1/a1"]  # written once, by the slice, never by the parent
    finally:
        budget.close()
        other.close()


def test_a_ledger_that_cannot_be_reached_refuses_and_leaves_the_cap_untouched(
    pg_url: str, tmp_path: Path
) -> None:
    import psycopg

    settings = settings_with(tmp_path, BUDGETS, pg_url)
    budget = open_run_budget(settings, Scopes(session="s"), what="test")
    name = pg_url.rsplit("/", 1)[1]
    admin = pg_url.rsplit("/", 1)[0] + "/postgres"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        with pytest.raises(LedgerError, match="the ledger cannot be reached"):
            budget.reserve(D("0.10"), "while down")
        with pytest.raises(LedgerError):
            budget.remaining_for(Scopes(model="claude-haiku-5-5"))
        assert budget.remaining == 0  # nothing can be sent
        assert (budget.in_flight, budget.snapshot().holds) == (0, 0)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        budget.close()


def test_a_budget_without_a_ledger_is_the_cap_alone() -> None:
    budget = Budget(D("1"))
    assert budget.binding() is None and budget.snapshot().budgets == ()
    assert budget.remaining_for(Scopes(model="x")) == D("1")


def test_model_budgets_bind_only_calls_of_their_model(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'l.sqlite3'}", tmp_path)
    spec = BudgetSpec("model", Window.parse("week"), D("0.05"), "claude-fable-5-2")
    tiers = {"claude-fable-5-2": "deep"}
    stack = Stack(
        ledger,
        [spec, BudgetSpec("tier", Window.parse("day"), D("0.5"), "deep")],
        Scopes(),
        tier_of=tiers.get,
    )
    budget = Budget(D("1"), stack=stack)
    deep = Scopes(model="claude-fable-5-2")
    assert budget.remaining_for(deep) == D("0.05")
    assert budget.remaining_for(Scopes(model="claude-haiku-5-5")) == D("1")
    hold = budget.reserve(D("0.04"), "deep", deep)
    assert hold is not None
    assert {line.title for line in hold.entry.lines} == {
        "model week claude-fable-5-2",
        "tier day deep",
    }  # type: ignore[union-attr]
    budget.close()


CONFIG = """
[[budgets]]
scope = "global"
window = "day"
max_cost_usd = {day}

[[budgets]]
scope = "session"
window = "run"
max_cost_usd = 0.20
"""


def test_run_halts_naming_the_budget_and_the_ledger_lists_it(
    tmp_path: Path, workspace: Path
) -> None:
    config = tmp_path / "cfg.toml"
    config.write_text(CONFIG.format(day=1))
    common = ["--offline", "--config", str(config), "--workspace", str(workspace)]
    first = run_cli("run", "Which file here is largest? then read it", *common)
    assert first.returncode == 0, first.stderr
    listed = run_cli("budgets", "--config", str(config), "--json")
    spent = next(b["spent_usd"] for b in json.loads(listed.stdout)["budgets"])
    # Today's budget: what that run spent and half as much again: the next run cannot fit.
    cap = Decimal(str(spent)) * 3 / 2
    config.write_text(CONFIG.format(day=cap))
    second = run_cli("run", "Which file here is largest? then read it", *common)
    assert second.returncode == 3, second.stderr
    halt = [line for line in second.stderr.splitlines() if "halted" in line]
    assert len(halt) == 1 and 'the budget "global day" ($0.' in halt[0], second.stderr
    assert ", simulated: " in halt[0] and "resets " in halt[0] and " UTC, in " in halt[0]
    listed = run_cli("budgets", "--config", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    budgets = json.loads(listed.stdout)["budgets"]
    day = next(b for b in budgets if b["budget"] == "global day" and b["simulated"])
    assert spent <= day["spent_usd"] <= float(cap) and day["held_usd"] == 0
    sessions = [b for b in budgets if b["budget"] == "session run"]
    assert len(sessions) == 1 and sessions[0]["simulated"]  # the second run held nothing
    by = run_cli("report", "--by", "session", "--config", str(config), "--json")
    assert by.returncode == 0, by.stderr
    rows = json.loads(by.stdout)["rows"]
    assert len(rows) == 1 and rows[0]["spent_usd"] == pytest.approx(day["spent_usd"])
    assert rows[0]["session"] == sessions[0]["value"] and rows[0]["calls"] >= 2
    table = run_cli("budgets", "--config", str(config))
    assert "global day (simulated)" in table.stdout and "never resets" in table.stdout


def test_a_ledger_that_cannot_be_written_sends_nothing(tmp_path: Path, workspace: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    config = tmp_path / "cfg.toml"
    config.write_text(f'ledger_url = "sqlite:///{blocked}/ledger.sqlite3"\n')
    log_dir = tmp_path / "logs"
    done = run_cli(
        "run",
        "hello",
        "--offline",
        "--config",
        str(config),
        "--workspace",
        str(workspace),
        "--log-dir",
        str(log_dir),
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"tuiagent: the ledger cannot be written ({blocked}/ledger.sqlite3: Not a directory)"
    ]
    assert not log_dir.exists() or not list(log_dir.glob("*.jsonl"))  # no run was started


async def test_a_resumed_session_goes_on_with_its_budgets(tmp_path: Path, workspace: Path) -> None:
    from tests.support.session import collect
    from tuiagent.runs.layout import transcript_file
    from tuiagent.session import open_session

    settings = Settings().with_changes(log_dir=tmp_path / "logs")
    runs = []
    resume = None
    for _ in range(3):
        session = open_session(settings, workspace=workspace, offline=True, resume=resume)
        await collect(session, "List the files here.")
        session.agent.finish()
        runs.append(session.agent)
        resume = transcript_file(session.log_path)
    first = runs[0].state.run_id
    assert [a.session for a in runs] == [first, first, first]
    ledger = open_ledger("", tmp_path / "data" / "tuiagent")
    by_run = {e.scopes.run: e.scopes.session for e in ledger.entries()}
    assert by_run == {a.state.run_id: first for a in runs}
    ledger.close()


async def test_the_proxys_reserves_do_not_stop_its_event_loop(url: str, tmp_path: Path) -> None:
    """The proxy reserves with `reserve_async`: while the ledger commits a hold, the other
    streams go on; many at once go in one batch, and never past a budget."""
    import asyncio

    settings = settings_with(tmp_path, BUDGETS, url)
    budget = open_run_budget(settings, Scopes(), what="proxy")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(ticker())
    try:
        first = await budget.reserve_async(D("0.01"), "one", Scopes(session="a"))
        assert first is not None and ticks > 0  # the loop ran while the hold was written
        holds = await asyncio.gather(
            *(budget.reserve_async(D("0.05"), f"#{i}", Scopes(session=f"s{i}")) for i in range(40))
        )
        taken = [h for h in holds if h is not None]
        assert len(taken) == 19  # $1.00 a day: $0.01 and 19 of $0.05
        for h in [first, *taken]:
            h.settle(h.amount)
        budget.stack.ledger.flush()  # type: ignore[union-attr]
        line = budget.binding()
        assert line is not None and line.spent == D("0.96") and line.held == 0
    finally:
        beat.cancel()
        budget.close()
