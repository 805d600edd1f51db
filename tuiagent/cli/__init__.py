"""The faces: the app's entry, `run`, `report`, `replay`, `proxy`. Nothing imports them."""

from tuiagent.cli.main import main

__all__ = ["main"]
