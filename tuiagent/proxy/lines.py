"""One proxied call as a line, for the headless proxy and its dashboard."""

from __future__ import annotations

from tuiagent.runs.records import ProxyTurn, RefusedCall


def call_line(record: ProxyTurn | RefusedCall) -> str:
    """One call, for the headless output: never a header, never the key."""
    turn = f"#{record.turn}"
    who = f"{record.client or '?'} {(record.model or '?').removeprefix('claude-')}"
    if isinstance(record, RefusedCall):
        return f"{turn} {who} refused: {record.error}"
    u = record.usage
    tokens = (
        f"in {u.input_tokens:,} out {u.output_tokens:,} "
        f"c.read {u.cache_read_input_tokens:,} c.write {u.cache_creation_input_tokens:,}"
    )
    money = f"${record.cost_usd:.6f} total ${record.cumulative_cost_usd:.6f}"
    if record.type == "turn":
        end = record.stop_reason or "-"
        if record.max_tokens_requested != record.max_tokens:
            end += f", max_tokens {record.max_tokens_requested}->{record.max_tokens}"
    else:
        end = f"{record.error_type}: {record.error}"
        if record.usage_unknown:
            end += "; usage unknown, worst case kept"
    miss = f" cache miss: {record.cache_miss_reason}" if record.cache_miss_reason else ""
    return f"{turn} {who} {tokens} {money} [{end}]{miss}"
