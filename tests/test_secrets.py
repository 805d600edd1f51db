"""The API key never leaks: not into a file, a byte of output, the model, or a command's reach."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import cli_env, run_cli
from tests.support.loopback import LoopbackAPI, status
from tuiagent.agent.events import AttemptFailed, Halted, Notice, ToolFinished
from tuiagent.agent.tools.base import ToolOutput
from tuiagent.apikey import api_key
from tuiagent.errors import UsageError
from tuiagent.llm.provider import CallFailed
from tuiagent.redact import REDACTED, forget_all, redact, redact_data, remember
from tuiagent.runs.log import RunLog
from tuiagent.runs.records import Attempt, HaltReason, ToolCall, UserMessage

FAKE_KEY = "sk-ant-api03-FAKEMARKzz9Qx7w-" + "x" * 40
# Built by the shell at run time, so the command line itself never holds the marker.
MARKER_CMD = '"$(echo FAKE)MARK"'


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    """The log, data and config dirs of a CLI run, all under tmp_path."""
    return {
        "log": tmp_path / "logs",
        "data": tmp_path / "data",
        "config": Path(os.environ["XDG_CONFIG_HOME"]),
    }


def cli(dirs: dict[str, Path], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        *args,
        "--log-dir",
        str(dirs["log"]),
        env={"XDG_DATA_HOME": str(dirs["data"]), **env},
    )


def assert_nowhere(
    secret: str, proc: subprocess.CompletedProcess[str], dirs: dict[str, Path]
) -> None:
    """No byte of stdout/stderr and no file under the log, data and config dirs holds it."""
    assert secret not in proc.stdout and secret not in proc.stderr
    for folder in dirs.values():
        for path in folder.rglob("*") if folder.exists() else []:
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


# --- the filter ---------------------------------------------------------------


def test_redact_removes_the_configured_key_and_anything_shaped_like_one() -> None:
    forget_all()
    own = "gateway-token-0123456789"
    remember(own + "\n")  # as pasted: both the exact and the stripped value go
    text = f"bad key {own}\n or {own} and sk-ant-admin01-AbC_d-9 in 'Bearer sk-ant-api03-zz'"
    out = redact(text)
    assert own not in out and "sk-ant-" not in out and out.count(REDACTED) == 4
    assert redact("no secrets here") == "no secrets here"
    assert redact_data({"a": [own, ("x", own)], own: 1}) == {
        "a": [REDACTED, ("x", REDACTED)],
        REDACTED: 1,
    }
    forget_all()


def test_redact_data_finds_a_secret_anywhere_and_copies_nothing_without_one() -> None:
    """The precheck looks at one repr: a secret nested deep, in a key or a tuple, or with
    characters a repr would escape, is still found; a value with none comes back itself."""
    forget_all()
    clean = {"record": [{"text": "nothing here", "n": 1}], "t": ("a", "b")}
    assert redact_data(clean) is clean
    nested = {"a": [{"b": ("x", "key sk-ant-api03-Zz9")}]}
    assert redact_data(nested) == {"a": [{"b": ("x", f"key {REDACTED}")}]}
    for own in ("plain-secret-0123", "quote's-secret\\-0123"):
        forget_all()
        remember(own)
        assert redact_data(clean) == clean
        assert (redact_data(clean) is clean) == (own == "plain-secret-0123")  # or walked
        assert redact_data({"k": [{own: f"x{own}y"}]}) == {"k": [{REDACTED: f"x{REDACTED}y"}]}
    forget_all()


def test_every_event_message_and_tool_output_is_redacted(tmp_path: Path) -> None:
    """The points where text is made: events (notices, halts, records), failed calls, tools."""
    remember(FAKE_KEY)
    assert FAKE_KEY not in Notice(f"echo {FAKE_KEY}").text
    assert FAKE_KEY not in Halted(HaltReason.ERROR, f"x {FAKE_KEY}").detail
    failed = AttemptFailed(Attempt(error=FAKE_KEY, request_id=f"req {FAKE_KEY}"))
    assert FAKE_KEY not in json.dumps(failed.record.to_json())
    tool = ToolFinished(ToolCall(input={"k": [FAKE_KEY]}), output=FAKE_KEY)
    assert FAKE_KEY not in json.dumps(tool.record.to_json()) and FAKE_KEY not in tool.output
    assert FAKE_KEY not in str(CallFailed(message=f"401: bad {FAKE_KEY}"))
    assert FAKE_KEY not in ToolOutput(f"env: KEY={FAKE_KEY}").text
    log = RunLog(tmp_path, "r")
    log.append(UserMessage(text=f"{FAKE_KEY}!"))
    log.close()
    assert FAKE_KEY not in log.path.read_text() and json.loads(log.path.read_text())["text"]


# --- a bad key is refused before anything -------------------------------------


@pytest.mark.parametrize("bad", ["\t", "\x07", "sk-ant-é", "a b"])
def test_api_key_refuses_whitespace_control_and_non_ascii(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY + bad)
    with pytest.raises(UsageError, match="ANTHROPIC_API_KEY contains whitespace") as caught:
        api_key()
    assert FAKE_KEY not in str(caught.value)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    assert api_key() == FAKE_KEY


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " "])
def test_key_with_whitespace_or_control_characters_is_refused(
    suffix: str, dirs: dict[str, Path], workspace: Path
) -> None:
    key = FAKE_KEY + suffix
    proc = cli(
        dirs, "run", "hi", "--max-retries", "0", "--workspace", str(workspace),
        ANTHROPIC_API_KEY=key,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "ANTHROPIC_API_KEY" in line and "whitespace or control characters" in line
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not dirs["log"].exists()  # refused before a run was started
    assert_nowhere(FAKE_KEY, proc, dirs)


# --- a server that echoes the key ---------------------------------------------


def test_a_server_echoing_the_key_never_gets_it_into_log_or_output(
    dirs: dict[str, Path], workspace: Path
) -> None:
    """--json: the records go to stdout, the error notice to stderr; neither holds the key."""
    body = {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": f"bad key {FAKE_KEY} (echoed)"},
    }
    with LoopbackAPI(faults=[status(400, body)]) as api:
        proc = cli(
            dirs, "run", "hi", "--json", "--workspace", str(workspace),
            ANTHROPIC_API_KEY=FAKE_KEY, ANTHROPIC_BASE_URL=api.base_url,
        )  # fmt: skip
        sent = [h.get("x-api-key") or h.get("authorization") for _, h, _ in api.requests]
    assert proc.returncode == 1, proc.stderr
    assert sent and all(FAKE_KEY in str(h) for h in sent)  # the key was handed over and used
    assert "400 invalid_request_error: bad key [REDACTED] (echoed)" in proc.stderr
    assert "Traceback" not in proc.stderr
    (log,) = dirs["log"].glob("*.jsonl")
    assert '"status":400' in log.read_text() and REDACTED in log.read_text()
    assert_nowhere(FAKE_KEY, proc, dirs)


# --- out of reach of commands -------------------------------------------------


def test_a_command_cannot_read_the_key_through_proc(dirs: dict[str, Path], workspace: Path) -> None:
    """`/proc/$PPID/environ` and `cmdline` of tuiagent, read by a run_command child; and the
    re-exec that hides the key keeps the PID (the child's $PPID), the output, the exit status."""
    # $PPID and its parent: the command's supervisor (tools/reaper.py) and tuiagent itself.
    command = (
        "p=$PPID; for i in 1 2; do echo pid=$p; "
        f"tr '\\0' '\\n' < /proc/$p/environ | grep -c {MARKER_CMD}; "
        f"tr '\\0' '\\n' < /proc/$p/cmdline | grep -c {MARKER_CMD}; "
        "tr '\\0' '\\n' < /proc/$p/environ | grep -c '^PATH='; "  # the read itself works
        "p=$(awk '/^PPid/ {print $2}' /proc/$p/status); done; ls /proc/self/fd | wc -l"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuiagent", "run", f"run `{command}`", "--offline",
         "--allow-commands", "--max-turns", "1", "--workspace", str(workspace),
         "--log-dir", str(dirs["log"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(ANTHROPIC_API_KEY=FAKE_KEY, XDG_DATA_HOME=str(dirs["data"])),
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err  # halted by --max-turns, as without a key
    assert "turn  1" in out and "halted (max_turns)" in out
    (transcript,) = (dirs["log"] / "transcripts").glob("*.jsonl")
    results = [
        block["content"]
        for line in transcript.read_text().splitlines()
        for block in (json.loads(line).get("message") or {}).get("content", [])
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    (result,) = results
    *ancestors, fds = result.split("--- stdout ---\n")[1].split()
    seen = {ancestors[i]: tuple(ancestors[i + 1 : i + 4]) for i in range(0, len(ancestors), 4)}
    assert f"pid={proc.pid}" in seen, result  # exec kept the PID: tuiagent is an ancestor
    assert all(hits == ("0", "0", "1") for hits in seen.values()), result
    assert int(fds) <= 4  # 0, 1, 2 and ls's own: no inherited key pipe
    assert_nowhere(FAKE_KEY, subprocess.CompletedProcess([], 3, out, err), dirs)
    bad = cli(dirs, "run", "hi", "--max-turns", "x", ANTHROPIC_API_KEY=FAKE_KEY)
    assert bad.returncode == 2 and "--max-turns" in bad.stderr
