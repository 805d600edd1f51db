"""A proxy in this process on 127.0.0.1 port 0, in front of a loopback upstream."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic

from tests.support.cli import cli_env
from tests.support.loopback import LoopbackAPI
from tuiagent.cost.budget import Budget
from tuiagent.cost.pricing import Pricer
from tuiagent.proxy.door import Door
from tuiagent.proxy.meter import Meter
from tuiagent.proxy.server import ProxyApp, ProxyServer, bind
from tuiagent.runs.log import RunLog, read_records

MODEL = "claude-sonnet-4-5"
KEY = "sk-ant-api03-PROXY-SECRET-DO-NOT-LEAK-0987654321"


@dataclass
class Proxied:
    server: ProxyServer
    meter: Meter
    log_path: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def budget(self) -> Budget:
        return self.meter.budget

    def records(self, *kinds: str) -> list[dict[str, Any]]:
        """The log's records, once every call taken in has its record (a client may see the
        end of an answer an instant before the proxy has written it), but a batch's
        requests still open (theirs comes with the batch's results)."""
        for _ in range(250):
            records, bad = read_records(self.log_path)
            calls = [r for r in records if r["type"] in ("turn", "attempt", "refused")]
            batches = getattr(self.server.proxy, "batches", None)
            unread = sum(map(len, batches.open.values())) if batches is not None else 0
            if len(calls) + unread >= self.meter.calls:
                break
            time.sleep(0.02)
        assert bad == 0
        return [r for r in records if not kinds or r["type"] in kinds]


@contextmanager
def proxy_to(
    upstream: str,
    log_dir: Path,
    cap: str = "1.00",
    app: dict[str, Any] | None = None,
    budget: Budget | None = None,
    **meter: Any,
) -> Iterator[Proxied]:
    """`app`: ProxyApp's keyword arguments (`unbilled_paths`, ...), where `allowed_hosts` and
    `allowed_origins` make its door (the proxy's own address and port by default); `budget`
    one over a ledger (`open_run_budget`), else just the cap; the rest the Meter's."""
    log = RunLog(log_dir, "proxy-run")
    budget = budget or Budget(Decimal(cap), name="proxy")
    m = Meter(budget, Pricer(), log, "proxy-run", **meter)
    sock = bind("127.0.0.1", 0)
    options = dict(app or {})
    door = Door.of(
        "127.0.0.1",
        sock.getsockname()[1],
        options.pop("allowed_hosts", ()),
        options.pop("allowed_origins", ()),
    )
    server = ProxyServer(ProxyApp(m, upstream, door=door, **options), sock).start()
    m.start(upstream)
    try:
        yield Proxied(server, m, log.path)
    finally:
        server.stop()
        m.finish()


@contextmanager
def proxied_loopback(
    log_dir: Path,
    cap: str = "1.00",
    api: LoopbackAPI | None = None,
    app: dict[str, Any] | None = None,
    **meter: Any,
) -> Iterator[tuple[LoopbackAPI, Proxied]]:
    with (
        api or LoopbackAPI() as upstream,
        proxy_to(upstream.base_url, log_dir, cap, app, **meter) as p,
    ):
        yield upstream, p


class HeadlessProxy:
    """`tuiagent proxy --no-ui` in a process of its own, as a user runs it."""

    def __init__(self, upstream: str, log_dir: Path, cap: str = "100") -> None:
        self.log_dir = log_dir
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tuiagent", "proxy", "--port", "0", "--no-ui"),
                *("--upstream", upstream, "--log-dir", str(log_dir), "--max-cost", cap),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        found = re.fullmatch(r"tuiagent proxy: listening on (http://\S+)\n", first)
        assert found, first + self.proc.stderr.read()  # type: ignore[union-attr]
        self.url = found.group(1)
        self.second_line = self.proc.stdout.readline()  # the cap, upstream and log

    def __enter__(self) -> HeadlessProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:  # a test that failed before stopping it
            self.proc.kill()
            self.proc.communicate(timeout=30)

    def client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key=KEY, base_url=self.url, max_retries=0)

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err

    def records(self) -> list[dict[str, Any]]:
        (log,) = self.log_dir.glob("*.jsonl")
        return [json.loads(line) for line in log.read_text().splitlines()]
