"""Greedy sub-agents under random caps and parallelism never pass the cap or their slices,
and every call they make is recorded once."""

from __future__ import annotations

import asyncio
import json
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.agent.test_cap_property import FAULTS
from tests.support.loopback import Fault, FaultyModel
from tuiagent.agent.delegate import WORKER_NOTE
from tuiagent.agent.events import SubAgentChanged
from tuiagent.config import Settings
from tuiagent.runs.log import read_records
from tuiagent.session import open_session


class _GreedyWorkers(FaultyModel):
    """Greedy for sub-agents only: each of their answers fills max_tokens and asks for
    another tool, so only their slice (or max_turns) stops them. Counts the messages
    requests that reached it (count_tokens aside)."""

    def __init__(self, faults: list[Fault], **kwargs: Any) -> None:
        super().__init__(faults, **kwargs)
        self.sent = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not request.url.path.endswith("count_tokens"):
            self.sent += 1
        return await super().handle_async_request(request)

    def _content(self, body: dict[str, Any], max_tokens: int) -> tuple[list[dict[str, Any]], str]:
        worker = WORKER_NOTE in json.dumps(body.get("system"))
        self.fill_max_tokens = self.always_tool = worker
        return super()._content(body, max_tokens)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cap=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.2"), places=4),
    parallel=st.integers(1, 4),
    files=st.integers(2, 6),
    max_tokens=st.sampled_from([512, 2048, 8192]),
    faults=st.lists(FAULTS, max_size=4),
)
def test_greedy_sub_agents_stay_within_the_cap_and_their_slices(
    tmp_path: Path,
    cap: Decimal,
    parallel: int,
    files: int,
    max_tokens: int,
    faults: list[Fault],
) -> None:
    ws = Path(tempfile.mkdtemp(dir=tmp_path))
    names = [f"f{i}.txt" for i in range(files)]
    for i, name in enumerate(names):
        (ws / name).write_text(f"file {i}\n" + "lorem ipsum dolor 123\n" * (40 * i))
    model = _GreedyWorkers(faults, words_per_delta=16)  # (as in test_cap_property)
    cfg = Settings().with_changes(
        log_dir=tmp_path / "logs",
        max_cost_usd=cap,
        tier="balanced",
        max_turns=6,
        max_tokens=max_tokens,
        max_parallel_agents=parallel,
    )
    session = open_session(cfg, workspace=ws, offline=True, offline_model=model)
    agent = session.agent

    async def no_sleep(_: float) -> None:
        return None

    agent.caller.meter.sleep = no_sleep
    ends: dict[str, SubAgentChanged] = {}

    async def run() -> None:
        agent.start()
        async for event in agent.send(f"Summarize {', '.join(names)} in parallel"):
            if isinstance(event, SubAgentChanged):
                ends[event.agent] = event

    asyncio.run(run())
    end = agent.finish().record.to_json()
    assert agent.budget.settled <= cap
    assert agent.spending.spent <= cap
    assert Decimal(str(end["total_cost_usd"])) <= cap
    assert agent.budget.in_flight == 0
    for sub in ends.values():
        assert sub.spent <= sub.slice_usd, sub
        assert sub.state != "running"
    records, bad = read_records(agent.log.path)
    assert bad == 0
    delegated = [r for r in records if r["type"] == "turn" and "delegate" in r["tool_calls"]]
    assert bool(delegated) == bool(ends)  # (the faults may use up the retries before)
    calls = [r for r in records if r["type"] in ("turn", "attempt") and r.get("sent", True)]
    assert len(calls) == model.sent  # every call that reached the model, recorded once
    by_agent: dict[str, Decimal] = {}
    for r in calls:
        by_agent[r["agent"]] = by_agent.get(r["agent"], Decimal(0)) + Decimal(str(r["cost_usd"]))
    for name, sub in ends.items():
        assert abs(by_agent.get(name, Decimal(0)) - sub.spent) < Decimal("1e-9")
