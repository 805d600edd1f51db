"""Run every benchmark and print one table of figures."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main(argv: list[str]) -> int:
    wanted = set(argv)
    table = Table(title="tuiagent benchmarks")
    for col in ("benchmark", "figure", "value", "target"):
        table.add_column(col)
    here = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if not info.name.startswith("bench_") or (wanted and info.name not in wanted):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        for name, value, target in module.run():
            table.add_row(info.name.removeprefix("bench_"), name, value, target)
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
