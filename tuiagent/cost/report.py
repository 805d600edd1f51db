"""Reports over run logs: what each run cost, the costliest turns and why, where input came from.

Reads the JSONL run logs of a log dir (and each run's transcript beside them, when there is
one). Everything readable is reported: a line cut by a killed run is counted and skipped, a
record type or field this version does not know is ignored, a field an older version did not
write is treated as absent. Money is Decimal here; `to_json` turns it into JSON numbers in USD.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tuiagent.cost.pricing import ZERO, Pricer, usd
from tuiagent.cost.runlog import is_live, read_records
from tuiagent.cost.transcript_reader import load_messages, load_requests
from tuiagent.errors import TuiagentError, UsageError
from tuiagent.llm.tokens import request_blocks
from tuiagent.llm.usage import TokenUsage

# Where a request's input came from, in the order the API reads it (tools, system, messages).
SOURCES = ("tools", "system", "history", "tool_results", "new_message")
SOURCE_LABELS = {
    "tools": "tool definitions",
    "system": "system prompt",
    "history": "conversation history",
    "tool_results": "tool results",
    "new_message": "new message",
}


# --- reading the log dir -----------------------------------------------------


@dataclass
class RunFile:
    run_id: str
    path: Path
    records: list[dict[str, Any]]
    unreadable_lines: int

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("type") == kind), None)

    @property
    def has_calls(self) -> bool:
        """It called a model (a turn, or an attempt that failed): a session opened and quit
        with no message did not."""
        return any(r.get("type") in ("turn", "attempt") for r in self.records)

    @property
    def started_at(self) -> str:
        start = self.first("run_start")
        return str(start.get("started_at") or "") if start else ""

    @property
    def transcript(self) -> Path:
        # Computed, not via transcript_path(): that one creates the folder, and a report
        # only reads.
        return self.path.parent / "transcripts" / self.path.name


def list_runs(log_dir: Path) -> list[RunFile]:
    """Every run log in the dir, oldest first. A missing or empty dir is a UsageError."""
    if not log_dir.is_dir():
        raise UsageError(f"no log dir at {log_dir} (run `tuiagent run` first, or pass --log-dir)")
    runs = []
    for path in sorted(log_dir.glob("*.jsonl")):
        try:
            records, bad = read_records(path)
        except OSError as exc:
            raise TuiagentError(f"cannot read run log {path}: {exc.strerror}") from None
        # The file name is the run id (and names the transcript), even for a copied log.
        runs.append(RunFile(path.stem, path, records, bad))
    if not runs:
        raise UsageError(f"no run logs in {log_dir} (run `tuiagent run` first, or pass --log-dir)")
    runs.sort(key=lambda r: (r.started_at, r.run_id))
    return runs


def select_runs(
    runs: list[RunFile], *, last: int | None = None, run_ids: Iterable[str] = ()
) -> list[RunFile]:
    """The runs asked for: by id (a unique prefix will do), else the last N, else all."""
    wanted = list(run_ids)
    if wanted:
        chosen = []
        for wanted_id in wanted:
            exact = [r for r in runs if r.run_id == wanted_id]
            matches = exact or [r for r in runs if r.run_id.startswith(wanted_id)]
            if len(matches) != 1:
                what = "no run" if not matches else f"{len(matches)} runs match"
                raise UsageError(
                    f"{what} {wanted_id!r} in {runs[0].path.parent} "
                    f"({len(runs)} runs there; `tuiagent report` lists them)"
                )
            chosen.append(matches[0])
        return chosen
    return runs[-last:] if last else runs


def find_run(log_dir: Path, run_id: str) -> RunFile:
    (run,) = select_runs(list_runs(log_dir), run_ids=[run_id])
    return run


# --- tolerant field access (a log from an older or newer version) ------------


def _int(record: Mapping[str, Any], key: str) -> int:
    value = record.get(key)
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value:
        return int(value)
    return 0


def money_of(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _str(record: Mapping[str, Any], key: str, default: str = "") -> str:
    value = record.get(key)
    return value if isinstance(value, str) else default


def usage_of(record: Mapping[str, Any]) -> TokenUsage:
    return TokenUsage(
        input_tokens=_int(record, "input_tokens"),
        output_tokens=_int(record, "output_tokens"),
        cache_read_input_tokens=_int(record, "cache_read_input_tokens"),
        cache_creation_input_tokens=_int(record, "cache_creation_input_tokens"),
        cache_creation_5m_input_tokens=_int(record, "cache_creation_5m_input_tokens"),
        cache_creation_1h_input_tokens=_int(record, "cache_creation_1h_input_tokens"),
        web_search_requests=_int(record, "web_search_requests"),
    )


# --- rows ---------------------------------------------------------------------


@dataclass
class SourceShare:
    """One source's part of a turn's input: tokens (scaled to the billed total) and dollars."""

    tokens: int = 0
    cost: Decimal = ZERO
    cost_cached: Decimal = ZERO  # the part of `cost` read from the cache


@dataclass
class TurnRow:
    run_id: str
    turn: int
    purpose: str
    model: str
    tier: str
    simulated: bool
    usage: TokenUsage
    cost: Decimal
    breakdown: dict[str, Decimal]
    stop_reason: str | None
    tool_calls: list[str]
    record: dict[str, Any]
    sources: dict[str, SourceShare] | None = None
    largest_tool_result: tuple[str, int] | None = None  # (what it was, billed tokens)
    # price kind (cache_read, cache_write, input) -> source -> dollars, when the transcript says
    band_sources: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    cause: str = ""
    cause_kind: str = ""
    cause_cost: Decimal = ZERO
    agent: str = "main"  # "a1", "a2", ... for a sub-agent's turn

    @property
    def cache_miss_reason(self) -> str | None:
        reason = self.record.get("cache_miss_reason")
        return reason if isinstance(reason, str) and reason else None

    def as_json(self) -> dict[str, Any]:
        u = self.usage
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "agent": self.agent,
            "turn": self.turn,
            "purpose": self.purpose,
            "model": self.model,
            "tier": self.tier,
            "simulated": self.simulated,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_input_tokens": u.cache_read_input_tokens,
            "cache_creation_input_tokens": u.cache_creation_input_tokens,
            "total_input_tokens": u.total_input_tokens,
            "cost_usd": usd(self.cost),
            "stop_reason": self.stop_reason,
            "tool_calls": self.tool_calls,
            "cause": self.cause,
            "cause_kind": self.cause_kind,
            "cause_cost_usd": usd(self.cause_cost),
            "cache_miss_reason": self.cache_miss_reason,
            "input_sources": None,
        }
        if self.sources is not None:
            out["input_sources"] = {
                k: {"tokens": s.tokens, "cost_usd": usd(s.cost)} for k, s in self.sources.items()
            }
        return out


@dataclass
class RunRow:
    run_id: str
    path: Path
    started_at: str
    ended_at: str | None
    provider: str
    simulated: bool
    turns: int
    failed_attempts: int
    usage: TokenUsage
    cost: Decimal
    saved_by_cache: Decimal | None
    compression_saved_tokens: int | None
    ended: str  # completed | halted (max_cost) | error | live | cut off (no run_end)
    unreadable_lines: int
    replay_of: dict[str, Any] | None
    call_records: list[dict[str, Any]] = field(default_factory=list)  # turns and attempts

    @property
    def cache_hit_rate(self) -> float | None:
        total = self.usage.total_input_tokens
        return self.usage.cache_read_input_tokens / total if total else None

    def as_json(self) -> dict[str, Any]:
        u = self.usage
        rate = self.cache_hit_rate
        return {
            "run_id": self.run_id,
            "started_at": self.started_at or None,
            "ended_at": self.ended_at,
            "provider": self.provider,
            "simulated": self.simulated,
            "turns": self.turns,
            "failed_attempts": self.failed_attempts,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_input_tokens": u.cache_read_input_tokens,
            "cache_creation_input_tokens": u.cache_creation_input_tokens,
            "cost_usd": usd(self.cost),
            "cache_hit_rate": None if rate is None else round(rate, 4),
            "saved_by_cache_usd": None if self.saved_by_cache is None else usd(self.saved_by_cache),
            "compression_saved_tokens": self.compression_saved_tokens,
            "ended": self.ended,
            "unreadable_lines": self.unreadable_lines,
            "replay_of": self.replay_of,
            "log": str(self.path),
        }


@dataclass
class GroupRow:
    """Cost of one model, tier or agent, over every call (failed attempts included)."""

    name: str
    calls: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost: Decimal = ZERO
    # A sub-agent's row (by agent) is one sub-agent of one run; "main" is every run's.
    run_id: str | None = None
    task: str | None = None

    def as_json(self, key: str, total: Decimal) -> dict[str, Any]:
        extra = {} if key != "agent" else {"run_id": self.run_id, "task": self.task}
        return {
            key: self.name,
            **extra,
            "calls": self.calls,
            "total_input_tokens": self.usage.total_input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cost_usd": usd(self.cost),
            "share": round(float(self.cost / total), 4) if total else None,
        }


@dataclass
class SourceRow:
    source: str
    turns: int
    tokens: int
    cost: Decimal

    def as_json(self, total: Decimal) -> dict[str, Any]:
        return {
            "source": self.source,
            "label": SOURCE_LABELS[self.source],
            "turns": self.turns,
            "tokens": self.tokens,
            "tokens_per_turn": round(self.tokens / self.turns) if self.turns else 0,
            "cost_usd": usd(self.cost),
            "share": round(float(self.cost / total), 4) if total else None,
        }


@dataclass
class Report:
    log_dir: Path
    runs: list[RunRow]
    turns: list[TurnRow]
    by_model: list[GroupRow]
    by_tier: list[GroupRow]
    top: int
    warnings: list[str] = field(default_factory=list)
    hidden: int = 0  # runs with no model call, left out (all_runs shows them)
    by_agent: list[GroupRow] = field(default_factory=list)

    def costliest_subagent(self) -> GroupRow | None:
        subs = [g for g in self.by_agent if g.name != "main"]
        return max(subs, key=lambda g: g.cost) if subs else None

    @property
    def unreadable_lines(self) -> int:
        return sum(r.unreadable_lines for r in self.runs)

    @property
    def total_cost(self) -> Decimal:
        return sum((r.cost for r in self.runs), ZERO)

    def top_turns(self) -> list[TurnRow]:
        return sorted(self.turns, key=lambda t: t.cost, reverse=True)[: self.top]

    def input_sources(self) -> list[SourceRow]:
        split = [t for t in self.turns if t.sources is not None]
        rows = []
        for key in SOURCES:
            shares = [t.sources[key] for t in split if t.sources is not None]
            rows.append(
                SourceRow(
                    key,
                    len(split),
                    sum(s.tokens for s in shares),
                    sum((s.cost for s in shares), ZERO),
                )
            )
        return rows

    @property
    def turns_without_transcript(self) -> int:
        return sum(1 for t in self.turns if t.sources is None)

    def to_json(self) -> dict[str, Any]:
        total = self.total_cost
        sources = self.input_sources()
        source_total = sum((s.cost for s in sources), ZERO)
        costliest = self.costliest_subagent()
        return {
            "log_dir": str(self.log_dir),
            "runs": [r.as_json() for r in self.runs],
            "top_turns": [t.as_json() for t in self.top_turns()],
            "by_model": [g.as_json("model", total) for g in self.by_model],
            "by_tier": [g.as_json("tier", total) for g in self.by_tier],
            "by_agent": [g.as_json("agent", total) for g in self.by_agent],
            "costliest_subagent": None if costliest is None else costliest.as_json("agent", total),
            "input_sources": [s.as_json(source_total) for s in sources],
            "total_cost_usd": usd(total),
            "unreadable_lines": self.unreadable_lines,
            "turns_without_transcript": self.turns_without_transcript,
            "warnings": self.warnings,
            "hidden_runs_without_calls": self.hidden,
        }


# --- building the report ---------------------------------------------------------


def build_report(
    log_dir: Path,
    *,
    last: int | None = None,
    run_ids: Iterable[str] = (),
    top: int = 5,
    pricer: Pricer | None = None,
    all_runs: bool = False,
) -> Report:
    """Runs with no model call are left out (and counted) unless `all_runs` or named by id:
    `last=1` is the last run that called a model."""
    pricer = pricer or Pricer()
    every = list_runs(log_dir)
    wanted = list(run_ids)
    shown = every if all_runs or wanted else [r for r in every if r.has_calls]
    if not shown:
        raise UsageError(
            f"no run in {log_dir} called a model ({len(every)} without a call; --all lists them)"
        )
    runs = select_runs(shown, last=last, run_ids=wanted)
    report = Report(log_dir, [], [], [], [], top, hidden=len(every) - len(shown))
    models: dict[str, GroupRow] = {}
    tiers: dict[str, GroupRow] = {}
    agents: dict[tuple[str, str], GroupRow] = {}
    for run in runs:
        turns = _turn_rows(run, pricer, report.warnings)
        report.turns.extend(turns)
        report.runs.append(_run_row(run, turns, pricer))
        for rec in run.records:
            if rec.get("type") not in ("turn", "attempt"):
                continue
            cost = money_of(rec.get("cost_usd")) or ZERO
            usage = usage_of(rec)
            # A proxied call has no tier (its client chose the model): it is grouped by source.
            tier = _str(rec, "tier", _str(rec, "source", "?"))
            agent = _str(rec, "agent", "main")
            sub = agent != "main"
            for group in (
                models.setdefault(_str(rec, "model", "?"), GroupRow(_str(rec, "model", "?"))),
                tiers.setdefault(tier, GroupRow(tier)),
                agents.setdefault(
                    (run.run_id if sub else "", agent),
                    GroupRow(
                        agent, run_id=run.run_id if sub else None, task=rec.get("task") or None
                    ),
                ),
            ):
                group.calls += 1
                group.usage = group.usage + usage
                group.cost += cost
        if run.unreadable_lines:
            report.warnings.append(
                f"{run.path.name}: {run.unreadable_lines} unreadable line(s) skipped "
                "(cut by a killed run, or not a record this version can trust)"
            )
    report.by_model = sorted(models.values(), key=lambda g: g.cost, reverse=True)
    report.by_tier = sorted(tiers.values(), key=lambda g: g.cost, reverse=True)
    report.by_agent = sorted(agents.values(), key=lambda g: g.cost, reverse=True)
    return report


def _run_row(run: RunFile, turns: list[TurnRow], pricer: Pricer) -> RunRow:
    start = run.first("run_start") or {}
    end = run.first("run_end")
    attempts = [r for r in run.records if r.get("type") == "attempt"]
    usage = sum((t.usage for t in turns), TokenUsage())
    usage = sum((usage_of(a) for a in attempts), usage)
    cost = sum((t.cost for t in turns), ZERO)
    cost += sum(((money_of(a.get("cost_usd")) or ZERO) for a in attempts), ZERO)
    if end is None:
        # No run_end: still being written (its writer holds the log's lock), or cut off.
        ended = "live" if is_live(run.path) else "cut off (no run_end)"
    else:
        ended = _str(end, "status", "?")
        if end.get("halt_reason") and ended != "error":
            ended += f" ({end['halt_reason']})"
    tools = [r for r in run.records if r.get("type") == "tool"]
    compressed = [t for t in tools if "original_tokens" in t and "compressed_tokens" in t]
    replay_of = start.get("replay_of")
    return RunRow(
        run_id=run.run_id,
        path=run.path,
        started_at=run.started_at,
        ended_at=_str(end, "ended_at") or None if end else None,
        provider=_str(start, "provider", "?"),
        simulated=bool(start.get("simulated", False)),
        turns=len(turns),
        failed_attempts=len(attempts),
        usage=usage,
        cost=cost,
        saved_by_cache=_saved_by_cache(turns, pricer),
        compression_saved_tokens=(
            sum(_int(t, "original_tokens") - _int(t, "compressed_tokens") for t in compressed)
            if compressed
            else None
        ),
        ended=ended,
        unreadable_lines=run.unreadable_lines,
        replay_of=replay_of if isinstance(replay_of, dict) else None,
        call_records=[r for r in run.records if r.get("type") in ("turn", "attempt")],
    )


def _saved_by_cache(turns: list[TurnRow], pricer: Pricer) -> Decimal | None:
    """What the cache saved: the log's own figure when it has one, else the same usage priced
    with every cached token as plain input, minus what was paid (negative: writes not yet
    read back)."""
    saved = ZERO
    for t in turns:
        logged = money_of(t.record.get("saved_by_cache_usd"))
        if logged is not None:
            saved += logged
            continue
        u = t.usage
        if not (u.cache_read_input_tokens or u.cache_creation_input_tokens):
            continue
        try:
            saved += pricer.without_cache(t.model, u) - pricer.price(t.model, u).total
        except UsageError:
            return None  # a model this version cannot price: no figure rather than a wrong one
    return saved


def _turn_rows(run: RunFile, pricer: Pricer, warnings: list[str]) -> list[TurnRow]:
    start = run.first("run_start") or {}
    models = start.get("models")
    tier_models: dict[str, Any] = models if isinstance(models, dict) else {}
    tool_names = {
        _str(r, "tool_use_id"): _tool_label(r) for r in run.records if r.get("type") == "tool"
    }
    requests: dict[str, dict[tuple[int, str], dict[str, Any]]] = {}
    rows = []
    for index, rec in enumerate(r for r in run.records if r.get("type") == "turn"):
        turn = _int(rec, "turn") or index + 1
        cost = money_of(rec.get("cost_usd")) or ZERO
        raw = rec.get("cost_breakdown_usd")
        breakdown = {
            k: money_of(v) or ZERO for k, v in (raw.items() if isinstance(raw, dict) else [])
        }
        tool_calls = rec.get("tool_calls")
        row = TurnRow(
            run_id=run.run_id,
            turn=turn,
            purpose=_str(rec, "purpose", "agent"),
            model=_str(rec, "model", "?"),
            tier=_str(rec, "tier", _str(rec, "source", "?")),
            simulated=bool(rec.get("simulated", False)),
            usage=usage_of(rec),
            cost=cost,
            breakdown=breakdown,
            stop_reason=rec.get("stop_reason") if isinstance(rec.get("stop_reason"), str) else None,
            tool_calls=[str(x) for x in tool_calls] if isinstance(tool_calls, list) else [],
            record=rec,
            agent=_str(rec, "agent", "main"),
        )
        if row.agent not in requests:  # a sub-agent's conversation is in its own transcript
            requests[row.agent] = _requests_by_turn(run, warnings, row.agent)
        request = requests[row.agent].get((turn, row.purpose))
        if request is not None:
            _split_input(row, request, tool_names)
        _explain(row, pricer, tier_models)
        rows.append(row)
    return rows


def _tool_label(record: Mapping[str, Any]) -> str:
    name = _str(record, "name", "tool")
    args = record.get("input")
    if isinstance(args, dict):
        for key in ("path", "pattern", "query"):
            if isinstance(args.get(key), str):
                return f"{name} {args[key]}"
    return name


def _requests_by_turn(
    run: RunFile, warnings: list[str], agent: str = "main"
) -> dict[tuple[int, str], dict[str, Any]]:
    path = (
        run.transcript if agent == "main" else run.transcript.parent / run.run_id / f"{agent}.jsonl"
    )
    if not path.is_file():
        return {}
    try:
        requests = load_requests(path)
    except (OSError, LookupError, TypeError, ValueError, RecursionError):
        warnings.append(f"{path.name}: transcript unreadable; input sources not split")
        return {}
    # A retried call writes its request again: the last one is the one that was billed.
    return {(int(r["turn"]), str(r["purpose"])): r["request"] for r in requests}


def _labels(request: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The source of each block of `request_blocks(request)`, in the same order, with the
    tool_use_id of tool results."""
    out: list[tuple[str, str | None]] = [("tools", None)] * len(request.get("tools") or [])
    system = request.get("system")
    if isinstance(system, str):
        system = [system] if system else []
    out += [("system", None)] * len(system or [])
    messages = request.get("messages", [])
    for mi, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content or []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                out.append(("tool_results", str(block.get("tool_use_id", ""))))
            elif mi == len(messages) - 1 and message.get("role") == "user":
                out.append(("new_message", None))
            else:
                out.append(("history", None))
    return out


def _split_input(row: TurnRow, request: dict[str, Any], tool_names: Mapping[str, str]) -> None:
    """Split the billed input by source. The local estimate gives each block's share; shares
    are scaled to the billed total; the cached prefix (the API reads it first) is priced at the
    read rate, then the written part, then the uncached rest, at this turn's own rates."""
    blocks = request_blocks(request)
    labels = _labels(request)
    if len(labels) != len(blocks):
        return
    estimated = sum(n for _, n in blocks)
    u = row.usage
    billed = u.total_input_tokens
    if not estimated or not billed:
        return
    scale = Decimal(billed) / Decimal(estimated)
    bands = _bands(row)
    shares = {k: SourceShare() for k in SOURCES}
    exact: dict[str, Decimal] = dict.fromkeys(SOURCES, ZERO)
    biggest: tuple[str, Decimal, Decimal] | None = None
    position = ZERO
    for (label, tool_use_id), (_block, n) in zip(labels, blocks, strict=True):
        start, end = position, position + n * scale
        position = end
        exact[label] += end - start
        block_cost = ZERO
        for band_start, band_end, rate, kind in bands:
            overlap = min(end, band_end) - max(start, band_start)
            if overlap > 0:
                block_cost += overlap * rate
                by_kind = row.band_sources.setdefault(kind, {})
                by_kind[label] = by_kind.get(label, ZERO) + overlap * rate
                if kind == "cache_read":
                    shares[label].cost_cached += overlap * rate
        shares[label].cost += block_cost
        # The costliest tool result (a fresh one written to the cache outweighs a bigger
        # one read back from it).
        if label == "tool_results" and (biggest is None or block_cost > biggest[2]):
            biggest = (tool_names.get(tool_use_id or "", "a tool result"), end - start, block_cost)
    for key, tokens in zip(SOURCES, _whole(list(exact.values()), billed), strict=True):
        shares[key].tokens = tokens
    row.sources = shares
    if biggest is not None:
        row.largest_tool_result = (biggest[0], int(biggest[1].to_integral_value()))


def _bands(row: TurnRow) -> list[tuple[Decimal, Decimal, Decimal, str]]:
    """(start, end, dollars per token, price kind) over the billed input, in API order: the
    cached prefix read first, then the part written, then the uncached rest."""
    u = row.usage
    kinds = ("cache_read", "cache_write", "input")
    counts = (u.cache_read_input_tokens, u.cache_creation_input_tokens, u.input_tokens)
    if row.breakdown:
        costs = [row.breakdown.get(k, ZERO) for k in kinds]
    else:  # no split logged: spread what was not output evenly over the input
        input_cost = max(row.cost - row.breakdown.get("output", ZERO), ZERO)
        costs = [input_cost * n / u.total_input_tokens for n in counts]
    out = []
    at = ZERO
    for n, cost, kind in zip(counts, costs, kinds, strict=True):
        if n:
            out.append((at, at + n, cost / n, kind))
            at += n
    return out


def _whole(parts: list[Decimal], total: int) -> list[int]:
    """Round parts to whole numbers that add up to `total` (largest remainder)."""
    floors = [int(p) for p in parts]
    short = total - sum(floors)
    order = sorted(range(len(parts)), key=lambda i: parts[i] - floors[i], reverse=True)
    for i in order[: max(short, 0)]:
        floors[i] += 1
    return floors


def _explain(row: TurnRow, pricer: Pricer, tier_models: Mapping[str, Any]) -> None:
    """Name the one thing that explains most of this turn's cost, with its dollars: its largest
    priced component (output, a cache write, uncached input, a cache read, or the premium of
    the deep tier), then what that component was made of (a named cache miss, a large tool
    result, a long history)."""
    u = row.usage
    if row.breakdown:
        kinds = ("output", "cache_write", "input", "cache_read")
        parts = {k: row.breakdown.get(k, ZERO) for k in kinds}
    else:  # an old log with no split: the input's share cannot be told from the output's
        parts = {"input": row.cost}
    balanced = tier_models.get("balanced")
    premium = ZERO
    if row.tier == "deep" and isinstance(balanced, str) and balanced != row.model:
        try:
            premium = row.cost - pricer.price(balanced, u).total
        except UsageError:
            premium = ZERO
    kind, cost = max(parts.items(), key=lambda kv: kv[1])
    if premium > cost:
        row.cause_cost, row.cause_kind = premium, "deep_tier"
        row.cause = f"deep-tier model {row.model}: ${premium:.6f} more than {balanced}"
        return
    row.cause_cost = cost
    miss = row.cache_miss_reason
    written, uncached = u.cache_creation_input_tokens, u.input_tokens
    if kind == "output":
        row.cause_kind, row.cause = "output", f"long output: {u.output_tokens:,} tokens"
    elif kind == "cache_write" and miss:
        row.cause_kind, row.cause = "cache_miss", f"cache write after {miss} ({written:,} tokens)"
    elif kind == "input" and miss:
        row.cause_kind = "cache_miss"
        row.cause = f"cache miss ({miss}): {uncached:,} input tokens not read from cache"
    elif kind == "cache_read":
        row.cause_kind = "cached_input"
        row.cause = f"long history: {u.cache_read_input_tokens:,} tokens read from cache"
    else:  # a write or uncached input with no miss named: the source most of it came from
        what = "cache write" if kind == "cache_write" else "uncached input"
        n = written if kind == "cache_write" else uncached
        by_source = row.band_sources.get(kind, {})
        source = max(by_source, key=lambda k: by_source[k]) if by_source else ""
        if source == "tool_results" and row.largest_tool_result is not None:
            name, tokens = row.largest_tool_result
            row.cause_kind = "tool_result"
            row.cause = f"large tool result: {name} ({tokens:,} tokens)"
        elif source == "history":
            row.cause_kind = "history"
            row.cause = f"long history: {what} of {n:,} tokens, mostly conversation history"
        else:
            row.cause_kind = "uncached_input"
            row.cause = f"large {what}: {n:,} tokens" + (
                f", mostly {SOURCE_LABELS[source]}" if source else ""
            )


# --- replay support ----------------------------------------------------------------


@dataclass
class TurnRequest:
    """One turn of a logged run, as it was sent and as it was answered."""

    run: RunFile
    record: dict[str, Any]
    request: dict[str, Any]
    answer: list[dict[str, Any]] | None  # None: the transcript does not have it


def turn_request(log_dir: Path, run_id: str, turn: int) -> TurnRequest:
    """The exact request of a logged turn (from its transcript) and its logged record."""
    run = find_run(log_dir, run_id)
    records = [r for r in run.records if r.get("type") == "turn"]
    numbers = [_int(r, "turn") for r in records]
    matches = [r for r in records if _int(r, "turn") == turn]
    if not matches:
        have = f"turns {min(numbers)}-{max(numbers)}" if numbers else "no turns"
        raise UsageError(f"run {run.run_id} has no turn {turn} ({have})")
    record = matches[0]
    requests, messages = sent_requests(run)
    request = requests.get((turn, _str(record, "purpose", "agent")))
    if request is None:
        raise UsageError(f"the transcript of run {run.run_id} has no request for turn {turn}")
    return TurnRequest(run, record, request, answer_after(messages, request))


def sent_requests(
    run: RunFile,
) -> tuple[dict[tuple[int, str], dict[str, Any]], list[dict[str, Any]]]:
    """A run's requests by (turn, purpose), and its messages, from its transcript."""
    if not run.transcript.is_file():
        raise UsageError(
            f"run {run.run_id} has no transcript at {run.transcript}: its requests were not kept"
        )
    warnings: list[str] = []
    requests = _requests_by_turn(run, warnings)
    if warnings:
        raise UsageError(warnings[0].replace("; input sources not split", ""))
    return requests, load_messages(run.transcript)


def answer_after(
    messages: list[dict[str, Any]], request: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """The answer to a request, when the transcript has it: the message after the ones sent."""
    sent = len(request.get("messages", []))
    if sent < len(messages) and messages[sent].get("role") == "assistant":
        content = messages[sent].get("content")
        return content if isinstance(content, list) else [{"type": "text", "text": content}]
    return None
