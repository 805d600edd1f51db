"""`tuiagent` (the app), `tuiagent run` (headless), `tuiagent proxy` (meter any client),
`tuiagent serve` (the offline model over HTTP).

Exit status: 0 completed, 3 halted by a limit (cost, turns, retries), 2 bad usage or
config, 1 any other error, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import NoReturn

from tuiagent.apikey import api_key, hand_off_secrets
from tuiagent.cli.output import guarded_output
from tuiagent.cli.proxy import add_ledger_flags, add_proxy_command
from tuiagent.cli.serve import add_serve_command
from tuiagent.config import (
    MAX_RETRIES,
    MAX_WHOLE,
    TIER_CHOICES,
    TIERS,
    Settings,
    load_settings,
    parse_money,
    with_ledger_flags,
)
from tuiagent.errors import ConfigError, TuiagentError, UsageError
from tuiagent.exit_codes import EXIT_INTERRUPTED, EXIT_USAGE

_DEFAULTS = Settings()  # what --help names as each flag's default (config.toml may change it)


def _log_dir() -> str:
    from tuiagent.paths import default_log_dir

    return str(default_log_dir())


def _config() -> str:
    from tuiagent.paths import config_dir

    return f"$TUIAGENT_CONFIG, else {config_dir() / 'config.toml'}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, exit 2: argparse's usage block is noise for a typo."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _whole_number(flag: str, least: int, most: int):  # type: ignore[no-untyped-def]
    """Plain ASCII digits from `least` to `most`."""

    def parse(value: str) -> int:
        if not (value.isascii() and value.isdigit()) or not least <= int(value) <= most:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a whole number from {least} to {most:,}, got {value!r}"
            )
        return int(value)

    return parse


def _positive_int(flag: str):  # type: ignore[no-untyped-def]
    return _whole_number(flag, 1, MAX_WHOLE)


def _non_negative_int(flag: str):  # type: ignore[no-untyped-def]
    return _whole_number(flag, 0, MAX_RETRIES)


def _model_id(value: str) -> str:
    if not value.strip() or not value.isprintable():
        raise argparse.ArgumentTypeError(f"--model must be a model id, got {value!r}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--offline", action="store_true", help="use the built-in offline (simulated) model"
    )
    p.add_argument(
        "--tier", choices=TIER_CHOICES, help=f"pin a model tier (default: {_DEFAULTS.router.tier})"
    )
    p.add_argument(
        "--max-cost",
        metavar="USD",
        help=f"hard spending cap for the run, in US dollars (default: {_DEFAULTS.run.max_cost_usd})",
    )
    p.add_argument(
        "--max-turns",
        metavar="N",
        type=_positive_int("--max-turns"),
        help=f"most model calls per request (default: {_DEFAULTS.run.max_turns})",
    )
    p.add_argument(
        "--max-retries",
        metavar="N",
        type=_non_negative_int("--max-retries"),
        help=f"retries of failed calls allowed per request (default: {_DEFAULTS.run.max_retries})",
    )
    p.add_argument(
        "--workspace",
        metavar="DIR",
        type=Path,
        default=Path("."),
        help="the agent's files (default: the current directory)",
    )
    p.add_argument(
        "--log-dir", metavar="DIR", type=Path, help=f"where run logs go (default: {_log_dir()})"
    )
    p.add_argument(
        "--config", metavar="FILE", type=Path, help=f"config.toml to read (default: {_config()})"
    )
    p.add_argument(
        "--no-compress", action="store_true", help="send tool results whole (to compare)"
    )
    p.add_argument(
        "--no-context-management",
        action="store_true",
        help="never clear old tool results or compact the conversation (to compare)",
    )
    p.add_argument(
        "--no-cache", action="store_true", help="place no prompt-cache breakpoints (to compare)"
    )
    p.add_argument(
        "--allow-commands", action="store_true", help="offer the run_command tool (asks first)"
    )
    p.add_argument("--allow-fetch", action="store_true", help="offer the fetch_url tool")
    p.add_argument(
        "--allow-edits",
        action="store_true",
        help="offer write_file and edit_file headless (the app asks before each change)",
    )
    p.add_argument(
        "--allow-mcp",
        action="store_true",
        help="run the MCP servers' tools without asking (headless: offer them)",
    )
    p.add_argument(
        "--max-parallel-agents",
        metavar="N",
        type=_positive_int("--max-parallel-agents"),
        help=f"sub-agents working at once (default: {_DEFAULTS.tools.max_parallel_agents})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tuiagent",
        description="A chat agent that shows what every turn costs and never spends past its cap.",
        # Abbreviations off: the top parser would read `report --all` / `replay --all` as an
        # ambiguous
        # `--allow-commands`/`--allow-fetch`.
        allow_abbrev=False,
    )
    _add_common(parser)
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="RUN_ID",
        help="reopen a run in the app (without an id: pick one of the recent sessions)",
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="run the agent headless on one prompt")
    run.add_argument("prompt", help="what to ask the agent")
    run.add_argument(
        "--json", action="store_true", help="print the run log's records, one per line"
    )
    run.add_argument(
        "--estimate",
        action="store_true",
        help="print what the prompt would cost (its first call, the message's range); send nothing",
    )
    _add_common(run)
    _add_report_commands(sub)
    _add_eval_command(sub)
    undo = sub.add_parser("undo", help="put back the last file change of a run (or all)")
    undo.add_argument("run_id", metavar="RUN_ID", help="the run (a unique prefix will do)")
    undo.add_argument("--all", action="store_true", help="every change of the run, newest first")
    undo.add_argument("--log-dir", metavar="DIR", type=Path, help="where the run logs are")
    undo.add_argument("--config", metavar="FILE", type=Path, help="config.toml to read")
    add_proxy_command(sub)
    add_serve_command(sub, _whole_number("--port", 0, 65535))
    statusline = sub.add_parser(
        "statusline",
        help="one status line for the coding agent's statusLine setting (its JSON on stdin)",
    )
    statusline.add_argument("--log-dir", metavar="DIR", help="where the proxy's run logs are")
    # A flag may come before or after the subcommand (`tuiagent --max-cost 1 run ...`): the
    # subcommand's own defaults must not overwrite what was given before it.
    before = {action.dest for action in parser._actions}
    for subparser in sub.choices.values():
        for action in subparser._actions:
            if action.dest in before and action.dest != "help":
                action.default = argparse.SUPPRESS
    return parser


def _add_report_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    report = sub.add_parser("report", help="what runs cost, the costliest turns and why")
    report.add_argument("--log-dir", metavar="DIR", type=Path, help="where the run logs are")
    report.add_argument("--config", metavar="FILE", type=Path, help="config.toml to read")
    report.add_argument("--last", metavar="N", type=_positive_int("--last"), help="last N runs")
    report.add_argument("--run", metavar="ID", action="append", default=[], help="this run")
    report.add_argument(
        "--top", metavar="K", type=_positive_int("--top"), default=5, help="costliest turns"
    )
    report.add_argument(
        "--all", dest="all_runs", action="store_true", help="also runs with no model call"
    )
    add_ledger_flags(report)
    report.add_argument(
        "--by",
        choices=("session", "agent", "key", "day", "month"),
        help="spending from the ledger (every process's calls) by session, sub-agent, key, "
        "day or month",
    )
    fmt = report.add_mutually_exclusive_group()
    for flag, what in (
        ("--json", "one JSON document"),
        ("--csv", "the turns as CSV"),
        ("--otel", "the turns as OpenTelemetry spans (OTLP/JSON)"),
    ):
        fmt.add_argument(flag, dest="output", action="store_const", const=flag[2:], help=what)
    budgets = sub.add_parser(
        "budgets", help="each budget of the config: spent, held, left and its next reset"
    )
    budgets.add_argument("--config", metavar="FILE", type=Path, help="config.toml to read")
    add_ledger_flags(budgets)
    budgets.add_argument("--json", action="store_true", help="one JSON document")
    budgets.add_argument(
        "--all", dest="all_values", action="store_true", help="every session, key... in use"
    )
    replay = sub.add_parser(
        "replay", help="resend a turn, or every agent turn, of a run to another model"
    )
    replay.add_argument(
        "run_ids", metavar="RUN_ID", nargs="+", help="the run (a unique prefix will do)"
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--turn", metavar="N", type=_positive_int("--turn"))
    which.add_argument("--all", action="store_true", help="every agent turn (an experiment)")
    to = replay.add_mutually_exclusive_group(required=True)
    to.add_argument("--tier", choices=TIERS, help="the model of this tier")
    to.add_argument("--model", metavar="ID", type=_model_id, help="this model")
    replay.add_argument("--judge", action="store_true", help="--all: a verdict per turn")
    replay.add_argument("--suggest", action="store_true", help="--all: print router rules")
    replay.add_argument("--yes", action="store_true", help="--all: start without asking")
    replay.add_argument("--max-cost", metavar="USD", help="--all: cap of the whole experiment")
    replay.add_argument("--json", action="store_true", help="--all: one JSON document")
    replay.add_argument("--offline", action="store_true", help="use the built-in offline model")
    replay.add_argument("--log-dir", metavar="DIR", type=Path, help="where the run logs are")
    replay.add_argument("--config", metavar="FILE", type=Path, help="config.toml to read")


def _add_eval_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ev = sub.add_parser(
        "eval", help="run a suite's tasks N times per tier: cost spread, checks, CI gate"
    )
    ev.add_argument("suite", metavar="SUITE.toml", type=Path, help="the tasks ([[tasks]])")
    ev.add_argument(
        "--repeat",
        metavar="N",
        type=_positive_int("--repeat"),
        default=3,
        help="runs per task and arm (default: 3)",
    )
    ev.add_argument(
        "--tier",
        dest="tiers",
        action="append",
        default=[],
        choices=TIER_CHOICES,
        help="an arm: every task on this tier (repeat it: the first arm is the reference)",
    )
    ev.add_argument("--offline", action="store_true", help="use the built-in offline model")
    ev.add_argument("--max-cost", metavar="USD", help="cap of the whole eval, judge included")
    ev.add_argument("--json", metavar="PATH", type=Path, help="write the summary here")
    ev.add_argument(
        "--baseline", metavar="SUMMARY.json", type=Path, help="fail (exit 1) on a regression"
    )
    ev.add_argument(
        "--fail-over",
        metavar="PCT",
        help="with --baseline: the p50 cost rise that fails a task (default: 10%%)",
    )
    ev.add_argument(
        "--parallel",
        metavar="N",
        type=_positive_int("--parallel"),
        default=4,
        help="runs at once (default: 4)",
    )
    ev.add_argument("--log-dir", metavar="DIR", type=Path, help="where run logs go")
    ev.add_argument("--config", metavar="FILE", type=Path, help="config.toml to read")


def _settings_from(args: argparse.Namespace) -> Settings:
    """config.toml, then the flags given."""
    settings = load_settings(args.config)
    changes: dict[str, object] = {}
    if args.tier:
        changes["tier"] = args.tier
    if args.max_cost is not None:
        try:
            changes["max_cost_usd"] = parse_money(args.max_cost, "--max-cost")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    for key in ("max_turns", "max_retries", "log_dir", "max_parallel_agents"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if getattr(args, "no_cache", False):
        changes["cache"] = False
    if args.no_compress:
        changes["compress"] = False
    if args.no_context_management:
        changes["context_management"] = False
    if args.allow_commands:
        changes["allow_commands"] = True
    if args.allow_fetch:
        changes["allow_fetch"] = True
    if args.allow_mcp:
        changes["allow_mcp"] = True
    if args.allow_edits:
        changes["allow_edits"] = True
    return settings.with_changes(**changes)


def _eval(args: argparse.Namespace) -> int:
    from tuiagent.cli.eval import EvalArgs, run_eval
    from tuiagent.eval.gate import parse_threshold

    settings = load_settings(args.config)
    if args.max_cost is not None:
        settings = settings.with_changes(max_cost_usd=parse_money(args.max_cost, "--max-cost"))
    if args.fail_over is not None and args.baseline is None:
        raise UsageError("--fail-over goes with --baseline SUMMARY.json")
    options = EvalArgs(
        suite=args.suite,
        repeat=args.repeat,
        tiers=args.tiers,
        offline=args.offline,
        json_path=args.json,
        baseline=args.baseline,
        fail_over=parse_threshold(args.fail_over or "10%"),
        parallel=args.parallel,
        log_dir=args.log_dir,
    )
    return asyncio.run(run_eval(settings, options))


def main(argv: list[str] | None = None) -> int:
    # Every line the CLI prints (errors included) is redacted and made printable; an app
    # writes the screen to the terminal itself (sys.__stderr__), through ui/terminal.py.
    with guarded_output():
        if argv is None:
            # First of all, in the real process: the key leaves the environment (a re-exec).
            try:
                hand_off_secrets()
            except TuiagentError as exc:
                print(f"tuiagent: {exc}", file=sys.stderr)
                return exc.exit_code
        args = build_parser().parse_args(argv)
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command in (None, "run", "replay", "eval"):
            api_key()  # a key that cannot be sent is refused first, before any import or file
        if args.command == "run":
            if not args.prompt.strip():
                # The API refuses an empty text block (and one of whitespace only).
                raise UsageError("the prompt is empty: say what to ask the agent")
            settings = _settings_from(args)  # bad flags refused before the SDK loads

            from tuiagent.cli.run import run_estimate, run_headless

            if args.estimate:
                return asyncio.run(
                    run_estimate(
                        settings,
                        args.prompt,
                        workspace=args.workspace,
                        offline=args.offline,
                        as_json=args.json,
                    )
                )
            return asyncio.run(
                run_headless(
                    settings,
                    args.prompt,
                    workspace=args.workspace,
                    offline=args.offline,
                    as_json=args.json,
                )
            )
        if args.command == "eval":
            return _eval(args)
        if args.command == "undo":
            from tuiagent.agent.edits import undo_run
            from tuiagent.paths import default_log_dir
            from tuiagent.runs.layout import find_run

            settings = load_settings(args.config)
            log_dir = args.log_dir or settings.run.log_dir or default_log_dir()
            for line in undo_run(find_run(log_dir, args.run_id).transcript, args.all):
                print(f"tuiagent: {line}")
            return 0
        if args.command == "budgets":
            from tuiagent.cli.budgets import run_budgets

            settings = with_ledger_flags(load_settings(args.config), args.ledger, args.budget)
            return run_budgets(settings, as_json=args.json, show_all=args.all_values)
        if args.command == "report" and args.by is not None:
            from tuiagent.cli.budgets import run_report_by

            if args.output not in (None, "json") or args.last or args.run or args.all_runs:
                raise UsageError(
                    "report --by reads the ledger: it takes --json, not --csv, "
                    "--otel, --last, --run or --all"
                )
            settings = with_ledger_flags(load_settings(args.config), args.ledger, args.budget)
            return run_report_by(settings, args.by, output=args.output or "plain")
        if args.command == "report":
            from tuiagent.cli.report import run_report

            return run_report(
                load_settings(args.config),
                log_dir=args.log_dir,
                last=args.last,
                run_ids=args.run,
                top=args.top,
                output=args.output or "plain",
                all_runs=args.all_runs,
            )
        if args.command == "proxy":
            from tuiagent.cli.proxy import run_proxy

            if args.no_ui:
                return run_proxy(args)
            from tuiagent.ui.proxy import run_dashboard

            return run_proxy(args, run_dashboard)
        if args.command == "statusline":  # as `tuiagent.entry` runs it, without this
            from tuiagent.statusline import run

            return run(["--log-dir", args.log_dir] if args.log_dir else [])
        if args.command == "serve":
            from tuiagent.cli.serve import run_serve

            return run_serve(args)
        if args.command == "replay":
            from tuiagent.cli.replay import ExperimentArgs, run_experiment_command, run_replay

            settings = load_settings(args.config)
            if args.all:
                if args.max_cost is not None:
                    cap = parse_money(args.max_cost, "--max-cost")
                    settings = settings.with_changes(max_cost_usd=cap)
                options = ExperimentArgs(args.judge, args.suggest, args.yes, args.json)
                return asyncio.run(
                    run_experiment_command(
                        settings,
                        args.run_ids,
                        args.tier,
                        args.model,
                        args.offline,
                        args.log_dir,
                        options,
                    )
                )
            with_all = args.judge or args.suggest or args.json or args.yes or args.max_cost
            if len(args.run_ids) > 1 or with_all:
                raise UsageError(
                    "--turn replays one turn of one run; several runs, --judge, --suggest, "
                    "--yes, --max-cost and --json go with --all"
                )
            return asyncio.run(
                run_replay(
                    settings,
                    run_id=args.run_ids[0],
                    turn=args.turn,
                    tier=args.tier,
                    model=args.model,
                    offline=args.offline,
                    log_dir=args.log_dir,
                )
            )
        from tuiagent.ui.app import run_app

        return run_app(
            _settings_from(args), workspace=args.workspace, offline=args.offline, resume=args.resume
        )
    except TuiagentError as exc:
        print(f"tuiagent: {exc}", file=sys.stderr)  # TuiagentError redacts its own text
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
