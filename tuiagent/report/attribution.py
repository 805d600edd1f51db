"""Attributing a turn's billed input to where it came from (tools, system prompt, history,
tool results, the new message), priced at the turn's own rates, from its exact request."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tuiagent.cost.pricing import ZERO
from tuiagent.llm.tokens import prompt_tools, request_blocks
from tuiagent.report.rows import SOURCES, SourceShare, TurnRow


def _labels(request: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The source of each block of `request_blocks(request)`, in the same order, with the
    tool_use_id of tool results."""
    out: list[tuple[str, str | None]] = [("tools", None)] * len(prompt_tools(request))
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


def split_input(row: TurnRow, request: dict[str, Any], tool_names: Mapping[str, str]) -> None:
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
