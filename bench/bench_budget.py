"""The hard cap over 1,000 random offline sessions whose tasks need more than the cap.

Every session uses the offline model's stress modes (every answer uses all of max_tokens
and asks for another tool call), random caps, tiers, max_tokens and transient faults.
Figures: the largest spend/cap (must be <= 1.00) and the median (target >= 0.90: a cap that
stops far too early is a failure too).

The hostile mix: as many sessions again against tests/support/hostile.py's server (cut tool JSON,
non-JSON data, missing fields, bad usage, output above max_tokens, a swapped model, drops,
bad counts), with the cap moved while calls are in flight. Its figure is what the server
billed within what each request allowed, over the cap in force at the end.
BENCH_BUDGET_SESSIONS sets the count of each (default 1,000). Sessions run in-process (the
offline and hostile models are the SDK's transport: the real client and SSE parser), each
from its own seed, spread over BENCH_BUDGET_WORKERS processes (default: the CPU count).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import statistics
import tempfile
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2

from tuiagent.config import Settings
from tuiagent.offline import OfflineModel
from tuiagent.session import open_session

SESSIONS = int(os.environ.get("BENCH_BUDGET_SESSIONS", "1000"))
# Every answer fills max_tokens and asks for a tool. Its text goes 64 words to an event: the
# cap is settled from the usage events, never from how the text was cut, and one event per
# word made 1,000 sessions take most of an hour.
_STRESS: dict[str, Any] = {"fill_max_tokens": True, "always_tool": True, "words_per_delta": 64}
_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


class _Flaky(OfflineModel):
    """Some calls fail with a 529 before anything is billed."""

    def __init__(self, failures: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.failures = deque(range(failures))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self.failures and not request.url.path.endswith("count_tokens"):
            self.failures.popleft()
            return httpx2.Response(529, json=_OVERLOADED)
        return await super().handle_async_request(request)


def _random_settings(rng: random.Random, logs: Path) -> Settings:
    return Settings().with_changes(
        log_dir=logs,
        max_cost_usd=Decimal(str(round(rng.uniform(0.01, 0.5), 4))),
        tier=rng.choice(["auto", "fast", "balanced", "deep"]),
        max_tokens=rng.choice([1024, 2048, 4096, 8192]),
        max_turns=1000,
    )


async def _session(rng: random.Random, ws: Path, logs: Path) -> float:
    settings = _random_settings(rng, logs)
    model = _Flaky(rng.randint(0, 3), **_STRESS)
    session = open_session(settings, workspace=ws, offline=True, offline_model=model)

    async def no_sleep(_: float) -> None:
        return None

    session.agent.caller.meter.sleep = no_sleep
    session.agent.start()
    async for _ in session.agent.send(
        rng.choice(["List the files here", "Which file is largest?"])
    ):
        pass
    session.agent.finish()
    return float(
        session.agent.spending.spent / settings.run.max_cost_usd
    )  # float only for the figures: exact > 1 is
    # what counts, and Decimal spent <= cap is asserted by tests/agent/test_cap_property.py


async def _hostile(rng: random.Random, ws: Path, logs: Path) -> tuple[float, bool]:
    from tests.support.hostile import ANSWERS, COUNTS, HostileModel

    settings = _random_settings(rng, logs)
    answers = [rng.choice(ANSWERS) for _ in range(rng.randint(0, 20))]
    counts = [rng.choice(COUNTS) for _ in range(rng.randint(0, 4))]
    moves = [Decimal(str(round(rng.uniform(0.005, 0.5), 4))) for _ in range(rng.randint(0, 3))]
    holder: list[Any] = []

    def move(_: int) -> None:
        if moves and holder and rng.random() < 0.3:
            holder[0].set_cap(moves.pop())

    model = HostileModel(answers, counts, on_request=move, **_STRESS)
    session = open_session(settings, workspace=ws, offline=True, offline_model=model)
    agent = session.agent
    holder.append(agent)

    async def no_sleep(_: float) -> None:
        return None

    agent.caller.meter.sleep = no_sleep
    agent.start()
    async for _ in agent.send(rng.choice(["List the files here", "Which file is largest?"])):
        pass
    agent.finish()
    billed = model.bill(agent.pricer)
    return float(billed / agent.budget.cap), billed > agent.budget.cap  # (exact, in Decimal)


SEED = 20261128


def _sessions(kind: str, seeds: list[int], root: str) -> list[tuple[float, bool]]:
    """One worker's share: each session from its own seed, one after another."""
    ws, logs = Path(root) / "ws", Path(root) / f"logs-{os.getpid()}"

    async def run_all() -> list[tuple[float, bool]]:
        out = []
        for seed in seeds:
            rng = random.Random(seed)
            if kind == "hostile":
                out.append(await _hostile(rng, ws, logs))
            else:
                ratio = await _session(rng, ws, logs)
                out.append((ratio, ratio > 1))
        return out

    return asyncio.run(run_all())


def run() -> list[tuple[str, str, str]]:
    rng = random.Random(SEED)
    workers = int(os.environ.get("BENCH_BUDGET_WORKERS", str(os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        for i in range(12):
            (ws / f"file{i}.txt").write_text("data " * rng.randint(10, 3000))
        results: dict[str, list[tuple[float, bool]]] = {"honest": [], "hostile": []}
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            jobs = []
            for n, kind in enumerate(results):
                seeds = [SEED + 1_000_000 * (n + 1) + i for i in range(SESSIONS)]
                for chunk in range(0, SESSIONS, 25):
                    share = seeds[chunk : chunk + 25]
                    jobs.append((kind, pool.submit(_sessions, kind, share, tmp)))
            for kind, job in jobs:
                results[kind].extend(job.result())
    ratios = [r for r, _ in results["honest"]]
    hostile = [r for r, _ in results["hostile"]]
    over = [o for _, o in results["hostile"]]
    return [
        (
            f"hostile mix: largest billed/cap over {SESSIONS} sessions",
            f"{max(hostile):.6f}",
            "<= 1.00",
        ),
        ("hostile mix: sessions billed above their cap (exact)", str(sum(over)), "0"),
        ("hostile mix: median billed/cap", f"{statistics.median(hostile):.4f}", "-"),
        (f"largest spend/cap over {SESSIONS} sessions", f"{max(ratios):.6f}", "<= 1.00"),
        ("sessions that spent more than their cap", str(sum(r > 1 for r in ratios)), "0"),
        ("median spend/cap", f"{statistics.median(ratios):.4f}", ">= 0.90"),
        ("lowest spend/cap", f"{min(ratios):.4f}", "-"),
    ]
