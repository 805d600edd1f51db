"""Themes: built-in TOML files (top-level `themes/`, packaged as `tuiagent/_themes`) and the
user's own from `themes/` in the config dir; the choice is remembered in a small state file."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

import tuiagent

DEFAULT_THEME = "ledger-dark"
_FIELDS = {f.name: f for f in dataclasses.fields(Theme)}
_COLOURS = {
    "primary", "secondary", "warning", "error", "success", "accent",
    "foreground", "background", "surface", "panel", "boost",
}  # fmt: skip


class ThemeFileError(Exception):
    """A theme file that cannot be used: the message names the file and the key."""


def builtin_themes_dir() -> Path | None:
    package = Path(tuiagent.__file__).parent
    for folder in (package / "_themes", package.parent / "themes"):  # wheel, then checkout
        if folder.is_dir():
            return folder
    return None


def load_theme(path: Path) -> Theme:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ThemeFileError(f"theme file {path}: {exc}") from None
    data.setdefault("name", path.stem)
    for key, value in data.items():
        if key not in _FIELDS:
            raise ThemeFileError(f"theme file {path}: unknown key {key!r}")
        if key in _COLOURS:
            try:
                Color.parse(value)
            except (ColorParseError, TypeError, ValueError):
                raise ThemeFileError(
                    f"theme file {path}: key {key!r} must be a colour, got {value!r}"
                ) from None
        elif key == "dark" and not isinstance(value, bool):
            raise ThemeFileError(f"theme file {path}: key 'dark' must be true or false")
        elif key == "variables" and not isinstance(value, dict):
            raise ThemeFileError(f"theme file {path}: key 'variables' must be a table")
    if "primary" not in data:
        raise ThemeFileError(f"theme file {path}: key 'primary' is missing")
    return Theme(**data)


def load_themes(folders: list[Path | None]) -> tuple[list[Theme], list[str]]:
    """Every theme in the folders (later folders win on name), and one line per bad file."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for folder in folders:
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = load_theme(path)
            except ThemeFileError as exc:
                problems.append(str(exc))
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems


def read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(path: Path, **values: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**read_state(path), **values}), encoding="utf-8")
    except OSError:
        pass  # remembering the theme is a nicety; never fail the app for it
