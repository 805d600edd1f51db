"""The proxy's dashboard (issue 17): rows, gauge and cache panel fed by proxied calls; F2/F3
change the proxy's cap live, in the app's steps (issue 27)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anthropic
import httpx2
import pytest

from tests.support.loopback import LoopbackAPI
from tests.support.proxy_harness import KEY, MODEL
from tuiagent.config import Settings
from tuiagent.cost.budget import Budget
from tuiagent.cost.pricing import Pricer
from tuiagent.proxy.meter import Meter
from tuiagent.proxy.server import ProxyApp, ProxyServer, bind
from tuiagent.runs.log import RunLog
from tuiagent.ui.proxy import ProxyDashboard
from tuiagent.ui.widgets.cache import CachePanel
from tuiagent.ui.widgets.gauge import BudgetGauge
from tuiagent.ui.widgets.sessions import CallsTable, GroupsTable

SYSTEM = [
    {
        "type": "text",
        "text": "You are a careful assistant for a large codebase. " * 300,
        "cache_control": {"type": "ephemeral"},
    }
]


async def test_the_dashboard_shows_each_call_and_its_keys_move_the_proxys_cap(
    tmp_path: Path,
) -> None:
    meter = Meter(Budget(Decimal("0.50"), name="proxy"), Pricer(), RunLog(tmp_path, "p"), "p")
    with LoopbackAPI() as api:
        server = ProxyServer(ProxyApp(meter, api.base_url), bind("127.0.0.1", 0))
        app = ProxyDashboard(
            server, meter, Settings().with_changes(budget_step_usd=Decimal("0.25"))
        )
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.url, max_retries=0)
                answers = [
                    await client.messages.create(
                        model=MODEL,
                        max_tokens=200,
                        system=SYSTEM,
                        messages=[{"role": "user", "content": "hi"}],  # type: ignore[arg-type]
                    )
                    for _ in range(2)
                ]
                await client.close()
                for _ in range(50):
                    await pilot.pause(0.02)
                    if app.query_one(CallsTable).row_count == 2:
                        break
                table = app.query_one(CallsTable)
                gauge = app.query_one(BudgetGauge)
                assert table.row_count == 2
                row = [str(c) for c in table.get_row_at(0)]
                assert row[1:3] == ["AsyncAnthropic", "sonnet-4-5"]  # the async SDK says so
                assert gauge.state.settled == meter.budget.settled > 0
                assert answers[1].usage.cache_read_input_tokens > 0
                assert (
                    app.query_one(CachePanel).read_tokens
                    == answers[1].usage.cache_read_input_tokens
                )
                await pilot.press("f3")
                await pilot.pause()
                assert meter.budget.cap == Decimal("0.75") == gauge.state.cap
                caps = []
                for _ in range(4):  # the app's steps: below the step, by the cap's own size
                    await pilot.press("f2")
                    caps.append(meter.budget.cap)
                await pilot.pause()
                assert caps == [Decimal(c) for c in ("0.5", "0.25", "0.2", "0.1")]
                assert gauge.state.cap == Decimal("0.1") and "cap $0.10" in gauge.text()
        finally:
            server.stop()
            meter.finish()


async def test_a_refused_request_is_a_row_of_the_table(tmp_path: Path) -> None:
    meter = Meter(Budget(Decimal("0.50"), name="proxy"), Pricer(), RunLog(tmp_path, "p"), "p")
    with LoopbackAPI() as api:
        server = ProxyServer(ProxyApp(meter, api.base_url), bind("127.0.0.1", 0))
        app = ProxyDashboard(server, meter, Settings())
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                async with httpx2.AsyncClient() as client:
                    refused = await client.post(
                        server.url + "/v1/messages",
                        json={"model": MODEL, "max_tokens": "4096", "messages": []},
                        headers={"x-api-key": KEY, "user-agent": "curl/8.5"},
                    )
                assert refused.status_code == 400
                table = app.query_one(CallsTable)
                for _ in range(50):
                    await pilot.pause(0.02)
                    if table.row_count == 1:
                        break
                row = [str(cell) for cell in table.get_row_at(0)]
                assert row[:3] == ["1", "curl", "sonnet-4-5"]
                assert (
                    row[-1].startswith("refused: ") and "before sending" not in row[-1]
                )  # why, once
                assert api.requests == []
        finally:
            server.stop()
            meter.finish()


async def test_the_dashboard_has_a_row_per_budget_in_use(tmp_path: Path) -> None:
    from tuiagent.cost.budget import open_run_budget
    from tuiagent.ledger import BudgetSpec, Scopes, Window

    settings = Settings().with_changes(
        ledger_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        budgets=(
            BudgetSpec("global", Window.parse("day"), Decimal("1")),
            BudgetSpec("session", Window.parse("run"), Decimal("0.20")),
        ),
    )
    budget = open_run_budget(settings, Scopes(run="p"), what="test proxy", name="proxy")
    meter = Meter(budget, Pricer(), RunLog(tmp_path, "p"), "p")
    with LoopbackAPI() as api:
        server = ProxyServer(ProxyApp(meter, api.base_url), bind("127.0.0.1", 0))
        app = ProxyDashboard(server, meter, settings)
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                for session in ("alpha", "beta"):
                    client = anthropic.AsyncAnthropic(
                        api_key=KEY,
                        base_url=server.url,
                        max_retries=0,
                        default_headers={"x-claude-code-session-id": session},
                    )
                    await client.messages.create(
                        model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "hi"}]
                    )
                    await client.close()
                rows = app.query_one("#proxy-budgets")
                for _ in range(100):
                    await pilot.pause(0.02)
                    text = str(rows.render())
                    if "session run session beta" in text:
                        break
                lines = text.splitlines()
                assert lines[0].startswith("session run session beta: $0.0")
                assert any(line.startswith("global day: $0.0") for line in lines)
                assert any("session run session alpha" in line for line in lines)
                assert "$0.0000 held" in text and "never resets" in text and "UTC, in " in text
                assert rows.has_class("-shown")
        finally:
            server.stop()
            meter.finish()
            budget.close()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_two_sessions_and_a_sub_agent_are_grouped_live(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    """Client, then session, then agent (the sub-agent under its session's own agent), each
    with its calls, spend, its budget in the ledger and cache hit rate; each key's rate
    limits, as the upstream's headers say them, by the key's hash."""
    from tuiagent.cost.budget import open_run_budget
    from tuiagent.ledger import BudgetSpec, Scopes, Window

    settings = Settings().with_changes(
        ledger_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        budgets=(BudgetSpec("session", Window.parse("run"), Decimal("0.50")),),
    )
    budget = open_run_budget(settings, Scopes(run="p"), what="test proxy", name="proxy")
    meter = Meter(budget, Pricer(), RunLog(tmp_path, "p"), "p")
    agent = "claude-cli/2.1.197 (external, sdk-cli)"
    with LoopbackAPI() as api:
        server = ProxyServer(ProxyApp(meter, api.base_url), bind("127.0.0.1", 0))
        app = ProxyDashboard(server, meter, settings)
        try:
            async with app.run_test(size=size) as pilot:
                calls = [
                    {"x-claude-code-session-id": "sess-a"},
                    {"x-claude-code-session-id": "sess-b"},
                    {"x-claude-code-session-id": "sess-a"},
                    {"x-claude-code-session-id": "sess-a", "x-claude-code-agent-id": "agent-1"},
                ]
                for headers in calls:
                    client = anthropic.AsyncAnthropic(
                        api_key=KEY,
                        base_url=server.url,
                        max_retries=0,
                        default_headers={**headers, "user-agent": agent},
                    )
                    await client.messages.create(
                        model=MODEL,
                        max_tokens=200,
                        system=SYSTEM,
                        messages=[{"role": "user", "content": "hi"}],  # type: ignore[arg-type]
                    )
                    await client.close()
                groups = app.query_one(GroupsTable)
                for _ in range(100):
                    await pilot.pause(0.02)
                    if groups.row_count == 5 and app.query_one(CallsTable).row_count == 4:
                        break
                rows = [[str(c) for c in groups.get_row_at(i)] for i in range(groups.row_count)]
                names = [r[0] for r in rows]
                assert [n.strip() for n in names] == [
                    "claude-cli/2.1.197",
                    "session sess-a",
                    "main",
                    "└ agent-1",
                    "session sess-b",
                ]
                depth = [len(n) - len(n.lstrip()) for n in names]
                assert depth[0] < depth[1] < depth[2] < depth[3] and depth[4] == depth[1]
                assert [r[1] for r in rows] == ["4", "3", "2", "1", "1"]
                # The sessions' budgets, from the ledger; the agents have none of their own.
                assert rows[1][3].endswith("of $0.50") and rows[4][3].endswith("of $0.50")
                assert rows[2][3] == "-"
                # sess-a's first call wrote the cache, the three others read it.
                assert rows[1][4] == "67%" and rows[4][4] == "100%"
                spent = sum(Decimal(r[2].lstrip("$")) for r in rows[1:] if "session" in r[0])
                assert spent == Decimal(rows[0][2].lstrip("$"))
                limits = str(app.query_one("#proxy-limits").render())
                assert limits.startswith("key k-") and "requests " in limits
                assert "/4,000" in limits or size[0] < 100  # narrow: what is left, no more
                (seen,) = meter.rate_limits.snapshot()
                left, size = seen.limits["requests"].remaining, seen.limits["requests"].limit
                assert left is not None and size is not None and left < size
                assert app.query_one("#proxy-limits").has_class("-shown")
                screen = app.export_screenshot()
                assert KEY not in screen and KEY[-12:] not in screen
        finally:
            server.stop()
            meter.finish()
            budget.close()
