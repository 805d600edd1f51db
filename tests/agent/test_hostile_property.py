"""The cap against hostile servers: whatever each answer and each count is, and however the
cap moves between and during calls, what the server billed (within what each request
allowed) stays within the cap, every request it saw is exactly one `turn` or `attempt`
record, and every run ends with `run_end` and no traceback."""

from __future__ import annotations

import asyncio
import json
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile import ANSWERS, COUNTS, HostileModel
from tuiagent.agent.loop import Agent
from tuiagent.config import Settings
from tuiagent.session import open_session

PROMPTS = ["Which file here is largest?", "What do notes.txt and big.txt say?", "Search for TODO"]
CAPS = st.decimals(min_value=Decimal("0.0005"), max_value=Decimal("0.2"), places=4)


def workspace(tmp: Path, file_kb: int) -> Path:
    ws = Path(tempfile.mkdtemp(dir=tmp))
    (ws / "notes.txt").write_text("TODO: check\n" * 20)
    (ws / "big.txt").write_text(("lorem ipsum dolor sit amet 12345\n" * 32) * file_kb)
    return ws


def records(agent: Agent) -> list[dict[str, Any]]:
    return [json.loads(line) for line in agent.log.path.read_text().splitlines()]


def check(agent: Agent, model: HostileModel, caps: list[Decimal]) -> None:
    recs = records(agent)
    assert recs[-1]["type"] == "run_end"
    calls = [r for r in recs if r["type"] in ("turn", "attempt")]
    # Every request the server saw is exactly one record (and none it did not see).
    assert len(calls) == model.seen == len(model.billed)
    for record, billed in zip(calls, model.billed, strict=True):
        assert record["model"] == billed.model
    # What the server billed within what each request allowed is within the cap in force
    # (the cap is never below settled + in flight, so it is never below what was allowed).
    assert model.bill(agent.pricer) <= agent.budget.cap
    assert agent.budget.in_flight == 0
    # The cap moved where the user moved it, or stayed at what was committed then: at most
    # what was settled (a server that billed past its reservation is spent all the same).
    assert agent.budget.cap in caps or agent.budget.cap <= max(*caps, agent.budget.settled)


HOSTILE = dict(
    answers=st.lists(st.sampled_from(ANSWERS), max_size=12),
    counts=st.lists(st.sampled_from(COUNTS), max_size=6),
    cap=CAPS,
    moves=st.lists(CAPS, max_size=4),
    during=st.booleans(),
    tier=st.sampled_from(["auto", "fast", "balanced", "deep"]),
    max_tokens=st.sampled_from([300, 1024, 4096]),
    greedy=st.booleans(),
    file_kb=st.integers(0, 40),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prompts=st.lists(st.sampled_from(PROMPTS), min_size=1, max_size=3), **HOSTILE)
def test_hostile_servers_never_pass_the_cap_headless(
    tmp_path: Path,
    prompts: list[str],
    answers: list[str],
    counts: list[str],
    cap: Decimal,
    moves: list[Decimal],
    during: bool,
    tier: str,
    max_tokens: int,
    greedy: bool,
    file_kb: int,
) -> None:
    ws = workspace(tmp_path, file_kb)
    pending = list(moves)
    holder: list[Agent] = []

    def move_cap(_: int) -> None:  # while a call is in flight
        if during and pending and holder:
            holder[0].set_cap(pending.pop(0))

    model = HostileModel(
        answers, counts, fill_max_tokens=greedy, always_tool=greedy, on_request=move_cap
    )
    cfg = Settings().with_changes(
        log_dir=tmp_path / "logs", max_cost_usd=cap, tier=tier, max_turns=12, max_tokens=max_tokens
    )
    session = open_session(cfg, workspace=ws, offline=True, offline_model=model)
    agent = session.agent
    holder.append(agent)

    async def no_sleep(_: float) -> None:
        return None

    agent.caller.meter.sleep = no_sleep

    async def run() -> None:
        agent.start()
        for prompt in prompts:
            async for _ in agent.send(prompt):
                pass
            if pending and not during:  # between calls
                agent.set_cap(pending.pop(0))

    asyncio.run(run())
    agent.finish()
    check(agent, model, [cap, *moves])
