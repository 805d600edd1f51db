"""An eval summary as Rich tables and lines: shared by `tuiagent eval` and the report
screen's Eval tab."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tuiagent.config import read_text_file
from tuiagent.cost.display import counted
from tuiagent.cost.display import money as show_money
from tuiagent.errors import ConfigError
from tuiagent.report.tables import make_table, money


def _usd(x: float | None) -> str:
    return "-" if x is None else money(Decimal(str(x)))


def _short(x: float | None) -> str:
    """Money in a table's narrow column: `$0.00378`, `$0.00019`: five places, so that four
    costs, a task and an arm fit 80 columns."""
    return "-" if x is None else show_money(Decimal(str(x)), places=5)


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def cost_table(summary: dict[str, Any]) -> Table:
    table = make_table(
        "Cost per run, by task and arm",
        [
            ("task", "left"),
            ("arm", "left"),
            ("mean", "right"),
            ("p50", "right"),
            ("p90", "right"),
            ("max", "right"),
            ("turns", "right"),
            ("hit", "right"),
            ("pass", "right"),
        ],
    )
    table.padding = (0, 0, 0, 1)  # a space and the rule's: names stay whole at 80 columns
    for task in summary["tasks"]:
        for arm, a in task["arms"].items():
            c, turns = a["cost_usd"], a["turns"]
            passed = sum(r["passed"] for r in a["runs"])
            halted = f" ({a['halted']} halted)" if a.get("halted") else ""
            table.add_row(
                Text(task["name"]),
                Text(arm),
                _short(c.get("mean")),
                _short(c.get("p50")),
                _short(c.get("p90")),
                _short(c.get("max")),
                f"{turns.get('mean', 0):.1f}",
                _rate(a["cache_hit_rate"]),
                f"{passed}/{len(a['runs'])}{halted}",
            )
    return table


def costliest_table(summary: dict[str, Any]) -> Table:
    table = make_table(
        "The costliest turns across the repeats, and why",
        [
            ("task", "left"),
            ("arm", "left"),
            ("repeats", "right"),
            ("turn", "right"),
            ("cost", "right"),
            ("cause", "left"),
        ],
    )
    for task in summary["tasks"]:
        for arm, a in task["arms"].items():
            for t in a["costliest_turns"]:
                table.add_row(
                    Text(task["name"]),
                    Text(arm),
                    _repeats(t["repeats"]),
                    str(t["turn"]) + ("" if t.get("agent", "main") == "main" else f" {t['agent']}"),
                    _short(t["cost_usd"]),
                    Text(t["cause"] or "-"),
                )
    return table


def _repeats(numbers: list[int]) -> str:
    """`1-3`, `1,3`: the repeats a line stands for."""
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}-{numbers[-1]}"
    return ",".join(map(str, numbers))


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """Per arm: the total and the saving against the first; each later arm's verdict; what
    the eval spent."""
    first = summary["arms"][0]
    lines = []
    for arm, t in summary["arm_totals"].items():
        line = f"{arm}: {_usd(t['cost_usd'])} in all"
        if arm != first:
            share = "" if t["saving_share"] is None else f" ({t['saving_share']:.0%})"
            line += f", saving {_usd(t['saving_usd'])}{share} against {first}"
        lines.append(line)
    lines += [v["line"] for v in summary["verdicts"].values()]
    runs = sum(len(a["runs"]) for task in summary["tasks"] for a in task["arms"].values())
    lines.append(
        f"{counted(runs, 'run')} of suite {summary['suite']} spent {_usd(summary['spent_usd'])} "
        f"of the {_usd(summary['cap_usd'])} cap (judge {_usd(summary['judge_cost_usd'])})"
    )
    if summary["simulated"]:
        lines.append("the offline model answered: answers and judge verdicts are simulated")
    return lines


def summary_view(summary: dict[str, Any]) -> RenderableType:
    """The whole summary as one renderable (the report screen's Eval tab)."""
    return Group(
        cost_table(summary),
        costliest_table(summary),
        *(Text(line) for line in summary_lines(summary)),
    )


def latest_summary_view(log_dir: Path) -> tuple[Path | None, RenderableType]:
    """The newest eval summary kept in `log_dir` (LOG_DIR/evals/), shown; or why not."""
    found = sorted(
        (p for p in (log_dir / "evals").glob("*.json") if p.is_file()),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
    )
    if not found:
        return None, Text(
            "No eval in this log dir yet: `tuiagent eval SUITE.toml --tier balanced "
            "--tier fast` runs one."
        )
    path = found[-1]
    try:
        return path, summary_view(json.loads(read_text_file(path, "eval summary")))
    except (ConfigError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        return path, Text(f"cannot show the eval summary {path}: {exc!r}"[:300])
