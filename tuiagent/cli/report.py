"""`tuiagent report` and `tuiagent replay`: the command bodies (the CLI only parses flags)."""

from __future__ import annotations

import csv
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO, cast

from rich.console import Console

from tuiagent.config import Settings
from tuiagent.cost.pricing import Pricer
from tuiagent.paths import default_log_dir
from tuiagent.report.build import build_report
from tuiagent.report.otel import otel_traces
from tuiagent.report.rows import SOURCES, Report
from tuiagent.report.tables import (
    print_report,
)


class _TrimmedLines:
    """A text stream that drops the spaces Rich pads each line out with (a table's cells, a
    centred title, a blank line as wide as the table): no line of the output ends in one."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._line = ""  # the end of the last write, up to its newline

    def write(self, text: str) -> int:
        *lines, self._line = (self._line + text).split("\n")
        if lines:
            self._stream.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self._line:  # a line printed without its end (end=""): written as it is, not lost
            self._stream.write(self._line)
            self._line = ""
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def console_for(piped_width: int = 200) -> Console:
    """The terminal's width on a terminal; piped, wide enough that tables do not wrap. No
    colour or style codes: every byte the CLI writes goes through its guarded stream
    (cli/output.py), which shows an escape byte as `␛`, so a styled table would read as
    `␛[1m...` on a terminal. No trailing spaces (_TrimmedLines)."""
    out = cast(TextIO, _TrimmedLines(sys.stdout))
    if sys.stdout.isatty():
        return Console(file=out, color_system=None)
    return Console(file=out, width=piped_width, color_system=None)


def _warn(report: Report) -> None:
    for warning in report.warnings:
        print(f"tuiagent: warning: {warning}", file=sys.stderr)


def run_report(
    settings: Settings,
    *,
    log_dir: Path | None,
    last: int | None,
    run_ids: list[str],
    top: int,
    output: str,
    all_runs: bool = False,
) -> int:
    directory = log_dir or settings.run.log_dir or default_log_dir()
    report = build_report(
        directory,
        last=last,
        run_ids=run_ids,
        top=top,
        pricer=Pricer(settings.router.prices),
        all_runs=all_runs,
    )
    _warn(report)
    out = sys.stdout
    if output == "json":
        json.dump(report.to_json(), out, indent=2)
        out.write("\n")
    elif output == "otel":
        json.dump(otel_traces(report), out, indent=2)
        out.write("\n")
    elif output == "csv":
        write_csv(report, out)
    else:
        print_report(report, console_for())
    return 0


def write_csv(report: Report, out: TextIO) -> None:
    """Every turn of the chosen runs, one row each, with its input split by source."""
    rows = [t.as_json() for t in report.turns]
    base = [k for k in (rows[0] if rows else {}) if k not in ("input_sources", "tool_calls")]
    extra = [f"{s}_{kind}" for s in SOURCES for kind in ("tokens", "cost_usd")]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*base, "tool_calls", *extra])
    for row in rows:
        sources = row["input_sources"] or {}
        cells: list[Any] = [row[k] for k in base]
        cells.append(" ".join(row["tool_calls"]))
        for s in SOURCES:
            part = sources.get(s) or {}
            cells += [part.get("tokens", ""), part.get("cost_usd", "")]
        writer.writerow([_csv_cell(c) for c in cells])


def _csv_cell(value: Any) -> Any:
    """Money (a float in USD) in plain decimals, never `7.45e-05`; None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return value
