"""The hostile workspace end to end: `tuiagent run --offline`, whose model calls the tools
the prompt names, ends with exit 0, no traceback and a run_end record."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli, start_cli
from tests.support.processes import processes_with


def _run(workspace: Path, log_dir: Path, prompt: str, *flags: str) -> tuple[str, list[Any]]:
    proc = run_cli(
        "run", prompt, "--offline", "--workspace", str(workspace), "--log-dir", str(log_dir), *flags
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    (log,) = log_dir.glob("*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[-1]["type"] == "run_end" and records[-1]["status"] == "completed"
    return proc.stdout, records


def _tools(records: list[Any]) -> dict[str, bool]:
    return {
        f"{r['name']} {r['input'].get('path') or r['input'].get('pattern') or ''}".strip(): r["ok"]
        for r in records
        if r["type"] == "tool"
    }


def test_reads_and_searches_in_a_hostile_workspace(hostile: Path, log_dir: Path) -> None:
    (hostile / "evil.txt").write_text("a" * 40 + "!\n")
    (hostile / ".hypothesis").mkdir()
    (hostile / ".hypothesis" / "x.txt").write_text("alpha in a hidden folder\n")
    out, records = _run(
        hostile,
        log_dir,
        "What is in pipe.fifo, app.sock, zero.bin and self.txt? "
        "Search for `(a+)+!$`, then search for alpha, then list the files.",
    )
    assert _tools(records) == {
        "read_file pipe.fifo": False,
        "read_file app.sock": False,
        "read_file zero.bin": False,
        "read_file self.txt": False,
        "search_files (a+)+!$": True,
        "search_files alpha": True,
        "list_dir .": True,
    }
    assert "pipe.fifo is a FIFO (named pipe); only regular files are read" in out
    assert "app.sock is a socket" in out and "'self.txt' is a symlink loop" in out
    assert "'zero.bin' leads outside the workspace" in out
    assert "Search for '(a+)+!$': 1 matching line in 1 file." in out
    assert "Search for 'alpha': 1 matching line in 1 file." in out  # not the hidden one


def test_a_3_gb_line_and_a_base64_blob(hostile: Path, log_dir: Path) -> None:
    with (hostile / "big.txt").open("wb") as fh:
        fh.write(b"word " * 500_000)
        fh.truncate(3 * 1024**3)
    blob = base64.urlsafe_b64encode(random.Random(1).randbytes(45_000)).decode()
    out, records = _run(hostile, log_dir, f"What is in big.txt? It came with {blob}")
    assert _tools(records) == {"read_file big.txt": True} and "\nbig.txt: " in out
    (tool,) = [r for r in records if r["type"] == "tool"]
    assert tool["original_tokens"] > 100_000 and tool["result_id"] == "r1"  # read, compressed
    (first, *_) = [r for r in records if r["type"] == "turn"]
    assert first["route_reason"].startswith("long request")


def test_commands_and_fetches_end(
    workspace: Path, log_dir: Path, tmp_path: Path, trickle: str
) -> None:
    marker = f"9{os.getpid()}55"
    config = tmp_path / "short.toml"
    config.write_text("command_timeout_s = 1\n")
    out, records = _run(
        workspace,
        log_dir,
        f"Please run `setsid sleep {marker} & echo started` and fetch {trickle}",
        *("--allow-commands", "--allow-fetch", "--config", str(config)),
    )
    assert _tools(records) == {"run_command": True, "fetch_url": False}
    assert "exit status 0" in out and "timed out after 1s (its total deadline)" in out
    assert processes_with(marker) == []


def test_ctrl_c_during_a_blocked_tool_ends_the_process(workspace: Path, log_dir: Path) -> None:
    marker = f"9{os.getpid()}66"
    proc = start_cli(
        *("run", f"Please run `sleep {marker}`", "--offline", "--allow-commands"),
        *("--workspace", str(workspace), "--log-dir", str(log_dir)),
    )
    deadline = time.monotonic() + 60
    while not processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("tuiagent did not exit after Ctrl-C")
    assert proc.returncode == 130 and "Traceback" not in err
    (log,) = log_dir.glob("*.jsonl")
    assert json.loads(log.read_text().splitlines()[-1])["type"] == "run_end"
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert processes_with(marker) == []
