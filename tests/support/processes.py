"""The processes a tool's command left behind."""

from __future__ import annotations

import os
from pathlib import Path


def processes_with(marker: str) -> list[int]:
    """The `sleep` processes alive whose arguments hold `marker` (a made-up duration)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            name.isdigit()
            and Path(os.fsdecode(argv[0])).name == "sleep"
            and marker.encode() in argv
        ):
            found.append(int(name))
    return found
