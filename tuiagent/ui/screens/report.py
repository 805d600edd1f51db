"""The report screen: the tables of `tuiagent report`, a chart of what each turn cost, and
the latest tier experiment (`tuiagent replay RUN --all`) logged in the same dir.

It takes a built `Report` (tuiagent.report.build) and only shows it: the tables are the very
ones the CLI prints, the chart is plotext's (through textual-plotext), not drawn by hand.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import ScrollableContainer
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from tuiagent.agent.experiment import latest_experiment
from tuiagent.eval.tables import latest_summary_view
from tuiagent.report.rows import Report, TurnRow
from tuiagent.report.tables import (
    experiment_table,
    experiment_totals,
    group_table,
    money,
    runs_table,
    sources_table,
    top_turns_table,
)


class CostChart(PlotextPlot):
    """Cost per call in USD, one bar each, in the order they ran: the latest run in a colour
    of its own, the earlier ones in another (the legend names them)."""

    def __init__(self, turns: list[TurnRow], *, id: str | None = None) -> None:
        super().__init__(id=id)
        latest = turns[-1].run_id if turns else ""
        self.series: dict[str, list[tuple[int, float]]] = {}
        for at, turn in enumerate(turns, start=1):
            name = f"run {latest}" if turn.run_id == latest else "earlier runs"
            self.series.setdefault(name, []).append((at, float(turn.cost)))

    def on_mount(self) -> None:
        plt = self.plt
        plt.title("Cost per call (USD)")
        plt.xlabel("calls of the chosen runs, in order")
        for name, bars in sorted(self.series.items(), key=lambda kv: kv[0] != "earlier runs"):
            plt.bar([x for x, _ in bars], [y for _, y in bars], label=name)
        # Ticks along every call (plotext's follow the last series: the latest run only).
        calls = sum(len(bars) for bars in self.series.values())
        if calls:
            ticks = x_ticks(calls)
            plt.xticks([float(x) for x in ticks], [str(x) for x in ticks])


def x_ticks(calls: int, most: int = 10) -> list[int]:
    """About `most` ticks over calls 1..`calls`: the first, every 1, 2 or 5 times a power
    of ten, and the last when it is half a step past the one before."""
    steps = (n * 10**e for e in range(12) for n in (1, 2, 5))
    step = next(s for s in steps if calls / s <= most)
    ticks = sorted({1, *range(step, calls + 1, step)})
    if calls - ticks[-1] >= step / 2:
        ticks.append(calls)
    return ticks


class ReportScreen(Screen[None]):
    """What the chosen runs cost, the costliest turns and why, and where the input came from."""

    CSS_PATH = "report.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape",
            "app.pop_screen",
            "Close",
            id="report.close",
            tooltip="Close the report and go back",
        ),
    ]

    def __init__(self, report: Report) -> None:
        super().__init__()
        self.report = report
        self.experiment = latest_experiment(report.log_dir)

    def compose(self) -> ComposeResult:
        r = self.report
        yield Static(
            f"{len(r.runs)} run(s), {len(r.turns)} turns, {money(r.total_cost)} in all"
            + (f" ({r.hidden} with no model call not shown)" if r.hidden else ""),
            id="report-summary",
            markup=False,
        )
        with TabbedContent(initial="report-chart"):
            with TabPane("Chart", id="report-chart"):
                yield CostChart(r.turns, id="cost-chart")
            with TabPane("Runs", id="report-runs"), ScrollableContainer(classes="report-scroll"):
                yield Static(runs_table(r), classes="report-table")
            with (
                TabPane("Costliest turns", id="report-top"),
                ScrollableContainer(classes="report-scroll"),
            ):
                yield Static(top_turns_table(r), classes="report-table")
            with (
                TabPane("Model/tier", id="report-groups"),
                ScrollableContainer(classes="report-scroll"),
            ):
                yield Static(group_table(r, "model"), classes="report-table")
                yield Static(group_table(r, "tier"), classes="report-table")
            with (
                TabPane("Input sources", id="report-sources"),
                ScrollableContainer(classes="report-scroll"),
            ):
                yield Static(sources_table(r), classes="report-table")
            with TabPane("Eval", id="report-eval"), ScrollableContainer(classes="report-scroll"):
                path, view = latest_summary_view(r.log_dir)
                if path is not None:
                    yield Static(f"the latest eval: {path}", classes="report-note", markup=False)
                yield Static(view, classes="report-table")
            with (
                TabPane("Experiment", id="report-experiment"),
                ScrollableContainer(classes="report-scroll"),
            ):
                if self.experiment is None:
                    yield Static(
                        "No tier experiment in this log dir yet: "
                        "`tuiagent replay RUN --all --tier fast --judge` runs one.",
                        markup=False,
                    )
                else:
                    yield Static(experiment_table(self.experiment), classes="report-table")
                    yield Static(
                        "\n".join(experiment_totals(self.experiment)),
                        classes="report-note",
                        markup=False,
                    )
        if r.warnings:
            yield Static("\n".join(r.warnings), id="report-warnings", markup=False)
        yield Footer()
