"""The conformance script of issue 26: the leading coding agent itself (`claude -p`, from npm)
through `tuiagent proxy` to `tuiagent serve`, with no key: three prompts, the third asking
for parallel sub-agents. The offline model answers as a model would: it calls the agent's
own sub-agent tool (`Agent`) twice in one answer, so the coding agent really starts two
sub-agents, whose requests name themselves (`x-claude-code-agent-id`). The records group
them under their session (`report`), `tuiagent statusline` says the session's spend, and
the proxy's total on exit names them. Skipped, saying why, when npm cannot be reached."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import cli_env, run_cli, start_cli
from tests.support.npm import CLAUDE_CODE, installed
from tuiagent.cost.display import money

PROMPTS = (
    "hello",
    "list the files here",
    "Use two sub-agents in parallel: one lists the files here, one reads a.txt",
)


def _started(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = start_cli(*args)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert " listening on http://127.0.0.1:" in first, first
    return proc, first.split()[-1]


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return out


def _claude(modules: Path, url: str, work: Path, home: Path, prompt: str) -> dict[str, Any]:
    env = {
        **cli_env(),
        "HOME": str(home),
        "IS_SANDBOX": "1",  # as root, the agent asks for it
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": "offline-no-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry: no network
        "DISABLE_AUTOUPDATER": "1",
    }
    done = subprocess.run(
        [str(modules / ".bin" / "claude"), "-p", prompt, "--output-format", "json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"claude: {done.returncode} {done.stdout} {done.stderr}") from None
    assert result["is_error"] is False, result
    return result


def test_the_coding_agent_through_the_proxy_to_tuiagent_serve(tmp_path: Path) -> None:
    modules = installed(CLAUDE_CODE)
    work, home, logs = tmp_path / "work", tmp_path / "home", tmp_path / "logs"
    work.mkdir()
    home.mkdir()
    (work / "a.txt").write_text("hello from a.txt\n")
    (work / "main.py").write_text("print('hi')\n")
    serve, upstream = _started("serve", "--port", "0")
    try:
        proxy, url = _started(
            *("proxy", "--no-ui", "--port", "0", "--upstream", upstream),
            *("--log-dir", str(logs), "--max-cost", "5"),
        )
        try:
            results = [_claude(modules, url, work, home, prompt) for prompt in PROMPTS]
        finally:
            said = _stop(proxy)
    finally:
        _stop(serve)
    hello, listed, spawned = results
    assert "offline simulated model" in hello["result"]
    assert "a.txt" in listed["result"] and "main.py" in listed["result"]
    assert spawned["result"].startswith("The sub-agents found:\n"), spawned["result"]
    assert "hello from a.txt" in spawned["result"] and "main.py" in spawned["result"]

    (log,) = logs.glob("*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    calls = [r for r in records if r["type"] in ("turn", "attempt", "refused")]
    assert calls and all(r["type"] == "turn" for r in calls)
    sessions = [r["session_id"] for r in results]
    assert len(set(sessions)) == 3 and {c["session"] for c in calls} == set(sessions)
    mine = [c for c in calls if c["session"] == sessions[2]]
    agents = {c["agent_id"] for c in mine if c.get("agent_id")}
    assert len(agents) == 2  # two sub-agents, each its own id on its requests
    # The main agent's first answer started both at once: its two Agent calls.
    transcript = next((logs / "transcripts").glob("*.jsonl"))
    answers = [json.loads(line) for line in transcript.read_text().splitlines()]
    first = next(a for a in answers if a["turn"] == mine[0]["turn"])
    started = [b for b in first["answer"] if b["type"] == "tool_use"]
    assert [b["name"] for b in started] == ["Agent", "Agent"]
    spent = sum(Decimal(str(c["cost_usd"])) for c in mine)
    assert float(spent) == pytest.approx(spawned["total_cost_usd"])

    # `report` groups them: the session's own agent, then its two sub-agents under it.
    report = run_cli("report", "--json", "--log-dir", str(logs))
    assert report.returncode == 0, report.stderr
    rows = [r for r in json.loads(report.stdout)["proxy_sessions"] if r["session"] == sessions[2]]
    assert rows[0]["agent"] == "main" and {r["agent"] for r in rows[1:]} == agents
    assert sum(r["calls"] for r in rows) == len(mine)

    # The status line (the agent's statusLine setting) says this session's spend.
    status = {"session_id": sessions[2], "cwd": str(work), "model": {"id": "claude-opus-4-8"}}
    line = subprocess.run(
        [sys.executable, "-m", "tuiagent", "statusline", "--log-dir", str(logs)],
        input=json.dumps(status),
        capture_output=True,
        text=True,
        env={**cli_env(), "XDG_DATA_HOME": str(tmp_path / "no-ledger")},
        timeout=30,
    )
    assert line.returncode == 0, line.stderr
    assert f"session {money(spent)}" in line.stdout, line.stdout

    # The proxy's total on exit names the session and its sub-agents.
    assert "tuiagent proxy: stopped. " in said
    assert f"session {sessions[2]}: {len(mine)} call(s), {money(spent)}, 2 sub-agent(s)" in said
    assert sorted(os.listdir(work)) == ["a.txt", "main.py"]  # it wrote nothing here
