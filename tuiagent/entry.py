"""The `tuiagent` command's entry: `tuiagent statusline` (run every few hundred milliseconds
by the coding agent) starts without the rest of the CLI; anything else is `cli.main`."""

from __future__ import annotations

import sys


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["statusline"] and not {"-h", "--help"} & set(args):
        from tuiagent.statusline import run

        return run(args[1:])
    from tuiagent.cli.main import main as everything

    return everything()
