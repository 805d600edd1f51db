"""`tuiagent serve`: the offline model over HTTP on 127.0.0.1, for any client (keyless)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

DEFAULT_PORT = 8788


def add_serve_command(sub: Any, port: Callable[[str], int]) -> None:
    serve = sub.add_parser(
        "serve", help="the offline (simulated) model as an Anthropic-compatible HTTP server"
    )
    serve.add_argument(
        "--port", type=port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks one"
    )
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")


def run_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (exit status 130), SIGTERM (143) or SIGHUP (129)."""
    from tuiagent.exit_codes import EXIT_ERROR, exit_for_signal
    from tuiagent.offline.server import OfflineAPI
    from tuiagent.proxy.server import ProxyServer, bind

    server = ProxyServer(OfflineAPI(), bind(args.host, args.port), args.host)
    say(f"tuiagent serve: listening on {server.url}")
    say(
        "tuiagent serve: the offline model: simulated answers, any key will do, nothing leaves "
        f"this machine (ANTHROPIC_BASE_URL={server.url})"
    )
    with server.stopped_by_signals():  # Ctrl-C (or SIGTERM, SIGHUP) stops it
        try:
            server.serve()
        finally:
            server.stop()
    return exit_for_signal(server.stopped_by) if server.stopped_by else EXIT_ERROR


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
