"""A suite file (TOML): its tasks and, optionally, its arms. Every problem is one line that
names the file, the task and the key (a UsageError: exit 2), before anything is sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuiagent.config import TIER_CHOICES, read_toml
from tuiagent.errors import ConfigError, UsageError

TASK_KEYS = (
    "name",
    "prompt",
    "workspace",
    "system_prompt",
    "answer_matches",
    "files_changed",
    "judge",
)
ARM_KEYS = ("name", "tier", "config")
SUITE_KEYS = ("name",)


@dataclass(frozen=True)
class Task:
    name: str
    prompt: str
    workspace: Path | None  # copied fresh for each run; None: an empty folder
    system_prompt: str | None  # the task's own system prompt (else the config's)
    answer_matches: re.Pattern[str] | None
    files_changed: tuple[str, ...]  # paths (in the workspace) each run must change
    judge: str | None  # what the answer must do, for a judge call to check

    @property
    def checks(self) -> tuple[str, ...]:
        """The names of this task's checks, in the order they are shown."""
        return tuple(
            name
            for name, present in (
                ("answer_matches", self.answer_matches is not None),
                ("files_changed", bool(self.files_changed)),
                ("judge", self.judge is not None),
            )
            if present
        )


@dataclass(frozen=True)
class Arm:
    """One way to run every task: a tier, a config file, or both."""

    name: str
    tier: str | None
    config: Path | None


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    tasks: tuple[Task, ...]
    arms: tuple[Arm, ...]  # from the file's [[arms]]; empty: the flags decide


def _text(where: str, key: str, value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise UsageError(f"{where}: {key} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise UsageError(f"{where}: {key} holds a NUL byte")
    return value


def _keys(where: str, table: Any, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table, got {type(table).__name__}")
    for key in table:
        if key not in known:
            raise UsageError(f"{where} has an unknown key {key!r} (known: {', '.join(known)})")
    return table


def _folder(where: str, base: Path, value: Any) -> Path:
    path = base / _text(where, "workspace", value)
    if not path.is_dir():
        raise UsageError(f"{where}: workspace {path} is not a folder")
    return path


def _task(where: str, base: Path, table: Any) -> Task:
    data = _keys(where, table, TASK_KEYS)
    for key in ("name", "prompt"):
        if key not in data:
            raise UsageError(f"{where} has no {key}")
    name = _text(where, "name", data["name"])
    where = f"{where} ({name})"
    pattern = None
    if "answer_matches" in data:
        try:
            pattern = re.compile(_text(where, "answer_matches", data["answer_matches"]))
        except re.error as exc:
            raise UsageError(f"{where}: answer_matches is not a valid regex: {exc}") from None
    changed = data.get("files_changed", [])
    if not isinstance(changed, list) or not all(isinstance(p, str) and p.strip() for p in changed):
        raise UsageError(f"{where}: files_changed must be a list of paths, got {changed!r}")
    for p in changed:
        if Path(p).is_absolute() or ".." in Path(p).parts:
            raise UsageError(f"{where}: files_changed names {p!r}, outside the workspace")
    return Task(
        name=name,
        prompt=_text(where, "prompt", data["prompt"]),
        workspace=_folder(where, base, data["workspace"]) if "workspace" in data else None,
        system_prompt=(
            _text(where, "system_prompt", data["system_prompt"])
            if "system_prompt" in data
            else None
        ),
        answer_matches=pattern,
        files_changed=tuple(changed),
        judge=_text(where, "judge", data["judge"]) if "judge" in data else None,
    )


def _arm(where: str, base: Path, table: Any) -> Arm:
    data = _keys(where, table, ARM_KEYS)
    if "name" not in data:
        raise UsageError(f"{where} has no name")
    name = _text(where, "name", data["name"])
    tier = data.get("tier")
    if tier is not None and tier not in TIER_CHOICES:
        raise UsageError(f"{where} ({name}): tier must be one of {', '.join(TIER_CHOICES)}")
    config = base / _text(where, "config", data["config"]) if "config" in data else None
    if config is not None and not config.is_file():
        raise UsageError(f"{where} ({name}): config {config} is not a file")
    if tier is None and config is None:
        raise UsageError(f"{where} ({name}) needs a tier or a config")
    return Arm(name, tier, config)


def _list(where: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise UsageError(f"{where} must be an array of tables ([[{where}]])")
    return value


def load_suite(path: Path) -> Suite:
    """The suite in `path`, checked whole."""
    try:
        data = read_toml(path, "suite")
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    where = str(path)
    for key in data:
        if key not in ("suite", "tasks", "arms"):
            raise UsageError(f"{where} has an unknown key {key!r} (known: suite, tasks, arms)")
    head = _keys(f"{where}: [suite]", data.get("suite", {}), SUITE_KEYS)
    name = _text(f"{where}: [suite]", "name", head.get("name", path.stem))
    base = path.parent
    tasks = [
        _task(f"{where}: tasks[{i}]", base, t)
        for i, t in enumerate(_list("tasks", data.get("tasks", [])), 1)
    ]
    if not tasks:
        raise UsageError(f"{where} has no [[tasks]]: nothing to run")
    arms = [
        _arm(f"{where}: arms[{i}]", base, a)
        for i, a in enumerate(_list("arms", data.get("arms", [])), 1)
    ]
    for kind, names in (("task", [t.name for t in tasks]), ("arm", [a.name for a in arms])):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"{where}: two {kind}s are named {twice[0]!r}")
    return Suite(name, path, tuple(tasks), tuple(arms))
