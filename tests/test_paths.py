"""The dirs as `tuiagent.paths` finds them without platformdirs (for the statusline's start)
are platformdirs' own, whatever the XDG variables and HOME say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tuiagent import paths

ENVIRONMENTS = [
    {},  # HOME only
    {"XDG_CONFIG_HOME": "/srv/conf", "XDG_DATA_HOME": "/srv/data"},
    {"XDG_CONFIG_HOME": "relative/conf", "XDG_DATA_HOME": "relative/data"},  # ignored
    {"XDG_CONFIG_HOME": "", "XDG_DATA_HOME": ""},
    {"XDG_DATA_HOME": "/srv/data/"},  # a trailing slash
    {"HOME": "/home/someone/"},
    {"HOME": "relative-home"},  # platformdirs asks the password database
    {"HOME": "relative-home", "XDG_DATA_HOME": "/srv/data"},
]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_dirs_are_platformdirs_own(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from platformdirs import PlatformDirs

    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/home/tester")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    dirs = PlatformDirs("tuiagent", appauthor=False)
    assert paths.user_dir("config") == dirs.user_config_dir
    assert paths.user_dir("data") == dirs.user_data_dir
    assert paths.data_dir() == Path(dirs.user_data_dir)
    assert paths.default_config_file() == Path(dirs.user_config_dir, "config.toml")


def test_the_statusline_starts_without_platformdirs_pathlib_or_dataclasses() -> None:
    code = (
        "import sys, io\n"
        "from tuiagent.entry import main\n"
        "sys.argv = ['tuiagent', 'statusline']\n"
        'sys.stdin = io.TextIOWrapper(io.BytesIO(b\'{"session_id": "x"}\'))\n'
        "main()\n"
        "slow = ('platformdirs', 'pathlib', 'dataclasses', 'tomllib', 'typing', 'inspect')\n"
        "print('SLOW', [m for m in slow if m in sys.modules])\n"
    )
    env = {"HOME": "/nonexistent-home", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "SLOW []" in result.stdout
