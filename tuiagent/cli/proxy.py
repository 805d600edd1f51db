"""`tuiagent proxy`: its flags (cheap to build: the CLI builds every parser) and its run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tuiagent.exit_codes import EXIT_ERROR, exit_for_signal
from tuiagent.proxy import DEFAULT_UPSTREAM
from tuiagent.redact import remember

DEFAULT_PORT = 8787


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"--port must be a whole number 0-65535, got {value!r}")
    return int(value)


def _upstream(value: str) -> str:
    from tuiagent.preflight import url_problem

    parts = urlsplit(value)
    # Its password is a secret from here on: redacted from all that is written.
    remember(parts.password)
    if parts.username and parts.password is None:
        remember(parts.username)  # `token@host`: the user part is the secret
    if problem := url_problem(value):
        raise argparse.ArgumentTypeError(
            f"--upstream must be an http(s) URL ({problem}), got {shown_url(value)!r}"
        )
    return value.rstrip("/")


def add_ledger_flags(parser: Any) -> None:
    """`--ledger URL` and `--budget SPEC` (over the config's `ledger_url` and `[[budgets]]`)."""
    parser.add_argument(
        "--ledger", metavar="URL", help="the ledger (postgresql://...; default: the config's)"
    )
    parser.add_argument(
        "--budget",
        metavar="SPEC",
        action="append",
        default=[],
        help="a budget, SCOPE[=MATCH]:WINDOW:USD[:TIMEZONE], e.g. global:day:20 or "
        "session:run:0.20 (may be repeated; adds to the config's [[budgets]])",
    )


def shown_url(url: str) -> str:
    """A URL as it may be shown and logged: without its `user:password@`."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="[REDACTED]@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def add_proxy_command(sub: Any) -> None:
    proxy = sub.add_parser(
        "proxy", help="meter and hard-cap any client that speaks the Anthropic API"
    )
    proxy.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks one"
    )
    proxy.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    proxy.add_argument("--upstream", type=_upstream, help="default the real API")
    proxy.add_argument(
        "--offline",
        action="store_true",
        help="upstream the offline (simulated) model, in this process: no key, no network",
    )
    proxy.add_argument("--max-cost", metavar="USD", help="hard spending cap, in US dollars")
    proxy.add_argument("--log-dir", metavar="DIR", type=Path, help="where run logs go")
    proxy.add_argument("--config", metavar="FILE", type=Path, help="config.toml to read")
    add_ledger_flags(proxy)
    proxy.add_argument("--no-ui", action="store_true", help="headless: one line per call")
    proxy.add_argument(
        "--auto-cache",
        action="store_true",
        help="add cache breakpoints to requests that carry none (changes requests)",
    )


if TYPE_CHECKING:
    from decimal import Decimal

    from tuiagent.proxy.meter import Meter
    from tuiagent.proxy.server import ProxyServer
    from tuiagent.report.sessions import SessionBook
    from tuiagent.runs.records import Record

Dashboard = Callable[["ProxyServer", "Meter", Any], int]


def run_proxy(args: argparse.Namespace, dashboard: Dashboard | None = None) -> int:
    """Serve until Ctrl-C (headless, without `dashboard`) or until the dashboard quits.
    The dashboard is the UI's (`tuiagent.ui.proxy.run_dashboard`): this package never
    imports the UI."""
    from tuiagent.config import load_settings, parse_money, with_ledger_flags
    from tuiagent.cost.budget import open_run_budget
    from tuiagent.cost.display import cap as show_cap
    from tuiagent.cost.pricing import Pricer
    from tuiagent.errors import ConfigError, UsageError
    from tuiagent.ledger import Scopes
    from tuiagent.paths import default_log_dir
    from tuiagent.proxy.door import Door
    from tuiagent.proxy.keptlog import KeptLog
    from tuiagent.proxy.meter import Meter
    from tuiagent.proxy.otel import live_export
    from tuiagent.proxy.server import ProxyApp, ProxyServer, bind
    from tuiagent.report.sessions import SessionBook
    from tuiagent.runs.log import new_run_id

    settings = with_ledger_flags(load_settings(args.config), args.ledger, args.budget)
    cap = settings.run.max_cost_usd
    if args.max_cost is not None:
        try:
            cap = parse_money(args.max_cost, "--max-cost")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    if args.offline and args.upstream is not None:
        raise UsageError("--offline and --upstream: the upstream is one or the other")
    sock = bind(args.host, args.port)  # a port in use fails here, before any log is written
    offline = None
    if args.offline:
        from tuiagent.offline.server import OfflineAPI

        offline = ProxyServer(OfflineAPI(), bind("127.0.0.1", 0)).start()
    upstream = offline.url if offline is not None else args.upstream or DEFAULT_UPSTREAM
    run_id = new_run_id()
    # The proxy's cap over the ledger: each request brings its own scopes (session, key...).
    budget = open_run_budget(
        settings.with_changes(max_cost_usd=cap),
        Scopes(run=run_id, simulated=args.offline),  # the offline model spends no real budget
        what=f"tuiagent proxy {args.host}:{sock.getsockname()[1]}",
        name="proxy",
    )
    log = KeptLog(args.log_dir or settings.run.log_dir or default_log_dir(), run_id)
    meter = Meter(
        budget,
        Pricer(settings.router.prices),
        log,
        run_id,
        auto_cache=args.auto_cache,
        settings=settings,
        transcript=log.transcript,
    )
    door = Door.of(
        args.host,
        sock.getsockname()[1],
        settings.proxy.allowed_hosts,
        settings.proxy.allowed_origins,
    )
    app = ProxyApp(meter, upstream, unbilled_paths=settings.proxy.unbilled_paths, door=door)
    server = ProxyServer(app, sock, args.host)
    exporter = live_export(meter)
    shown = shown_url(upstream)  # its user:password (if any) never shown nor logged
    book = SessionBook()  # the calls by session, for the total on exit
    meter.listeners.append(lambda record: book.add(run_id, record))
    # SIGINT, SIGTERM and SIGHUP stop it as Ctrl-C does, from here to the log's last record:
    # a signal while it stops (the terminal closed as the dashboard quits) cuts nothing short.
    with server.stopped_by_signals():
        meter.start(shown, simulated=offline is not None)
        try:
            if dashboard is not None:
                status = dashboard(server, meter, settings)
            else:
                log.notices.append(_say_error)  # (the dashboard shows them on its screen)
                _say(f"tuiagent proxy: listening on {server.url}")
                where = f"the offline model at {shown} (simulated)" if offline else shown
                _say(f"tuiagent proxy: cap {show_cap(cap)}, upstream {where}, log {log.path}")
                meter.listeners.append(_say_call)
                server.serve()
                status = EXIT_ERROR  # unless a signal stopped it: it ended by itself, failed
        finally:
            server.stop()  # the calls in flight settled and recorded
            if exporter is not None:
                exporter.shutdown()
            meter.finish()  # run_end, then the log closed (records it could not write: stderr)
            spent = budget.snapshot()
            budget.close()
            if offline is not None:
                offline.stop()
            total = exit_total(book, spent.settled, spent.cap, offline is not None, spent.in_flight)
            for line in total:
                _say(line)
            _say(f"tuiagent proxy: log {log.path}")
    # Stopped by a signal: the exit status of every tuiagent command so stopped.
    return exit_for_signal(server.stopped_by) if server.stopped_by else status


EXIT_SESSIONS = 5  # the sessions the total on exit names, the costliest


def exit_total(
    book: SessionBook, spent: Decimal, cap: Decimal, simulated: bool, held: Decimal | None = None
) -> list[str]:
    """What the proxy says as it stops: its calls and spend against its cap (and what is
    still held: the worst case of batches whose results were not read through it, which
    the upstream may bill), then the costliest sessions, one line each."""
    from tuiagent.cost.display import cap as show_cap
    from tuiagent.cost.display import money

    lines = [ln for ln in book.tree() if ln.kind == "session"]
    calls = sum(ln.row.calls for ln in lines)
    refused = sum(ln.row.refused for ln in lines)
    said = [
        f"tuiagent proxy: stopped. {calls} call(s)"
        + (f" ({refused} refused)" if refused else "")
        + f", {money(spent)} spent of the cap {show_cap(cap)}"
        + (f", {money(held)} still held (batch results not read)" if held else "")
        + (" (the offline model: simulated, nothing billed)" if simulated else "")
    ]
    top = sorted(lines, key=lambda ln: -ln.row.cost)
    for ln in top[:EXIT_SESSIONS]:
        r = ln.row
        agents = sum(1 for a in book.rows() if (a.client, a.session) == (r.client, r.session)) - 1
        rate = r.cache_hit_rate
        said.append(
            f"  {r.client or '?'}{f' session {r.session}' if r.session else ''}: "
            f"{r.calls} call(s), {money(r.cost)}"
            + (f", {agents} sub-agent(s)" if agents > 0 else "")
            + ("" if rate is None else f", cache hit {rate:.0%}")
        )
    if len(top) > EXIT_SESSIONS:
        said.append(f"  … {len(top) - EXIT_SESSIONS} more (tuiagent report shows them all)")
    return said


def _say_call(record: Record) -> None:
    # Imported here: `tuiagent` (the app) builds this parser, and its first frame does not
    # wait for the records and the prices they import.
    from tuiagent.proxy.lines import call_line
    from tuiagent.runs.records import ProxyTurn, RefusedCall

    if isinstance(record, ProxyTurn | RefusedCall):  # a call (the run's start and end: not)
        _say(call_line(record))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _say_error(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
