"""`tuiagent eval SUITE.toml`: every task of a suite, N times in each arm, within one cap;
the summary per task and arm, the JSON, and the CI gate against a baseline."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.cli.report import console_for
from tuiagent.config import Settings, load_settings
from tuiagent.cost.pricing import Pricer
from tuiagent.errors import UsageError
from tuiagent.eval.gate import compare, load_baseline
from tuiagent.eval.runner import ArmPlan, RunResult, run_suite
from tuiagent.eval.suite import Suite, load_suite
from tuiagent.eval.summary import summarize
from tuiagent.eval.tables import cost_table, costliest_table, summary_lines
from tuiagent.exit_codes import EXIT_ERROR, EXIT_HALTED, EXIT_OK
from tuiagent.offline import OFFLINE_NOTICE
from tuiagent.paths import default_log_dir


@dataclass(frozen=True)
class EvalArgs:
    suite: Path
    repeat: int
    tiers: list[str]
    offline: bool
    json_path: Path | None
    baseline: Path | None
    fail_over: Decimal
    parallel: int
    log_dir: Path | None


def arm_plans(suite: Suite, tiers: list[str], settings: Settings, log_dir: Path) -> list[ArmPlan]:
    """The arms: one per --tier, else the suite's [[arms]], else the config's tier."""
    if tiers:
        if len(set(tiers)) < len(tiers):
            raise UsageError("--tier names the same tier twice")
        return [ArmPlan(t, settings.with_changes(tier=t, log_dir=log_dir)) for t in tiers]
    if not suite.arms:
        return [ArmPlan(settings.router.tier, settings.with_changes(log_dir=log_dir))]
    plans = []
    for arm in suite.arms:
        base = load_settings(arm.config) if arm.config is not None else settings
        changes: dict[str, Any] = {"log_dir": log_dir, "max_cost_usd": settings.run.max_cost_usd}
        if arm.tier is not None:
            changes["tier"] = arm.tier
        plans.append(ArmPlan(arm.name, base.with_changes(**changes)))
    return plans


def _progress(total: int) -> Any:
    done = [0]

    def say(r: RunResult) -> None:
        done[0] += 1
        why = f" ({r.halt_reason})" if r.halt_reason and r.halt_reason != r.status else ""
        mark = "passed" if r.passed else "failed"
        print(
            f"tuiagent: [{done[0]}/{total}] {r.task.name} {r.arm} #{r.repeat}: "
            f"{r.status}{why}, {mark}",
            file=sys.stderr,
        )

    return say


def _write_json(path: Path, summary: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write the summary to {path}: {exc.strerror}") from None


async def run_eval(settings: Settings, args: EvalArgs) -> int:
    suite = load_suite(args.suite)
    baseline = load_baseline(args.baseline) if args.baseline is not None else None
    log_dir = args.log_dir or settings.run.log_dir or default_log_dir()
    arms = arm_plans(suite, args.tiers, settings, log_dir)
    total = len(arms) * len(suite.tasks) * args.repeat
    print(
        f"tuiagent: suite {suite.name}: {len(suite.tasks)} task(s) x {args.repeat} repeat(s) "
        f"x {len(arms)} arm(s) ({', '.join(a.name for a in arms)}) = {total} runs, "
        f"cap ${settings.run.max_cost_usd} in all",
        file=sys.stderr,
    )
    done = await run_suite(
        suite,
        arms,
        args.repeat,
        settings=settings.with_changes(log_dir=log_dir),
        offline=args.offline,
        log_dir=log_dir,
        parallel=args.parallel,
        on_done=_progress(total),
    )
    summary = summarize(
        suite,
        done,
        [a.name for a in arms],
        args.repeat,
        log_dir=log_dir,
        pricer=Pricer(settings.router.prices),
        cap=settings.run.max_cost_usd,
    )
    if summary["simulated"]:
        print(f"[{OFFLINE_NOTICE}]", file=sys.stderr)
    kept = log_dir / "evals" / f"{done.eval_id}.json"
    _write_json(kept, summary)
    if args.json_path is not None:
        _write_json(args.json_path, summary)
    console = console_for()
    console.print(cost_table(summary))
    console.print(costliest_table(summary))
    for line in summary_lines(summary):
        console.print(line, markup=False, highlight=False)
    console.print(f"summary: {args.json_path or kept}", markup=False, highlight=False)
    code = EXIT_OK
    if any(r.status == "error" for r in done.results):
        code = EXIT_ERROR
    elif any(r.status != "completed" for r in done.results):
        code = EXIT_HALTED
    if baseline is not None:
        failures, notes = compare(summary, baseline, args.fail_over)
        for note in notes:
            console.print(f"baseline: {note}", markup=False, highlight=False)
        if failures:
            for line in failures:
                console.print(f"REGRESSION: {line}", markup=False, highlight=False)
            return EXIT_ERROR
        console.print(
            f"baseline {args.baseline}: no task's p50 cost rose more than "
            f"{args.fail_over:.0%} and no pass rate fell",
            markup=False,
            highlight=False,
        )
    return code
