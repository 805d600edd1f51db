"""Bad input: one clear line and the right exit status, before anything is spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_cli


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


def test_a_network_failure_exits_1_not_3(
    workspace: Path,
    log_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tuiagent.cli import main

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    code = main(
        [
            "run",
            "hi",
            "--max-retries",
            "0",
            "--workspace",
            str(workspace),
            "--log-dir",
            str(log_dir),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1  # an error, not a limit the user set
    # The summary line names the limit once ("error (max_retries)", never "error (error)").
    assert out.strip().splitlines()[-1].startswith("error (max_retries): 0 turns")


def test_help_names_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from tuiagent.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in (
        "pin a model tier (default: auto)",
        "(default: 1.00)",
        "most model calls per request (default: 20)",
        "(default: 3)",
        "(default: the current directory)",
        "where run logs go (default:",
    ):
        assert default in text


@pytest.mark.parametrize(
    ("keymap", "named"),
    [
        ('cap_up = "f2"', "keymap.cap_up: 'f2' is already the key of cap_down"),
        ('quit = "notakey!!"', "keymap.quit: 'notakey!!' is not a key name"),
        ('cycle_tier = "t"', "keymap.cycle_tier: 't' would be typed into the input"),
        ('report = "ctrl+p"', "keymap.report: 'ctrl+p' opens the command palette"),
        ('raise_cap = "f9"', "unknown config key 'keymap.raise_cap' (known: cap_down,"),
    ],
)
def test_a_bad_keymap_value_is_one_line_and_exit_2(
    keymap: str, named: str, tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuiagent.cli import main

    config = tmp_path / "config.toml"
    config.write_text(f"[keymap]\n{keymap}\n")
    code = main(["--offline", "--config", str(config), "--workspace", str(workspace)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and named in err
