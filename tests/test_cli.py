"""Bad input: one clear line and the right exit status, before anything is spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf"])
def test_bad_max_cost_names_the_flag(value: str, workspace: Path, log_dir: Path) -> None:
    proc = run_cli(
        "run",
        "hi",
        "--offline",
        f"--max-cost={value}",
        "--workspace",
        str(workspace),
        "--log-dir",
        str(log_dir),
    )
    assert proc.returncode == 2
    assert "--max-cost" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not log_dir.exists()


def test_missing_workspace_exits_2(tmp_path: Path, log_dir: Path) -> None:
    proc = run_cli(
        "run", "hi", "--offline", "--workspace", str(tmp_path / "nope"), "--log-dir", str(log_dir)
    )
    assert proc.returncode == 2 and "workspace not found" in proc.stderr


def test_unknown_model_exits_2_before_any_call(
    tmp_path: Path, workspace: Path, log_dir: Path
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[tiers]\nfast = "claude-nonexistent-9"\n')
    proc = run_cli(
        "run",
        "hi",
        "--offline",
        "--config",
        str(cfg),
        "--workspace",
        str(workspace),
        "--log-dir",
        str(log_dir),
    )
    assert proc.returncode == 2
    assert (
        "claude-nonexistent-9" in proc.stderr and '[prices."claude-nonexistent-9"]' in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_hand_set_price_makes_a_model_usable(
    tmp_path: Path, workspace: Path, log_dir: Path
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[tiers]\nbalanced = "claude-custom-1"\n'
        '[prices."claude-custom-1"]\ninput_mtok = 1.5\noutput_mtok = 7.5\n'
    )
    proc = run_cli(
        "run",
        "List the files",
        "--offline",
        "--tier",
        "balanced",
        "--config",
        str(cfg),
        "--workspace",
        str(workspace),
        "--log-dir",
        str(log_dir),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert "claude-custom-1" in proc.stdout


def test_unknown_config_key_is_named(tmp_path: Path, workspace: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("max_cots_usd = 3\n")
    proc = run_cli("run", "hi", "--offline", "--config", str(cfg), "--workspace", str(workspace))
    assert proc.returncode == 2 and "max_cots_usd" in proc.stderr


def test_bad_flag_is_one_line() -> None:
    proc = run_cli("run", "hi", "--max-turns", "zero")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--max-turns" in proc.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_flags_count_before_or_after_the_subcommand(
    where: str, workspace: Path, log_dir: Path
) -> None:
    flags = [
        "--max-cost",
        "0.00001",
        "--offline",
        "--workspace",
        str(workspace),
        "--log-dir",
        str(log_dir),
    ]
    args = (
        [*flags, "run", "List the files"]
        if where == "before"
        else ["run", "List the files", *flags]
    )
    proc = run_cli(*args)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # the tiny cap halts before any call
    assert list(log_dir.glob("*.jsonl"))  # and the log went where --log-dir said
