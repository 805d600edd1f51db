"""`tuiagent replay` and `replay --all` (experiments): a run's turns again on another tier,
apart from `report` so that reading the logs never loads the SDK."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuiagent.agent.experiment import (
    Experiment,
    ReplayEstimate,
    Suggestion,
    estimate,
    load_turns,
    rules_toml,
    run_experiment,
    suggest_rules,
    target_of,
)
from tuiagent.agent.replay import Replay, Side, replay_turn
from tuiagent.cli.report import console_for
from tuiagent.config import TIERS, Settings
from tuiagent.cost.display import cap as show_cap
from tuiagent.cost.pricing import usd
from tuiagent.errors import UsageError
from tuiagent.offline import OFFLINE_NOTICE
from tuiagent.paths import default_log_dir
from tuiagent.report.tables import answer_text, experiment_table, experiment_totals, money
from tuiagent.session import connect


def _side_header(label: str, side: Side) -> Text:
    return Text.assemble((label, "bold"), f"\n{side.model} ({side.tier})")


def _usage_line(side: Side) -> str:
    u = side.usage
    return (
        f"uncached {u.input_tokens:,}  cache read {u.cache_read_input_tokens:,}  "
        f"write {u.cache_creation_input_tokens:,}  out {u.output_tokens:,}"
    )


def print_replay(r: Replay, console: Console) -> None:
    table = Table(
        title=f"Turn {r.source.record.turn} of run {r.source.run.run_id}, replayed",
        title_justify="left",
        show_lines=True,
        expand=True,
    )
    table.add_column("", style="dim", no_wrap=True)
    table.add_column(_side_header("original", r.original), ratio=1)
    table.add_column(_side_header("replay", r.replay), ratio=1)
    table.add_row(
        "answer",
        Text(answer_text(r.original.content)),
        Text(r.error or answer_text(r.replay.content)),
    )
    table.add_row("tokens", _usage_line(r.original), _usage_line(r.replay))
    table.add_row("stop", r.original.stop_reason or "-", r.replay.stop_reason or "-")
    table.add_row("cost", money(r.original.cost), money(r.replay.cost))
    console.print(table)
    if r.error is None and r.original.cost:
        change = (r.replay.cost - r.original.cost) / r.original.cost
        console.print(
            f"replay {money(r.replay.cost)} vs original {money(r.original.cost)} ({change:+.0%})"
        )
    if r.warm_cache_cost is not None:
        console.print(
            f"with the original's cache state (a model's cache starts cold): "
            f"{money(r.warm_cache_cost)}"
        )
    console.print(f"logged as run {r.run_id}: {r.log_path}", markup=False)


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
    print_replay(result, console_for(120))
    return 0 if result.error is None else 1


@dataclass(frozen=True)
class ExperimentArgs:
    judge: bool
    suggest: bool
    yes: bool
    as_json: bool


def _confirm(estimate: ReplayEstimate, target: str, cap: Decimal, yes: bool) -> None:
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
        console = console_for()
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
