"""`tuiagent statusline` (issue 26, item 3): the coding agent pipes its status JSON; one line
comes back with this session's spend and budget, today's spend, the cache hit rate and the
last call's cause when it was costly, read from the ledger and the proxy's run logs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.proxy.test_sessions import LONG, MARK, _call, _system, _user
from tests.support.cli import cli_env
from tuiagent.config import Settings
from tuiagent.cost.budget import open_run_budget
from tuiagent.cost.pricing import Pricer
from tuiagent.ledger import BudgetSpec, Scopes, Window
from tuiagent.offline.server import OfflineAPI
from tuiagent.proxy.meter import Meter
from tuiagent.proxy.server import ProxyApp, ProxyServer, bind
from tuiagent.runs.log import RunLog
from tuiagent.statusline import BadInput, read_input, run

# The JSON the coding agent pipes to its statusLine command (recorded from 2.1.x).
STATUS = {
    "session_id": "sess-1",
    "transcript_path": "/home/u/.claude/projects/p/sess-1.jsonl",
    "cwd": "/home/u/p",
    "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet 4.5"},
    "workspace": {"current_dir": "/home/u/p", "project_dir": "/home/u/p"},
    "version": "2.1.197",
    "output_style": {"name": "default"},
    "cost": {"total_cost_usd": 0.01, "total_duration_ms": 4000},
    "exceeds_200k_tokens": False,
}


def statusline(status: object, *args: str, raw: bytes | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    data = raw if raw is not None else json.dumps(status).encode()
    return subprocess.run(
        [sys.executable, "-m", "tuiagent", "statusline", *args],
        input=data.decode("utf-8", "surrogateescape"),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )


def _proxied_session(tmp_path: Path) -> None:
    """Three calls of session sess-1 through a proxy on the shared ledger (a $0.50 session
    budget), the last one a cache miss (the system prompt changed); one of sess-2."""
    settings = Settings().with_changes(
        log_dir=tmp_path,
        budgets=(
            BudgetSpec("session", Window.parse("run"), __import__("decimal").Decimal("0.50")),
        ),
    )
    offline = ProxyServer(OfflineAPI(), bind("127.0.0.1", 0)).start()
    scopes = Scopes(run="proxy-run", simulated=True)  # as `proxy --offline` holds
    budget = open_run_budget(settings, scopes, what="test", name="proxy")
    log = RunLog(tmp_path, "proxy-run")
    meter = Meter(budget, Pricer(), log, "proxy-run", settings=settings)
    server = ProxyServer(ProxyApp(meter, offline.url), bind("127.0.0.1", 0)).start()
    meter.start(offline.url, simulated=True)
    try:
        from tests.support.proxy_harness import Proxied

        p = Proxied(server, meter, log.path)
        s1 = {"X-Claude-Code-Session-Id": "sess-1"}
        first = _call(p, [_user("hello")], headers=s1)
        history = [_user("hello"), {"role": "assistant", "content": first.content}]
        _call(p, [*history, _user("more")], headers=s1)
        _call(p, [*history, _user("again")], headers=s1, system=_system(LONG + " Changed."))
        _call(p, [_user("other")], headers={"X-Claude-Code-Session-Id": "sess-2"})
        p.records()
    finally:
        server.stop()
        meter.finish()
        budget.close()
        offline.stop()


def test_the_line_says_the_sessions_spend_budget_today_hit_rate_and_last_cause(
    tmp_path: Path,
) -> None:
    _proxied_session(tmp_path)
    records = [json.loads(x) for x in (tmp_path / "proxy-run.jsonl").read_text().splitlines()]
    mine = [r for r in records if r.get("session") == "sess-1"]
    assert [r["cache_miss_reason"] for r in mine] == [None, None, "system_changed"]
    spent = sum(r["cost_usd"] for r in mine)
    read = sum(r["cache_read_input_tokens"] for r in mine)
    total = sum(
        r["input_tokens"] + r["cache_creation_input_tokens"] + r["cache_read_input_tokens"]
        for r in mine
    )
    result = statusline(STATUS, "--log-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"tuiagent · session ${spent:.4f} of $0.5000 (session run) simulated")
    assert f"cache {read / total:.0%}" in line
    assert "today $0.0000 (+$" in line  # the offline model's calls spend no real money
    assert line.endswith(f"last #3 ${mine[-1]['cost_usd']:.4f}: cache miss: the system prompt changed")  # fmt: skip
    other = statusline({**STATUS, "session_id": "sess-2"}, "--log-dir", str(tmp_path))
    assert "session $" in other.stdout and "last #" not in other.stdout  # a first call: no cause
    unknown = statusline({**STATUS, "session_id": "nope"}, "--log-dir", str(tmp_path))
    assert "no call of this session through the proxy yet" in unknown.stdout


def test_without_a_ledger_the_records_say_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    lines = [
        {"type": "run_start", "source": "proxy", "simulated": False, "limits": {"max_cost_usd": 2.0}},
        {"type": "turn", "turn": 1, "session": "s", "cost_usd": 0.01, "input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 90},
        {"type": "refused", "turn": 2, "session": "s", "error": "no \x1b]52;c;x\x07 room"},
    ]  # fmt: skip
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "nothing"))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    assert run(["--log-dir", str(tmp_path)], io.BytesIO(b'{"session_id": "s"}')) == 0
    assert out.getvalue() == "tuiagent · session $0.0100 (proxy cap $2.00) · cache 90% · last #2 $0.0000: refused\n"  # fmt: skip


def test_the_cap_is_the_one_the_last_call_settled_under(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """F3 raised the proxy's cap from $1.00 to $1.20 mid-run: the line said the cap the run
    started with (seen by hand on the coding agent's status line)."""
    lines = [
        {"type": "run_start", "source": "proxy", "simulated": False, "limits": {"max_cost_usd": 1.0}},
        {"type": "turn", "turn": 1, "session": "s", "cost_usd": 0.5, "cap_usd": 1.0},
        {"type": "turn", "turn": 2, "session": "s", "cost_usd": 0.25, "cap_usd": 1.2},
    ]  # fmt: skip
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "nothing"))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    assert run(["--log-dir", str(tmp_path)], io.BytesIO(b'{"session_id": "s"}')) == 0
    assert "session $0.7500 (proxy cap $1.20)" in out.getvalue()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "a list, not an object"),
        (b'{"session_id": 5}', "no session_id string"),
        (b'{"cwd": "/"}', "no session_id string"),
        (b'{"session_id": "a"}' + b" " * (1 << 20), "over 1,048,576 bytes"),
        (b'{"session_id": "\xff\xfe"}', "not JSON"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(raw: bytes, says: str) -> None:
    with pytest.raises(BadInput, match=says):
        read_input(io.BytesIO(raw))


def test_bad_input_through_the_command_is_one_line_on_stderr_and_exit_2() -> None:
    result = statusline(None, raw=b"{oops")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "tuiagent statusline: stdin is not JSON (the coding agent pipes its status JSON)\n"  # fmt: skip
    extra = statusline(STATUS, "--verbose")
    assert extra.returncode == 2 and len(extra.stderr.splitlines()) == 1


def test_the_statusline_imports_no_sdk_no_http_and_no_settings() -> None:
    code = (
        "import sys, io\n"
        "from tuiagent.entry import main\n"
        "sys.argv = ['tuiagent', 'statusline']\n"
        'sys.stdin = io.TextIOWrapper(io.BytesIO(b\'{"session_id": "x"}\'))\n'
        "main()\n"
        "heavy = [m for m in ('anthropic', 'httpx', 'httpx2', 'tuiagent.config', 'rich', 'textual') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert MARK  # the shared helpers are the proxy session tests'


def test_through_proxy_offline_the_line_counts_the_try_out_as_simulated(tmp_path: Path) -> None:
    from tests.offline.test_serve import command, sdk

    args = ("proxy", "--offline", "--no-ui", "--port", "0", "--log-dir", str(tmp_path))
    with command(*args) as (_proc, url, _second):
        sdk(url).messages.create(
            model="claude-sonnet-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "hello"}],
            extra_headers={"X-Claude-Code-Session-Id": "sess-1"},
        )
    result = statusline(STATUS)  # the config's (default) log dir and ledger: none given
    result = statusline(STATUS, "--log-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    # The offline model's dollars are what the real model would cost: never today's spend.
    assert " simulated · today $0.0000 (+$" in line and "cache 0%" in line
