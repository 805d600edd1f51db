"""Where tuiagent keeps its files: one module, platformdirs underneath."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import PlatformDirs

_DIRS = PlatformDirs("tuiagent", appauthor=False)


def config_dir() -> Path:
    return Path(_DIRS.user_config_dir)


def data_dir() -> Path:
    return Path(_DIRS.user_data_dir)


def default_config_file() -> Path:
    """`--config` wins, then `TUIAGENT_CONFIG`, then config.toml in the config dir."""
    env = os.environ.get("TUIAGENT_CONFIG")
    return Path(env) if env else config_dir() / "config.toml"


def default_log_dir() -> Path:
    return data_dir() / "runs"
