"""The proxy's dashboard (issue 17): rows, gauge and cache panel fed by proxied calls; F2/F3
change the proxy's cap live, in the app's steps (issue 27)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anthropic
import httpx2

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
from tuiagent.ui.widgets.turns import TurnsTable

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
                    if app.query_one(TurnsTable).row_count == 2:
                        break
                table = app.query_one(TurnsTable)
                gauge = app.query_one(BudgetGauge)
                assert table.row_count == 2
                assert (
                    str(table.get_row_at(0)[1]) == "AsyncAnthropic/sonnet-4-5"
                )  # the async SDK says so
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
                table = app.query_one(TurnsTable)
                for _ in range(50):
                    await pilot.pause(0.02)
                    if table.row_count == 1:
                        break
                row = [str(cell) for cell in table.get_row_at(0)]
                assert row[:3] == ["1", "curl/sonnet-4-5", "refused"]
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
