"""The CI gate: an eval's summary against a baseline summary. A task fails when its p50
cost rose by more than the threshold (the turn that grew most is named, with its cause) or
its pass rate fell, in any arm both have."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tuiagent.config import read_text_file
from tuiagent.errors import ConfigError, UsageError


def parse_threshold(value: str) -> Decimal:
    """`10%` or `10` (per cent) as 0.10."""
    text = value.strip().removesuffix("%")
    try:
        share = Decimal(text) / 100
    except InvalidOperation:
        share = Decimal(-1)
    if not text or not share.is_finite() or not 0 <= share <= 100:
        raise UsageError(f"--fail-over must be a percentage such as 10%, got {value!r}")
    return share


def load_baseline(path: Path) -> dict[str, Any]:
    """A summary `tuiagent eval --json` wrote, checked enough to compare with."""
    try:
        data = json.loads(read_text_file(path, "--baseline"))
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"--baseline {path} is not JSON: {exc}") from None
    tasks = data.get("tasks") if isinstance(data, dict) else None
    ok = isinstance(tasks, list) and all(
        isinstance(t, dict)
        and isinstance(t.get("name"), str)
        and isinstance(t.get("arms"), dict)
        and all(
            isinstance(a, dict)
            and isinstance(a.get("cost_usd"), dict)
            and isinstance(a["cost_usd"].get("p50"), int | float)
            and isinstance(a.get("pass_rate"), int | float)
            for a in t["arms"].values()
        )
        for t in tasks
    )
    if not ok:
        raise UsageError(f"--baseline {path} is not an eval summary (tuiagent eval --json)")
    summary: dict[str, Any] = data
    return summary


def _money(x: Any) -> Decimal:
    return Decimal(str(x))


def _grew_most(now: dict[str, Any], then: dict[str, Any]) -> str:
    """The turn whose median cost grew most, with its cause now."""
    before = then.get("turn_p50") if isinstance(then.get("turn_p50"), dict) else {}
    best: tuple[Decimal, str] | None = None
    for turn, row in now.get("turn_p50", {}).items():
        old = before.get(turn) if isinstance(before, dict) else None
        was = _money(old["cost_usd"]) if isinstance(old, dict) and "cost_usd" in old else Decimal(0)
        rise = _money(row["cost_usd"]) - was
        if best is None or rise > best[0]:
            change = f"${was:.6f} -> ${_money(row['cost_usd']):.6f}"
            best = (rise, f"turn {turn} grew most ({change}): {row['cause']}")
    return best[1] if best else "no turn to compare"


def compare(
    summary: dict[str, Any], baseline: dict[str, Any], threshold: Decimal
) -> tuple[list[str], list[str]]:
    """(failures, notes): one line per task and arm that regressed; notes on what could not
    be compared."""
    failures, notes = [], []
    old_tasks = {t["name"]: t for t in baseline["tasks"]}
    for task in summary["tasks"]:
        old = old_tasks.get(task["name"])
        if old is None:
            notes.append(f"task {task['name']!r} is new: not in the baseline")
            continue
        for arm, now in task["arms"].items():
            then = old["arms"].get(arm)
            if then is None:
                notes.append(f"task {task['name']!r} arm {arm}: not in the baseline")
                continue
            if not now.get("cost_usd"):
                continue
            p50, was = _money(now["cost_usd"]["p50"]), _money(then["cost_usd"]["p50"])
            rise = (p50 - was) / was if was else (Decimal(1) if p50 else Decimal(0))
            if rise > threshold:
                failures.append(
                    f"task {task['name']!r} ({arm}): p50 cost ${was:.6f} -> ${p50:.6f} "
                    f"({rise:+.1%}, over {threshold:.0%}); {_grew_most(now, then)}"
                )
            if now["pass_rate"] < then["pass_rate"]:
                failures.append(
                    f"task {task['name']!r} ({arm}): pass rate fell "
                    f"{then['pass_rate']:.0%} -> {now['pass_rate']:.0%}"
                )
    for name in old_tasks.keys() - {t["name"] for t in summary["tasks"]}:
        notes.append(f"task {name!r} is in the baseline but not in this suite")
    return failures, notes
