"""Naming the cause of a turn's cost: its largest priced component, and what that was made of."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuiagent.cost.pricing import ZERO, Pricer
from tuiagent.errors import UsageError
from tuiagent.report.rows import SOURCE_LABELS, TurnRow


def explain(row: TurnRow, pricer: Pricer, tier_models: Mapping[str, Any]) -> None:
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
    if kind == "output" and row.record.get("output_unknown") is True:
        # Stopped (Esc) or failed mid-answer: what it made is unknown, so billed at its limit.
        n = u.output_tokens
        row.cause_kind = "output"
        row.cause = f"output unknown (stopped or failed): counted at its limit, {n:,} tokens"
    elif kind == "output":
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
