"""The guarantee: no sequence of answers, errors and retries makes a run spend past its cap."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.loopback import API_ERROR, OVERLOADED, RATE_LIMITED, Fault, FaultyModel, status
from tuiagent.config import Settings
from tuiagent.session import open_session

PROMPTS = [
    "Which file here is largest?",
    "What do notes.txt and big.txt say?",
    "Search for TODO and list the files",
    "Explain the design of this project",
]
FAULTS = st.sampled_from(
    [
        status(429, RATE_LIMITED, **{"retry-after": "0"}),
        status(529, OVERLOADED),
        status(500, API_ERROR),
        Fault("drop"),
        Fault("stream_error"),
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prompt=st.sampled_from(PROMPTS),
    file_kb=st.integers(0, 60),
    cap=st.decimals(min_value=Decimal("0.0005"), max_value=Decimal("0.3"), places=4),
    tier=st.sampled_from(["auto", "fast", "balanced", "deep"]),
    faults=st.lists(FAULTS, max_size=6),
    greedy=st.booleans(),
    max_tokens=st.sampled_from([300, 1024, 4096, 8192]),
)
def test_spend_never_exceeds_cap(
    tmp_path: Path,
    prompt: str,
    file_kb: int,
    cap: Decimal,
    tier: str,
    faults: list[Fault],
    greedy: bool,
    max_tokens: int,
) -> None:
    ws = Path(tempfile.mkdtemp(dir=tmp_path))
    (ws / "notes.txt").write_text("TODO: check\n" * 20)
    (ws / "big.txt").write_text(("lorem ipsum dolor sit amet 12345\n" * 32) * file_kb)
    # A greedy answer of 8,192 tokens streamed a word to an event was 8,192 events to parse
    # (most of this test's time); the faults cut before the first delta, and the meter
    # reads usage, not deltas: 16 words to an event tests the same.
    model = FaultyModel(faults, fill_max_tokens=greedy, always_tool=greedy, words_per_delta=16)
    cfg = Settings().with_changes(
        log_dir=tmp_path / "logs",
        max_cost_usd=cap,
        tier=tier,
        max_turns=40,
        max_tokens=max_tokens,
        max_retries=3,
    )
    session = open_session(cfg, workspace=ws, offline=True, offline_model=model)

    async def no_sleep(_: float) -> None:
        return None

    session.agent.caller.meter.sleep = no_sleep

    async def run() -> None:
        session.agent.start()
        async for _ in session.agent.send(prompt):
            pass

    asyncio.run(run())
    end = session.agent.finish()
    assert session.agent.spending.spent <= cap
    assert Decimal(str(end.record.to_json()["total_cost_usd"])) <= cap
