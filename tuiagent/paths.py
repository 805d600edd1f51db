"""Where tuiagent keeps its files: one module, platformdirs underneath.

`tuiagent statusline` is a new process every few hundred milliseconds, so the dirs are
first found as text (`user_dir`) without importing platformdirs or pathlib (together a
third of that command's start): on Linux, with an absolute XDG variable or an absolute
HOME, they are the XDG dirs, as platformdirs gives them (tests/test_paths.py compares);
anywhere else, platformdirs decides.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

APP = "tuiagent"
CONFIG_ENV = "TUIAGENT_CONFIG"
_XDG = {"config": ("XDG_CONFIG_HOME", ".config"), "data": ("XDG_DATA_HOME", ".local/share")}


def user_dir(kind: str) -> str:
    """The user's "config" or "data" dir, as text."""
    variable, under_home = _XDG[kind]
    android = hasattr(sys, "getandroidapilevel") or (
        os.environ.get("ANDROID_DATA") == "/data" and os.environ.get("ANDROID_ROOT") == "/system"
    )
    if sys.platform == "linux" and not android:
        xdg, home = os.environ.get(variable, ""), os.environ.get("HOME", "")
        if os.path.isabs(xdg):
            return os.path.join(xdg, APP)
        if os.path.isabs(home):
            return os.path.join(home, under_home, APP)
    from platformdirs import PlatformDirs

    dirs = PlatformDirs(APP, appauthor=False)
    return dirs.user_config_dir if kind == "config" else dirs.user_data_dir


def config_file_text() -> str:
    """`--config` wins, then `TUIAGENT_CONFIG`, then config.toml in the config dir."""
    return os.environ.get(CONFIG_ENV) or os.path.join(user_dir("config"), "config.toml")


def config_dir() -> Path:
    from pathlib import Path

    return Path(user_dir("config"))


def data_dir() -> Path:
    from pathlib import Path

    return Path(user_dir("data"))


def default_config_file() -> Path:
    """`--config` wins, then `TUIAGENT_CONFIG`, then config.toml in the config dir."""
    from pathlib import Path

    return Path(config_file_text())


def default_log_dir() -> Path:
    return data_dir() / "runs"


def user_themes_dir() -> Path:
    return config_dir() / "themes"


def ui_state_file() -> Path:
    """What the app remembers between sessions (the theme)."""
    return data_dir() / "ui-state.json"
