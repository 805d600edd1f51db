"""No control byte from a file, a file name, a model or a server reaches the terminal, on any
output of the CLI: `tuiagent run` (answers, tool lines, failed attempts, notices, errors),
the proxy's per-call lines, `report`'s table and CSV. `--json`, the run log and the
transcript keep the exact text, JSON-escaped."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.cli import cli_env, run_cli
from tests.support.loopback import LoopbackAPI, status
from tuiagent.cli.main import main
from tuiagent.cli.output import guarded_output
from tuiagent.llm.tokens import TokenUsage
from tuiagent.proxy.lines import call_line
from tuiagent.runs.log import RunLog
from tuiagent.runs.records import Attempt, ProxyTurn, RefusedCall, RunEnd, RunStart, ToolCall, Turn

# Every character a terminal acts on (but newline and tab), then the sequences that matter.
C0 = [chr(c) for c in range(0x20) if chr(c) not in "\t\n"]
C1 = [chr(c) for c in range(0x7F, 0xA0)]
BIDI = list("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
SEQUENCES = [
    "\x1b]52;c;cHduZWQ=\x07",  # OSC 52: set the clipboard
    "\x1b]52;c;cHduZWQ=\x1b\\",  # the same, ended by ST
    "\x1b[2J",  # wipe the screen
    "\x1b]8;;http://x\x07link\x1b]8;;\x07",  # a hyperlink
    "\x1b]0;TITLE\x07",  # the window title
    "\x9b2J\x9d0;T\x9c",  # 8-bit CSI and OSC
    "\x1bP+q544e\x1b\\",  # DCS: a terminal query
]
PAYLOAD = "".join(SEQUENCES) + " ".join([*C0, *C1, *BIDI])
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def assert_clean(text: str) -> None:
    found = CONTROL.search(text)
    assert found is None, f"raw {found.group()!r} reaches the terminal in {text!r}"


def file_text() -> str:
    """PAYLOAD as a file can hold it: a NUL makes it a binary file, never shown."""
    return PAYLOAD.replace("\x00", "")


def test_run_shows_a_hostile_file_and_file_name_as_text(
    workspace: Path, log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workspace / "evil.txt").write_text(file_text())
    names = [*SEQUENCES, "".join(C0[1:]), "".join(C1 + BIDI)]  # a name holds 255 bytes
    for n, name in enumerate(names):
        (workspace / f"{n}{name.replace('/', '')}.txt").write_text("x\n")
    for prompt in ("read evil.txt", "list the files"):
        code = main(
            ["run", prompt, "--offline", "--workspace", str(workspace), "--log-dir", str(log_dir)]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        assert_clean(out + err)
        assert "␛]52;c;cHduZWQ=" in out  # shown, not dropped
    # The transcript keeps what the model was sent, exactly.
    results = [
        block.get("content")
        for transcript in (log_dir / "transcripts").glob("*.jsonl")
        for line in transcript.read_text().splitlines()
        for block in json.loads(line).get("message", {}).get("content") or []
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    assert file_text() in results


def test_a_server_error_is_shown_as_text_and_logged_exactly(
    workspace: Path,
    log_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": PAYLOAD}}
    with LoopbackAPI(faults=[status(400, body), status(400, body)]) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-key")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        args = ["run", "hi", "--workspace", str(workspace), "--log-dir", str(log_dir)]
        assert main(args) == 1
        out, err = capsys.readouterr()
        assert main([*args, "--json"]) == 1
        json_out, json_err = capsys.readouterr()
    assert_clean(out + err + json_out + json_err)
    assert "attempt failed" in out and "␛[2J" in out
    attempts = [json.loads(line) for line in json_out.splitlines() if '"attempt"' in line]
    assert attempts and PAYLOAD in attempts[0]["error"]  # --json: exact, JSON-escaped


def hostile_log(log_dir: Path) -> None:
    """A log whose every free-text field holds the payload."""
    log = RunLog(log_dir, "20260101T000000Z-abcdef")
    log.append(RunStart(started_at="2026-01-01T00:00:00Z", models={"fast": PAYLOAD}))
    usage = TokenUsage(input_tokens=10, output_tokens=5)
    log.append(
        Turn(
            turn=1,
            model="claude-haiku-4-5" + PAYLOAD,
            tier="fast",
            usage=usage,
            cost_usd=Decimal("0.01"),
            cumulative_cost_usd=Decimal("0.01"),
            route_reason=PAYLOAD,
            stop_reason=PAYLOAD,
            cache_miss_reason=PAYLOAD,
        )
    )
    log.append(ToolCall(turn=1, tool_use_id="t1", name="read" + PAYLOAD, input={"path": PAYLOAD}))
    log.append(Attempt(turn=2, model=PAYLOAD, error_type=PAYLOAD, error=PAYLOAD))
    log.append(RunEnd(status="error", total_cost_usd=Decimal("0.01"), turns=1))
    log.close()


@pytest.mark.parametrize("fmt", [[], ["--csv"], ["--top", "3"], ["--json"], ["--otel"]])
def test_report_shows_hostile_fields_as_text(
    tmp_path: Path, fmt: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    hostile_log(tmp_path)
    assert main(["report", "--log-dir", str(tmp_path), "--all", *fmt]) == 0
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert "␛]0;TITLE" in out or "\\u001b]0;TITLE" in out


def test_the_headless_proxy_lines_show_hostile_fields_as_text(tmp_path: Path) -> None:
    body = {"type": "error", "error": {"type": "api_error", "message": PAYLOAD}}
    with LoopbackAPI(faults=[status(500, body)]) as api:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tuiagent", "proxy", "--port", "0", "--no-ui"),
                *("--upstream", api.base_url, "--log-dir", str(tmp_path)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
        )
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        url = first.split("listening on ")[1].strip()
        proc.stdout.readline()
        request = {"max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
        for model in ("claude-sonnet-4-5", "claude-" + PAYLOAD):
            httpx.post(
                f"{url}/v1/messages",
                json={**request, "model": model},
                headers={"x-api-key": "sk-ant-test-not-a-key", "anthropic-version": "2023-06-01"},
                timeout=30,
            )
        lines = [proc.stdout.readline().decode() for _ in range(2)]
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    shown = "".join(lines) + out.decode() + err.decode()
    assert_clean(shown)
    assert "␛]52" in lines[0] and "refused" in lines[1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*C0, *C1, *BIDI, *SEQUENCES, "a", "\n", "\t", "é"])).map("".join))
def test_any_mix_through_the_cli_streams(text: str) -> None:
    """The proxy's lines and every print go through the CLI's stdout and stderr."""
    turn = ProxyTurn(turn=1, client=text, model=text, stop_reason=text, cache_miss_reason=text)
    refused = RefusedCall(turn=2, client=text, model=text, error=text)
    captured: list[str] = []

    class Sink:
        def write(self, s: str) -> int:
            captured.append(s)
            return len(s)

        def flush(self) -> None:
            pass

    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = Sink()  # type: ignore[assignment]
    try:
        with guarded_output():
            print(call_line(turn), call_line(refused))
            print(f"tuiagent: {text}", file=sys.stderr)
    finally:
        sys.stdout, sys.stderr = saved
    assert_clean("".join(captured))


@pytest.mark.parametrize(
    "args",
    [
        ["run", "hi", "--offline", "--workspace", "ws" + PAYLOAD.replace("\x00", "")],
        ["run", "hi", "--offline", "--config", "c" + PAYLOAD.replace("\x00", "")],
        ["report", "--log-dir", "d" + PAYLOAD.replace("\x00", "")],
        ["run", "hi", "--tier", PAYLOAD.replace("\x00", "")],
        ["--" + PAYLOAD.replace("\x00", "")],
    ],
)
def test_error_messages_show_hostile_values_as_text(args: list[str], tmp_path: Path) -> None:
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert_clean(proc.stdout + proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1
