"""Every flag, config value and environment variable is checked before any call: one line
that names it, exit 2, no traceback, nothing written. And a closed pipe ends quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx2
import pytest

from tests.support.cli import cli_env
from tuiagent.cli import main
from tuiagent.llm.client import retry_after_seconds

PRICED = '[tiers]\nfast = "my-model"\n[prices."my-model"]\noutput_mtok = 1\n'


def run_main(
    capsys: pytest.CaptureFixture[str], log_dir: Path, workspace: Path, *args: str
) -> tuple[int, str]:
    """`tuiagent run hi --offline ARGS` in this process; the exit status and stderr."""
    try:
        base = ["run", "hi", "--offline", "--workspace", str(workspace), "--log-dir", str(log_dir)]
        code = main([*base, *args])
    except SystemExit as exited:  # argparse's own one-line errors
        code = int(exited.code or 0)
    return code, capsys.readouterr().err


def assert_one_line(err: str, *names: str) -> None:
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    for name in names:
        assert name in line, line


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-cost", "1e30"),
        ("--max-cost", "99999999999999999"),
        ("--max-cost", "1000000.01"),
        ("--max-cost", "$$5"),
        ("--max-cost", "1_000"),
        ("--max-cost", "١٠"),  # Arabic-Indic digits
        ("--max-cost", "1e-3"),
        ("--max-turns", "99999999999"),
        ("--max-retries", "99999999999"),
    ],
)
def test_bad_flag_values(
    flag: str,
    value: str,
    capsys: pytest.CaptureFixture[str],
    log_dir: Path,
    workspace: Path,
) -> None:
    code, err = run_main(capsys, log_dir, workspace, f"{flag}={value}")
    assert code == 2
    assert_one_line(err, flag)
    assert not log_dir.exists()


@pytest.mark.parametrize("value", ["$5", "0.25", "1000000"])
def test_money_in_plain_digits_is_accepted(value: str) -> None:
    from tuiagent.config import parse_money

    assert parse_money(value, "--max-cost") > 0


CONFIG_CASES = [
    (b"max_cost_usd = 1e300\n", "max_cost_usd"),
    (b"max_cost_usd = inf\n", "max_cost_usd"),
    (b"retry_max_wait_s = inf\n", "retry_max_wait_s"),
    (b"retry_max_wait_s = 1e9\n", "retry_max_wait_s"),
    (b"command_timeout_s = nan\n", "command_timeout_s"),
    (b"max_tokens = 100000000000\n", "max_tokens"),
    (PRICED.encode() + b'input_mtok = "abc"\n', "prices.my-model.input_mtok"),
    (PRICED.encode() + b"input_mtok = -1\n", "prices.my-model.input_mtok"),
    (PRICED.encode() + b"input_mtok = nan\n", "prices.my-model.input_mtok"),
    (PRICED.encode() + b"input_mtok = inf\n", "prices.my-model.input_mtok"),
    (PRICED.encode() + b'input_mtok = "1_0"\n', "prices.my-model.input_mtok"),
    (b"max_turns = 3\n\xff\xfe\n", "not UTF-8"),
    (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "not valid TOML"),
]


@pytest.mark.parametrize(("content", "names"), CONFIG_CASES)
def test_bad_config_values(
    content: bytes,
    names: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    log_dir: Path,
    workspace: Path,
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_bytes(content)
    code, err = run_main(capsys, log_dir, workspace, "--config", str(cfg))
    assert code == 2
    assert_one_line(err, names)
    assert not log_dir.exists()  # checked before a run was started (no request, no record)


def test_a_config_with_a_bom_is_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, log_dir: Path, workspace: Path
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_bytes(b"\xef\xbb\xbfmax_cost_usd = 0.000001\n")
    code, err = run_main(capsys, log_dir, workspace, "--config", str(cfg))
    assert code == 3 and "$0.000001 cap" in err  # read and applied: halted at that cap


def test_bad_config_files(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    log_dir: Path,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    prompt = tmp_path / "prompt.txt"
    prompt.write_bytes(b"\xff\xfe not utf-8")
    sp_cfg = tmp_path / "sp.toml"
    sp_cfg.write_text(f'system_prompt_file = "{prompt}"\n')
    fifo_sp = tmp_path / "fifo-sp.toml"
    fifo_sp.write_text(f'system_prompt_file = "{fifo}"\n')
    cases = [
        (["--config", str(fifo)], "is not a regular file"),  # must not hang
        (["--config", str(tmp_path)], "is not a regular file"),
        (["--config", str(tmp_path / "typo.toml")], "config file not found"),
        (["--config", str(sp_cfg)], "system_prompt_file"),
        (["--config", str(fifo_sp)], "system_prompt_file"),
    ]
    for args, names in cases:
        code, err = run_main(capsys, log_dir, workspace, *args)
        assert code == 2, args
        assert_one_line(err, names)
    monkeypatch.setenv("TUIAGENT_CONFIG", "/typo.toml")
    code, err = run_main(capsys, log_dir, workspace)
    assert code == 2
    assert_one_line(err, "config file not found: /typo.toml", "TUIAGENT_CONFIG")
    assert not log_dir.exists()


@pytest.mark.parametrize(
    ("workspace_arg", "names"),
    [("/", "whole filesystem"), ("/proc/1/root", "system folder"), ("/dev", "system folder")],
)
def test_refused_workspaces(
    workspace_arg: str, names: str, capsys: pytest.CaptureFixture[str], log_dir: Path
) -> None:
    code, err = run_main(capsys, log_dir, Path(workspace_arg))
    assert code == 2
    assert_one_line(err, "workspace", names)


@pytest.mark.parametrize(
    "url", ["http://[::1", "ftp://example.com", "not a url", "http://127.0.0.1:99999", "http://"]
)
def test_bad_base_urls_are_usage_errors(
    url: str,
    capsys: pytest.CaptureFixture[str],
    log_dir: Path,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-unused-0123456789")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    code = main(["run", "hi", "--workspace", str(workspace), "--log-dir", str(log_dir)])
    err = capsys.readouterr().err
    assert code == 2  # not retried as a transient error
    assert_one_line(err, "ANTHROPIC_BASE_URL")
    assert not log_dir.exists()


def test_replay_with_an_empty_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["replay", "RUN", "--turn", "1", "--model", ""])
    assert exited.value.code == 2
    assert_one_line(capsys.readouterr().err, "--model")


def _response(**headers: str) -> httpx2.Response:
    return httpx2.Response(429, headers=headers)


def test_retry_after_as_an_http_date_is_honoured() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    wait = retry_after_seconds(_response(**{"retry-after": format_datetime(soon, usegmt=True)}))
    assert wait is not None and 25 <= wait <= 31
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(_response(**{"retry-after": past})) == 0.0
    assert retry_after_seconds(_response(**{"retry-after": "12"})) == 12.0
    for bad in ("inf", "nan", "-5", "soon"):
        assert retry_after_seconds(_response(**{"retry-after": bad})) is None
    assert retry_after_seconds(_response(**{"retry-after-ms": "inf", "retry-after": "2"})) == 2.0


# --- a reader that goes away (`| head`) ---------------------------------------


def _to_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """`tuiagent ARGS | head -0`, made certain: the pipe's reader is gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "tuiagent", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            timeout=120,
        )
    finally:
        os.close(write_end)


def test_run_json_to_a_closed_pipe_ends_quietly_with_run_end(
    workspace: Path, log_dir: Path
) -> None:
    proc = _to_a_closed_pipe(
        "run", "--json", "Read notes.txt", "--offline", "--workspace", str(workspace),
        "--log-dir", str(log_dir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    (log,) = log_dir.glob("*.jsonl")
    lines = log.read_text().splitlines()
    assert '"type":"run_start"' in lines[0]
    assert '"type":"run_end"' in lines[-1] and '"halt_reason":"interrupted"' in lines[-1]


def test_report_csv_to_a_closed_pipe_ends_quietly(workspace: Path, log_dir: Path) -> None:
    args = ["run", "hi", "--offline", "--workspace", str(workspace), "--log-dir", str(log_dir)]
    assert main(args) in (0, 3)
    proc = _to_a_closed_pipe("report", "--csv", "--log-dir", str(log_dir))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


# --- report survives any line ---------------------------------------------------

HOSTILE_LINES = [
    '{"type":"turn","x":' + "[" * 100_000 + "]" * 100_000 + "}",  # RecursionError in json
    '{"type":"turn","turn":9,"cost_usd":1e308}',
    '{"type":"turn","turn":9,"cost_usd":-1e308}',
    '{"type":"turn","turn":9,"cost_usd":1e999}',  # json reads it as inf
    '{"type":"turn","turn":9,"cost_usd":NaN}',
    '{"type":"turn","turn":9,"cost_usd":"lots","input_tokens":"many"}',
    '{"type":"turn","turn":9,"input_tokens":' + "9" * 400 + "}",
    '{"type":"turn","turn":9,"input_tokens":' + "9" * 5000 + "}",  # past int's digit limit
    '{"type":"turn","turn":-5,"model":7}',
    '{"type":["turn"]}',
    "[1, 2, 3]",
]


def test_report_survives_any_line(
    workspace: Path, log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deep nesting, huge numbers, wrong types: each such line skipped and counted, the rest
    reported, in every output."""
    assert main(["run", "hi", "--offline", "--workspace", str(workspace), "--log-dir", str(log_dir)]) in (0, 3)  # fmt: skip
    (log,) = log_dir.glob("*.jsonl")
    good = sum(1 for line in log.read_text().splitlines() if '"type":"turn"' in line)
    with log.open("a") as fh:
        fh.write("\n".join(HOSTILE_LINES) + "\n")
    capsys.readouterr()
    for output in ([], ["--json"], ["--csv"], ["--otel"]):
        assert main(["report", "--log-dir", str(log_dir), *output]) == 0, output
        out, err = capsys.readouterr()
        assert f"{len(HOSTILE_LINES)} unreadable line(s) skipped" in err
        assert "Traceback" not in err and "e+308" not in out and "Infinity" not in out
        if output == ["--json"]:
            assert sum(r["turns"] for r in json.loads(out)["runs"]) == good
        if output == ["--csv"]:
            assert len(out.strip().splitlines()) == good + 1  # the header and the good turns


def test_the_tolerant_reader_keeps_every_record_tuiagent_writes() -> None:
    from tuiagent.runs.records import parse_line as read_record

    kept = [
        '{"type":"attempt","status":429,"cost_usd":0.001,"input_tokens":5,"retry_in_s":1.5}',
        '{"type":"run_end","status":"halted","saved_by_cache_usd":-0.002,"turns":3}',
        '{"type":"turn","turn":1,"cost_breakdown_usd":{"input":0.1},"cost_without_cache_usd":null,'
        '"route_candidates":[{"tier":"fast","predicted_cost_usd":0.01,"cached_prefix_tokens":0}]}',
        '{"type":"tool","input":{"a":[1,{"b":"c"}]},"result_tokens":12,"future_field":[1e10]}',
    ]
    assert all(read_record(line) is not None for line in kept)
    assert all(read_record(line) is None for line in HOSTILE_LINES)
