"""Each class name is used once across the package: a name read in a traceback, a record or
a test names one thing (issue 27 found `BudgetChanged`, `UserMessage`, `Tool`, `Turn`,
`Refused` and `Session` twice)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import tuiagent


def test_each_class_name_is_used_once() -> None:
    root = Path(tuiagent.__file__).parent
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(f"{path.relative_to(root)}:{node.lineno}")
    assert len(where) > 100  # the walk sees the package
    twice = {name: places for name, places in where.items() if len(places) > 1}
    assert not twice, twice
