"""`tuiagent report` and `tuiagent replay`: the command bodies (the CLI only parses flags)."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from tuiagent.agent.experiment import (
    Estimate,
    Experiment,
    Suggestion,
    estimate,
    load_turns,
    rules_toml,
    run_experiment,
    suggest_rules,
    target_of,
)
from tuiagent.agent.replay import replay_turn
from tuiagent.config import TIERS, Settings
from tuiagent.cost.display import cap as show_cap
from tuiagent.cost.pricing import Pricer, usd
from tuiagent.errors import UsageError
from tuiagent.offline import OFFLINE_NOTICE
from tuiagent.paths import default_log_dir
from tuiagent.report.build import build_report
from tuiagent.report.otel import otel_traces
from tuiagent.report.rows import SOURCES, Report
from tuiagent.report.tables import (
    experiment_table,
    experiment_totals,
    money,
    print_replay,
    print_report,
)
from tuiagent.session import connect


def _console(piped_width: int = 200) -> Console:
    """The terminal's width on a terminal; piped, wide enough that tables do not wrap."""
    return Console() if sys.stdout.isatty() else Console(width=piped_width)


def _warn(report: Report) -> None:
    for warning in report.warnings:
        print(f"tuiagent: warning: {warning}", file=sys.stderr)


def run_report(
    settings: Settings,
    *,
    log_dir: Path | None,
    last: int | None,
    run_ids: list[str],
    top: int,
    output: str,
    all_runs: bool = False,
) -> int:
    directory = log_dir or settings.run.log_dir or default_log_dir()
    report = build_report(
        directory,
        last=last,
        run_ids=run_ids,
        top=top,
        pricer=Pricer(settings.router.prices),
        all_runs=all_runs,
    )
    _warn(report)
    out = sys.stdout
    if output == "json":
        json.dump(report.to_json(), out, indent=2)
        out.write("\n")
    elif output == "otel":
        json.dump(otel_traces(report), out, indent=2)
        out.write("\n")
    elif output == "csv":
        write_csv(report, out)
    else:
        print_report(report, _console())
    return 0


def write_csv(report: Report, out: TextIO) -> None:
    """Every turn of the chosen runs, one row each, with its input split by source."""
    rows = [t.as_json() for t in report.turns]
    base = [k for k in (rows[0] if rows else {}) if k not in ("input_sources", "tool_calls")]
    extra = [f"{s}_{kind}" for s in SOURCES for kind in ("tokens", "cost_usd")]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*base, "tool_calls", *extra])
    for row in rows:
        sources = row["input_sources"] or {}
        cells: list[Any] = [row[k] for k in base]
        cells.append(" ".join(row["tool_calls"]))
        for s in SOURCES:
            part = sources.get(s) or {}
            cells += [part.get("tokens", ""), part.get("cost_usd", "")]
        writer.writerow([_csv_cell(c) for c in cells])


def _csv_cell(value: Any) -> Any:
    """Money (a float in USD) in plain decimals, never `7.45e-05`; None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return value


async def run_replay(
    settings: Settings,
    *,
    run_id: str,
    turn: int,
    tier: str | None,
    model: str | None,
    offline: bool,
    log_dir: Path | None,
) -> int:
    directory = log_dir or settings.run.log_dir or default_log_dir()
    result = await replay_turn(
        settings,
        directory,
        run_id,
        turn,
        tier=tier,
        model=model,
        connect=lambda: connect(settings, offline=offline),
    )
    if result.notice:
        print(f"tuiagent: {result.notice}", file=sys.stderr)
    if result.simulated:
        print(f"[{OFFLINE_NOTICE}]", file=sys.stderr)
    print_replay(result, _console(120))
    return 0 if result.error is None else 1


@dataclass(frozen=True)
class ExperimentArgs:
    judge: bool
    suggest: bool
    yes: bool
    as_json: bool


def _confirm(estimate: Estimate, target: str, cap: Decimal, yes: bool) -> None:
    judge = f" and {estimate.judge_calls} judge call(s)" if estimate.judge_calls else ""
    print(
        f"tuiagent: replaying {estimate.turns} turn(s) on {target}{judge}: at most "
        f"{money(estimate.worst_case)}, expected {money(estimate.expected)} from the "
        f"original tokens (judge aside); cap {show_cap(cap)}",
        file=sys.stderr,
    )
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            "replay --all asks before it spends: pass --yes to start without a terminal"
        )
    if input("start? [y/N] ").strip().lower() not in ("y", "yes"):
        raise UsageError("not started")


async def run_experiment_command(
    settings: Settings,
    run_ids: list[str],
    tier: str | None,
    model: str | None,
    offline: bool,
    log_dir: Path | None,
    options: ExperimentArgs,
) -> int:
    directory = log_dir or settings.run.log_dir or default_log_dir()
    target_tier, target = target_of(settings, tier, model)
    turns, skipped = load_turns(settings, directory, run_ids, target)
    cap = settings.run.max_cost_usd
    plan = estimate(settings, turns, target, judge=options.judge, cap=cap)
    _confirm(plan, target, cap, options.yes)
    exp = await run_experiment(
        settings,
        directory,
        turns,
        skipped,
        tier=target_tier,
        model=target,
        judge=options.judge,
        connect=lambda: connect(settings, offline=offline),
    )
    if exp.notice:
        print(f"tuiagent: {exp.notice}", file=sys.stderr)
    if exp.simulated:
        print(f"[{OFFLINE_NOTICE}]", file=sys.stderr)
    data = exp.as_json()
    suggestion = suggest_rules(exp) if options.suggest else None
    if options.as_json:
        if suggestion is not None:
            data["suggestion"] = {
                "rules_toml": rules_toml(suggestion.rules),
                "saving_usd": usd(suggestion.saving),
                "turns_moved": suggestion.moved,
                "turns_moved_judged_worse": suggestion.moved_worse,
            }
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console = _console()
        console.print(experiment_table(exp.record()))
        for line in experiment_totals(exp.record()):
            console.print(line, markup=False, highlight=False)
        console.print(f"logged as run {exp.run_id}: {exp.log_path}", markup=False)
        if suggestion is not None:
            print_suggestion(suggestion, exp)
    return 3 if exp.halted else 0


def print_suggestion(s: Suggestion, exp: Experiment) -> None:
    if exp.tier not in TIERS:
        print(f"# no rule to suggest: rules send calls to a tier, and {exp.model} is none")
        return
    if not s.rules:
        print(
            f"# no rule to suggest: no word of the router's vocabulary had every turn "
            f"judged same/acceptable on {exp.tier}"
        )
        return
    print(
        f"# router rules for config.toml (nothing was changed: copy them to use them).\n"
        f"# Over the {len(exp.sources)} run(s) replayed they match {s.moved} turn(s) and "
        f"would have saved {money(s.saving)}."
    )
    print(rules_toml(s.rules), end="")
