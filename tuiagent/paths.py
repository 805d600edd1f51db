"""Where tuiagent keeps its files: one module, platformdirs underneath."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import PlatformDirs

_DIRS = PlatformDirs("tuiagent", appauthor=False)
CONFIG_ENV = "TUIAGENT_CONFIG"


def config_dir() -> Path:
    return Path(_DIRS.user_config_dir)


def data_dir() -> Path:
    return Path(_DIRS.user_data_dir)


def default_config_file() -> Path:
    """`--config` wins, then `TUIAGENT_CONFIG`, then config.toml in the config dir."""
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else config_dir() / "config.toml"


def default_log_dir() -> Path:
    return data_dir() / "runs"


def user_themes_dir() -> Path:
    return config_dir() / "themes"


def ui_state_file() -> Path:
    """What the app remembers between sessions (the theme)."""
    return data_dir() / "ui-state.json"
