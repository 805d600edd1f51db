"""The estimate before spending: over a scripted 50-message offline session, the share of
messages whose actual cost fell inside the range (p50-p90) shown before sending.

The workspace first gets a small eval suite run on it (4 tasks x 2 repeats on the fast
tier): the range is drawn from its messages and from the session's own earlier ones, as
`tuiagent run --estimate` and the app draw it. Before each message the estimate is made
exactly as the app makes it (nothing sent); then the message is sent and its cost read.
Also printed: how often the first call's input was priced to the exact figure it billed,
and the share at or below the range's top (p90).
"""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path

from bench.long_session import make_workspace, script
from tuiagent.agent.estimate import INPUT_KINDS
from tuiagent.config import Settings
from tuiagent.eval.runner import ArmPlan, run_suite
from tuiagent.eval.suite import Suite, Task
from tuiagent.runs.log import read_records
from tuiagent.session import open_session

MESSAGES = 50
FACTS = 10
LARGE = 6
GOAL = Decimal("0.8")


def _suite(root: Path) -> Suite:
    prompts = {
        "read": "What does notes/p01.txt say?",
        "log": "Read data/worker01.log and tell me what went wrong.",
        "search": "Search for TODO",
        "list": "List the files here.",
    }
    tasks = tuple(
        Task(name, prompt, root, None, None, (), None) for name, prompt in prompts.items()
    )
    return Suite("seed", root / "suite.toml", tasks, ())


async def _session(root: Path, logs: Path) -> list[tuple[object, Decimal, Decimal]]:
    settings = Settings().with_changes(log_dir=logs, max_cost_usd=Decimal("50"), tier="fast")
    await run_suite(
        _suite(root),
        [ArmPlan("fast", settings)],
        2,
        settings=settings,
        offline=True,
        log_dir=logs,
        parallel=2,
    )
    session = open_session(settings, workspace=root, offline=True)
    agent = session.agent
    agent.start()
    out = []
    for prompt in script(MESSAGES, FACTS, LARGE):
        shown = await agent.estimate(prompt)
        before = agent.spending.spent
        async for _ in agent.send(prompt):
            pass
        records, _ = read_records(agent.log.path)
        first = next(
            r for r in reversed(records) if r["type"] == "user"
        )  # this message's first agent turn follows its user record
        at = records.index(first)
        turn = next(r for r in records[at:] if r["type"] == "turn" and r["purpose"] == "agent")
        billed = sum(Decimal(str(turn["cost_breakdown_usd"].get(k, 0))) for k in INPUT_KINDS)
        out.append((shown, agent.spending.spent - before, billed))
    agent.finish()
    return out


def run() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "ws"
        make_workspace(root, facts=FACTS, large=LARGE)
        seen = asyncio.run(_session(root, tmp / "logs"))
    ranged = [(e, cost) for e, cost, _ in seen if e.p50_usd is not None]  # type: ignore[attr-defined]
    inside = sum(e.p50_usd <= cost <= e.p90_usd for e, cost in ranged)  # type: ignore[attr-defined]
    under = sum(cost <= e.p90_usd for e, cost in ranged)  # type: ignore[attr-defined]
    exact = sum(
        abs(e.first_call_usd - billed) <= Decimal("1e-9")  # type: ignore[attr-defined]
        for e, _, billed in seen
    )
    share = Decimal(inside) / len(seen)
    return [
        (
            f"{MESSAGES}-message offline session: actual cost inside the p50-p90 range shown",
            f"{share:.0%} ({inside}/{len(seen)}; {len(seen) - len(ranged)} had no range)",
            f">= {GOAL:.0%}",
        ),
        ("  at or below the range's top (p90)", f"{under}/{len(seen)}", "-"),
        ("first call's input priced to the exact amount billed", f"{exact}/{len(seen)}", "-"),
    ]


if __name__ == "__main__":
    for name, value, goal in run():
        print(f"{name}: {value}  (goal {goal})")
