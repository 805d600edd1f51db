"""An eval's summary, from its runs' logs through the report (costs, cache, the causes of
the costliest turns are the report's), as one JSON-able dict: what `--json` writes, what the
tables and the report screen show, what a later eval compares with (the CI gate)."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.agent.estimate import quantile
from tuiagent.cost.pricing import ZERO, Pricer, usd
from tuiagent.eval.runner import EvalRun, RunResult
from tuiagent.eval.suite import Suite
from tuiagent.report.build import build_report
from tuiagent.report.rows import RunRow, TurnRow

SCHEMA = 1
COSTLIEST = 3  # the costliest turns shown per task and arm


def spread(values: list[Decimal]) -> dict[str, float]:
    """mean, p50, p90 and max of `values` (money in USD, or counts)."""
    if not values:
        return {}
    mean = sum(values, ZERO) / len(values)
    return {
        "mean": usd(mean),
        "p50": usd(quantile(values, 0.5)),
        "p90": usd(quantile(values, 0.9)),
        "max": usd(max(values)),
    }


def _turn_p50(rows: list[tuple[int, TurnRow]]) -> dict[str, dict[str, Any]]:
    """Per turn number, over the repeats: the median cost and that turn's cause."""
    by_turn: dict[int, list[TurnRow]] = {}
    for _, row in rows:
        if row.agent == "main":
            by_turn.setdefault(row.turn, []).append(row)
    out = {}
    for turn in sorted(by_turn):
        median = quantile_row(by_turn[turn])
        out[str(turn)] = {"cost_usd": usd(median.cost), "cause": median.cause}
    return out


def quantile_row(rows: list[TurnRow]) -> TurnRow:
    ordered = sorted(rows, key=lambda r: r.cost)
    return ordered[max(math.ceil(0.5 * len(ordered)), 1) - 1]


def _arm_of_task(
    results: list[RunResult], runs: dict[str, RunRow], turns: dict[str, list[TurnRow]]
) -> dict[str, Any]:
    costs = [runs[r.run_id].cost for r in results]
    counts = [Decimal(runs[r.run_id].turns) for r in results]
    read = sum(runs[r.run_id].usage.cache_read_input_tokens for r in results)
    total = sum(runs[r.run_id].usage.total_input_tokens for r in results)
    rows = [(r.repeat, t) for r in results for t in turns.get(r.run_id, [])]
    checks = sorted({name for r in results for name in r.checks})
    return {
        "runs": [
            {
                "run_id": r.run_id,
                "repeat": r.repeat,
                "status": r.status,
                "halt_reason": r.halt_reason,
                "cost_usd": usd(runs[r.run_id].cost),
                "turns": runs[r.run_id].turns,
                "passed": r.passed,
                "checks": dict(r.checks),
                "reasons": dict(r.reasons),
                "answer": r.answer,
            }
            for r in sorted(results, key=lambda r: r.repeat)
        ],
        "cost_usd": spread(costs),
        "total_cost_usd": usd(sum(costs, ZERO)),
        "turns": spread(counts),
        "cache_hit_rate": round(read / total, 4) if total else None,
        "pass_rate": round(sum(r.passed for r in results) / len(results), 4),
        "checks": {n: sum(r.checks.get(n, False) for r in results) for n in checks},
        "halted": sum(r.status != "completed" for r in results),
        "turn_p50": _turn_p50(rows),
        "costliest_turns": _costliest(rows),
    }


def _costliest(rows: list[tuple[int, TurnRow]]) -> list[dict[str, Any]]:
    """The costliest turns across the repeats; a turn that cost the same for the same cause
    in several repeats is one line that names them all."""
    groups: dict[tuple[int, str, Decimal, str], list[tuple[int, TurnRow]]] = {}
    for repeat, t in sorted(rows, key=lambda pair: (-pair[1].cost, pair[0])):
        groups.setdefault((t.turn, t.agent, t.cost, t.cause), []).append((repeat, t))
    return [
        {
            "repeats": [repeat for repeat, _ in same],
            "run_id": same[0][1].run_id,
            "turn": same[0][1].turn,
            "agent": same[0][1].agent,
            "model": same[0][1].model,
            "cost_usd": usd(same[0][1].cost),
            "cause": same[0][1].cause,
        }
        for same in list(groups.values())[:COSTLIEST]
    ]


def summarize(
    suite: Suite,
    done: EvalRun,
    arms: list[str],
    repeat: int,
    *,
    log_dir: Path,
    pricer: Pricer,
    cap: Decimal,
) -> dict[str, Any]:
    report = build_report(log_dir, run_ids=done.run_ids, top=1, pricer=pricer, all_runs=True)
    runs = {r.run_id: r for r in report.runs}
    turns: dict[str, list[TurnRow]] = {}
    for t in report.turns:
        turns.setdefault(t.run_id, []).append(t)
    tasks = []
    for task in suite.tasks:
        by_arm = {}
        for arm in arms:
            mine = [r for r in done.results if r.task is task and r.arm == arm]
            by_arm[arm] = _arm_of_task(mine, runs, turns)
        tasks.append({"name": task.name, "checks": list(task.checks), "arms": by_arm})
    totals = {
        arm: sum((runs[r.run_id].cost for r in done.results if r.arm == arm), ZERO) for arm in arms
    }
    first = totals[arms[0]]
    judge = runs[done.judge_run_id].cost if done.judge_run_id else ZERO
    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "suite": suite.name,
        "suite_file": str(suite.path),
        "eval_id": done.eval_id,
        "simulated": any(r.simulated for r in done.results),
        "repeat": repeat,
        "arms": arms,
        "cap_usd": usd(cap),
        "spent_usd": usd(done.budget.settled),
        "judge_cost_usd": usd(judge),
        "judge_run_id": done.judge_run_id,
        "tasks": tasks,
        "arm_totals": {
            arm: {
                "cost_usd": usd(total),
                "saving_usd": usd(first - total),
                "saving_share": float(round((first - total) / first, 4)) if first else None,
            }
            for arm, total in totals.items()
        },
    }
    summary["verdicts"] = {arm: held_quality(summary, arm) for arm in arms[1:]}
    return summary


def held_quality(summary: dict[str, Any], arm: str) -> dict[str, Any]:
    """Did `arm` hold the first arm's quality: no task's pass rate lower, judge included."""
    first = summary["arms"][0]
    fell = []
    judged = {arm: [0, 0], first: [0, 0]}  # judge checks passed, made
    for task in summary["tasks"]:
        ours, theirs = task["arms"][arm], task["arms"][first]
        if ours["pass_rate"] < theirs["pass_rate"]:
            fell.append(
                f"{task['name']} {ours['pass_rate']:.0%} < {theirs['pass_rate']:.0%}"
                + _failed_checks(ours)
            )
        if "judge" in task["checks"]:
            for name, side in ((arm, ours), (first, theirs)):
                judged[name][0] += side["checks"].get("judge", 0)
                judged[name][1] += len(side["runs"])
    total = summary["arm_totals"][arm]
    share = total["saving_share"]
    cost = (
        f"{share:.0%} {'less' if share >= 0 else 'more'} than {first}"
        if share is not None
        else f"${total['cost_usd']:.6f}"
    )
    (ok, made), (ok_first, made_first) = judged[arm], judged[first]
    judge = f"; judge passed {ok} of {made}, {first} {ok_first} of {made_first}" if made else ""
    if fell:
        line = f"{arm} did NOT hold quality against {first}: pass rate fell in {'; '.join(fell)}{judge} ({cost})"
    else:
        n = len(summary["tasks"])
        line = f"{arm} held quality against {first}: no task's pass rate fell ({n} task(s){judge}), at {cost}"
    return {"held": not fell, "line": line, "fell": fell}


def _failed_checks(arm: dict[str, Any]) -> str:
    """The reasons the failing runs give, shortened: what the user would look at first."""
    reasons = [
        f"{name}: {why}"
        for run in arm["runs"]
        for name, why in run["reasons"].items()
        if not run["checks"].get(name, True)
    ]
    if not reasons:
        missing = [n for run in arm["runs"] for n, ok in run["checks"].items() if not ok]
        reasons = [f"{n} failed" for n in dict.fromkeys(missing)]
    return f" ({reasons[0]})" if reasons else ""
