"""The report's Rich tables, shared by `tuiagent report`, `tuiagent replay` and the report
screen."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tuiagent.cost.display import cap as show_cap
from tuiagent.cost.display import counted
from tuiagent.cost.pricing import ZERO
from tuiagent.report.rows import SOURCE_LABELS, Report
from tuiagent.runs.records import ExperimentResult


def money(amount: Decimal | None) -> str:
    if amount is None:
        return "-"
    return f"-${-amount:,.6f}" if amount < 0 else f"${amount:,.6f}"


def _share(part: Decimal, total: Decimal) -> str:
    return f"{part / total:.0%}" if total else "-"


def _when(iso: str) -> str:
    return iso[:16].replace("T", " ") if iso else "?"


# Columns that never wrap: numbers, and the names a user copies (run ids, models).
_NO_WRAP = {"run", "started UTC", "model", "tier", "source", "verdict"}


def make_table(title: str, columns: list[tuple[str, str]], **kwargs: Any) -> Table:
    """Columns as (header, justify): numbers right; only free text ("ended", "cause") wraps."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, **kwargs)
    for header, justify in columns:
        no_wrap = justify == "right" or header in _NO_WRAP
        table.add_column(header, justify=justify, no_wrap=no_wrap)  # type: ignore[arg-type]
    return table


def runs_table(report: Report) -> Table:
    compression = any(r.compression_saved_tokens is not None for r in report.runs)
    columns = [
        ("run", "left"),
        ("started UTC", "left"),
        ("turns", "right"),
        ("in (all)", "right"),
        ("cache read", "right"),
        ("cache write", "right"),
        ("out", "right"),
        ("cost", "right"),
        ("hit", "right"),
        ("cache saved", "right"),
    ]
    if compression:
        columns.append(("compression saved", "right"))
    table = make_table(escape(f"Runs in {report.log_dir}"), [*columns, ("ended", "left")])
    for r in report.runs:
        u = r.usage
        rate = r.cache_hit_rate
        ended = r.ended
        if r.replay_of:
            ended += f"; replay of {r.replay_of.get('run_id')} turn {r.replay_of.get('turn')}"
        if r.unreadable_lines:
            ended += f"; {r.unreadable_lines} unreadable line(s)"
        if r.died_in_flight_calls:
            # A run that ended with holds open: a proxy's Message Batch whose results were
            # never read through it (each request held until its result is read).
            when = (
                "still held when the run ended (batch results not read)"
                if r.ended not in ("live", "cut off (no run_end)")
                else "in flight when the run died"
            )
            ended += (
                f"; {r.died_in_flight_calls} call(s) {when}, "
                f"counted at their worst case {money(r.died_in_flight)}"
            )
        cells = [
            r.run_id,
            _when(r.started_at),
            str(r.turns),
            f"{u.total_input_tokens:,}",
            f"{u.cache_read_input_tokens:,}",
            f"{u.cache_creation_input_tokens:,}",
            f"{u.output_tokens:,}",
            money(r.cost),
            "-" if rate is None else f"{rate:.0%}",
            money(r.saved_by_cache),
        ]
        if compression:
            saved = r.compression_saved_tokens
            cells.append("-" if saved is None else f"{saved:,} tokens")
        table.add_row(*cells, Text(ended))
    return table


def top_turns_table(report: Report) -> Table:
    total = report.total_cost
    table = make_table(
        f"The {report.top} costliest turns",
        [
            ("run", "left"),
            ("turn", "right"),
            ("model", "left"),
            ("in (all)", "right"),
            ("out", "right"),
            ("cost", "right"),
            ("of all", "right"),
            ("cause", "left"),
        ],
    )
    for t in report.top_turns():
        table.add_row(
            t.run_id,
            str(t.turn),
            t.model,
            f"{t.usage.total_input_tokens:,}",
            f"{t.usage.output_tokens:,}",
            money(t.cost),
            _share(t.cost, total),
            Text(t.cause),
        )
    return table


def group_table(report: Report, by: str) -> Table:
    total = report.total_cost
    groups = {"model": report.by_model, "tier": report.by_tier, "agent": report.by_agent}[by]
    table = make_table(
        f"Cost by {by}",
        [
            (by, "left"),
            *([("task", "left")] if by == "agent" else []),
            ("calls", "right"),
            ("in (all)", "right"),
            ("out", "right"),
            ("cost", "right"),
            ("share", "right"),
        ],
    )
    for g in groups:
        table.add_row(
            g.name,
            *(
                [g.task or ("the orchestrator" if g.name == "main" else "")]
                if by == "agent"
                else []
            ),
            str(g.calls),
            f"{g.usage.total_input_tokens:,}",
            f"{g.usage.output_tokens:,}",
            money(g.cost),
            _share(g.cost, total),
        )
    return table


def sessions_table(report: Report) -> Table:
    """Proxied calls by client, session, then agent (sub-agents indented under their
    parent), with why each group's last call cost what it did."""
    table = make_table(
        "Proxied calls by session and agent",
        [
            ("session / agent", "left"),
            ("client", "left"),
            ("calls", "right"),
            ("cost", "right"),
            ("hit", "right"),
            ("last call", "left"),
        ],
    )
    for r in report.sessions:
        name = r.session or "(no session)" if r.depth == 0 else f"{'  ' * r.depth}{r.agent}"
        if r.depth == 0 and r.agent != "main":
            name = f"{name} {r.agent}"
        rate = r.cache_hit_rate
        calls = f"{r.calls}" + (f" ({r.refused} refused)" if r.refused else "")
        last = f"#{r.last_turn} {money(r.last_cost)}" + (
            f": {r.last_cause}" if r.last_cause else ""
        )
        table.add_row(
            Text(name),
            Text(r.client),
            calls,
            money(r.cost),
            "-" if rate is None else f"{rate:.0%}",
            Text(last),
        )
    return table


def sources_table(report: Report) -> Table:
    rows = report.input_sources()
    total = sum((r.cost for r in rows), Decimal(0))
    turns = rows[0].turns if rows else 0
    table = make_table(
        f"Where the input came from ({counted(turns, 'turn')} with a transcript)",
        [
            ("source", "left"),
            ("tokens per turn", "right"),
            ("tokens", "right"),
            ("cost", "right"),
            ("share", "right"),
        ],
        caption="tokens estimated locally, scaled to the billed total; cached parts at the "
        "read price",
        caption_justify="left",
    )
    for r in rows:
        table.add_row(
            SOURCE_LABELS[r.source],
            f"{round(r.tokens / r.turns) if r.turns else 0:,}",
            f"{r.tokens:,}",
            money(r.cost),
            _share(r.cost, total),
        )
    return table


def mcp_table(report: Report) -> Table:
    """What each MCP server's tool definitions cost: per call and in all."""
    table = make_table(
        "MCP servers: what their tool definitions cost",
        [
            ("run", "left"),
            ("server", "left"),
            ("tools", "right"),
            ("calls", "right"),
            ("tokens per call", "right"),
            ("per call", "right"),
            ("in all", "right"),
            ("state", "left"),
        ],
    )
    for m in report.mcp:
        table.add_row(
            m.run_id,
            f"{m.server} ({m.transport})",
            f"{m.tools:,}",
            f"{m.calls:,}",
            f"{m.tokens // m.calls if m.calls else 0:,}",
            money(m.cost / m.calls if m.calls else ZERO),
            money(m.cost),
            m.status,
        )
    return table


def print_report(report: Report, console: Console) -> None:
    console.print(
        f"[bold]{counted(len(report.runs), 'run')}, {counted(len(report.turns), 'turn')}, "
        f"{money(report.total_cost)} in all[/bold]"
    )
    console.print(runs_table(report))
    console.print(top_turns_table(report))
    console.print(group_table(report, "model"))
    console.print(group_table(report, "tier"))
    costliest = report.costliest_subagent()
    if costliest is not None:
        console.print(group_table(report, "agent"))
        console.print(
            f"The costliest sub-agent: {costliest.name} of run {costliest.run_id} "
            f"({costliest.task}), {money(costliest.cost)} in {costliest.calls} call(s), "
            f"{_share(costliest.cost, report.total_cost)} of all."
        )
    if report.sessions:
        console.print(sessions_table(report))
    if report.mcp:
        console.print(mcp_table(report))
    system = next((r for r in report.input_sources() if r.source == "system"), None)
    if system is not None and system.turns:
        console.print(sources_table(report))
        per_100 = system.cost / system.tokens * 100 if system.tokens else Decimal(0)
        console.print(
            f"The system prompt was paid on {'the one turn' if system.turns == 1 else f'every one of {system.turns:,} turns'}: "
            f"{system.tokens:,} tokens, {money(system.cost)}. Every 100 tokens cut from it "
            f"would have saved {money(per_100)} over these runs."
        )
    if report.hidden:
        console.print(
            f"[dim]{report.hidden} run(s) with no model call not shown (--all shows them).[/dim]"
        )
    console.print("[dim]in (all): every input token, uncached + cache write + cache read.[/dim]")
    if report.turns_without_transcript:
        console.print(
            f"[dim]{report.turns_without_transcript} turn(s) have no transcript: "
            "their input is not split by source.[/dim]"
        )


def answer_text(content: list[dict[str, Any]] | None) -> str:
    if content is None:
        return "(this answer was not kept in the run's transcript)"
    parts = []
    for block in content:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            parts.append(str(block["text"]))
        elif kind == "tool_use":
            args = json.dumps(block.get("input") or {}, ensure_ascii=False)
            parts.append(f"[calls tool] {block.get('name')} {args}")
        elif kind in ("thinking", "redacted_thinking"):
            parts.append("[thinking]")
    return "\n".join(parts) or "(no answer)"


_TOTALS = (
    "original_cost_usd",
    "replay_cost_usd",
    "judge_cost_usd",
    "experiment_cost_usd",
    "would_have_cost_usd",
    "saving_usd",
)


def experiment_table(data: ExperimentResult) -> Table:
    """The result of an experiment (as logged): a row per turn, the verdict early so that a
    narrow screen shows it. The run and the replay's tier are the title's, when one run was
    replayed: 80 columns leave the reason room."""
    several = len(data.replay_of) > 1
    table = make_table(
        f"Run(s) {', '.join(data.replay_of)} replayed on {data.model} ({data.tier})",
        [
            *([("run", "left")] if several else []),
            ("turn", "right"),
            ("verdict", "left"),
            ("tier", "left"),
            ("cost", "right"),
            ("replay cost", "right"),
            ("reason", "left"),
        ],
    )
    for t in data.turns:
        table.add_row(
            *([t.run_id] if several else []),
            str(t.turn),
            t.verdict or "-",
            t.original_tier,
            money(t.original_cost_usd),
            money(t.replay_cost_usd),
            Text(t.reason),
        )
    return table


def experiment_totals(data: ExperimentResult) -> list[str]:
    t = {k: data.totals.get(k, ZERO) for k in _TOTALS}
    v = data.verdicts
    lines = [
        f"verdicts: {v.get('same', 0)} same, {v.get('acceptable', 0)} acceptable, "
        f"{v.get('worse', 0)} worse of {counted(len(data.turns), 'turn')}",
        f"the replayed turns cost {money(t['original_cost_usd'])} as run; with every "
        f"same/acceptable turn on {data.tier}: {money(t['would_have_cost_usd'])}, "
        f"a saving of {money(t['saving_usd'])}",
        f"this experiment cost {money(t['experiment_cost_usd'])} of its "
        f"{show_cap(data.cap_usd)} cap (replays {money(t['replay_cost_usd'])}, "
        f"judge {money(t['judge_cost_usd'])})",
    ]
    if data.skipped_turns:
        lines.append(f"{len(data.skipped_turns)} turn(s) already ran on {data.model}")
    if data.halted:
        lines.append(f"halted ({data.halted}): the rest was not replayed")
    if data.simulated:
        lines.append("the offline model answered and judged: verdicts are simulated")
    return lines
