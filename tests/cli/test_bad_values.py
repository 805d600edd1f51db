"""Bad inputs, each one line naming the value, exit 2, before anything is sent: the base
URL, the proxy's upstream, and (property tests) every config key and CLI flag."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.cli import run_cli
from tuiagent.cli.main import _settings_from, build_parser
from tuiagent.config import SETTINGS_BY_KEY, Settings, settings_from_toml
from tuiagent.errors import TuiagentError

HOSTILE_SCALARS = st.one_of(
    st.sampled_from(
        [math.inf, -math.inf, math.nan, 1e308, -1.0, 0, 0.0, -0.0, 10**30, -(10**30), 2**63]
    ),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", " ", "\n", "inf", "nan", "1e309", "\x1b[2J", "-1", "０"]),
    st.just(datetime.datetime(2026, 1, 1)),
)
HOSTILE = st.one_of(
    HOSTILE_SCALARS,
    st.lists(HOSTILE_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=8), HOSTILE_SCALARS, max_size=3),
)


def all_finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return all(all_finite(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(all_finite(v) for v in value)
    return True


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SETTINGS_BY_KEY)), HOSTILE)
def test_any_config_value_is_taken_or_refused_in_one_line(key: str, value: object) -> None:
    try:
        got = settings_from_toml({key: value}, "config.toml")
    except TuiagentError as exc:
        message = str(exc)
        assert "\n" not in message and key in message, message
        assert exc.exit_code == 2
    else:
        assert isinstance(got, Settings) and all_finite(got)


FLAGS = [
    "--tier",
    "--max-cost",
    "--max-turns",
    "--max-retries",
    "--max-parallel-agents",
]


@settings(max_examples=300)
@given(
    flag=st.sampled_from(FLAGS),
    value=st.one_of(
        st.text(max_size=12),
        st.sampled_from(["inf", "nan", "-1", "0", "1e309", "99999999999999999999", "$1", "1_0"]),
    ),
)
def test_any_flag_value_is_taken_or_refused_in_one_line(flag: str, value: str) -> None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(["run", "hi", f"{flag}={value}"])
        got = _settings_from(args)
    except SystemExit as exc:
        assert exc.code == 2
        assert err.getvalue().count("\n") == 1 and flag in err.getvalue(), err.getvalue()
    except TuiagentError as exc:
        assert "\n" not in str(exc) and flag in str(exc) and exc.exit_code == 2
    else:
        assert all_finite(got) and got.run.max_cost_usd.is_finite()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://api.anthropic.com\n", "whitespace or a control character"),
        (" https://api.anthropic.com", "whitespace or a control character"),
        ("https://api.anthropic.com\t", "whitespace or a control character"),
        ("http://127.0.0.1:0", "port 0"),
        ("http://127.0.0.1:99999", "Port out of range"),
    ],
)
def test_a_bad_base_url_is_one_line_before_anything_is_sent(
    url: str, why: str, workspace: Path, log_dir: Path
) -> None:
    proc = run_cli(
        "run",
        "hi",
        "--workspace",
        str(workspace),
        "--log-dir",
        str(log_dir),
        env={"ANTHROPIC_API_KEY": "sk-ant-api03-unused-0123456789", "ANTHROPIC_BASE_URL": url},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "ANTHROPIC_BASE_URL" in line and why in line, line
    assert not log_dir.exists()  # refused before the run began


@pytest.mark.parametrize(
    "upstream", ["http://127.0.0.1:99999", "http://127.0.0.1:0", "http://x\n", " http://x"]
)
def test_a_bad_upstream_is_one_line(upstream: str, tmp_path: Path) -> None:
    proc = run_cli("proxy", "--no-ui", "--upstream", upstream, "--log-dir", str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "--upstream" in line


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-inf", "100000"])
@pytest.mark.parametrize("key", ["call_timeout_s", "stream_idle_timeout_s"])
def test_a_timeout_that_is_not_a_finite_number_is_refused(
    key: str, value: str, tmp_path: Path, workspace: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"{key} = {value}\n")
    proc = run_cli("run", "hi", "--offline", "--config", str(config), "--workspace", str(workspace))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert key in line and "up to a day" in line
