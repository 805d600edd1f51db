"""The core (agent/, cost/, llm/, proxy/) never imports Textual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tuiagent

CORE = ("agent", "cost", "llm", "proxy")


def test_core_modules_import_without_textual() -> None:
    root = Path(tuiagent.__file__).parent
    modules = sorted(
        "tuiagent." + ".".join(p.relative_to(root).with_suffix("").parts)
        for pkg in CORE
        for p in (root / pkg).rglob("*.py")
    )
    modules = [m.removesuffix(".__init__") for m in modules]
    assert len(modules) > 10
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "import tuiagent.cli.run\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
