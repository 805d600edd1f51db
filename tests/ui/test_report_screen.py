"""The report screen, pushed from a tiny host app, over logs made by real offline runs."""

from __future__ import annotations

import html
from decimal import Decimal
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import TabbedContent

from tests.report.test_report import make_runs
from tuiagent.llm.tokens import TokenUsage
from tuiagent.report.build import build_report
from tuiagent.report.rows import Report, TurnRow
from tuiagent.ui.screens.report import CostChart, ReportScreen


def screen_text(app: App[None]) -> str:
    """The screen's text, from the SVG screenshot (spaces there are non-breaking)."""
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


class Host(App[None]):
    def __init__(self, report: Report) -> None:
        super().__init__()
        self.report = report

    def on_mount(self) -> None:
        self.push_screen(ReportScreen(self.report))


async def test_report_screen_shows_tables_and_chart(workspace: Path, log_dir: Path) -> None:
    await make_runs(workspace, log_dir)
    report = build_report(log_dir, top=3)
    app = Host(report)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        chart = screen.query_one(CostChart)
        bars = sorted(bar for series in chart.series.values() for bar in series)
        assert [cost for _, cost in bars] == [float(t.cost) for t in report.turns]
        latest = report.turns[-1].run_id
        assert set(chart.series) == {"earlier runs", f"run {latest}"}
        text = screen_text(app)
        assert "Cost per call" in text
        assert "⅃" not in text and " L " not in text  # no side markers in the legend

        tabs = screen.query_one(TabbedContent)
        tabs.active = "report-top"
        await pilot.pause()
        shot = screen_text(app)
        top = report.top_turns()[0]
        assert f"${top.cost:,.6f}" in shot
        assert top.cause.split(":")[0] in shot

        tabs.active = "report-sources"
        await pilot.pause()
        assert "system prompt" in screen_text(app)

        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ReportScreen)


class ChartHost(App[None]):
    def __init__(self, turns: list[TurnRow]) -> None:
        super().__init__()
        self.turns = turns

    def compose(self) -> ComposeResult:
        yield CostChart(self.turns)


def turn_row(run_id: str, turn: int, cost: str) -> TurnRow:
    return TurnRow(
        run_id, turn, "agent", "claude-sonnet-5-5", "balanced", True, TokenUsage(),
        Decimal(cost), {}, "end_turn", [], {},
    )  # fmt: skip


async def test_the_charts_axis_spans_every_call_not_the_latest_runs() -> None:
    """The walk: the chart's ticks showed only the last few calls (plotext's follow the
    last series drawn: the latest run's bars), 31 to 45 of 45."""
    turns = [turn_row("earlier", i, "0.002") for i in range(30)]
    turns += [turn_row("latest", i, "0.001") for i in range(15)]
    app = ChartHost(turns)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        rows = [strip.text for strip in app.screen._compositor.render_strips()]
        axis = next(i for i, row in enumerate(rows) if "└" in row and "┬" in row)
        assert rows[axis + 1].split() == ["1", *map(str, range(5, 46, 5))], rows[axis + 1]
