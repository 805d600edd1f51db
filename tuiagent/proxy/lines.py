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
    else:
        end = f"{record.error_type}: {record.error}"
        if record.usage_unknown:
            end += "; usage unknown, worst case kept"
    end += _held(record)
    miss = f" cache miss: {record.cache_miss_reason}" if record.cache_miss_reason else ""
    return f"{turn} {who} {tokens} {money} [{end}]{miss}"


def _held(record: ProxyTurn) -> str:
    """How its hold was sized, where the client did not get what it asked: its max_tokens
    lowered (to fit the cap, or to its fair share of what is left), and how long it waited
    for calls in flight to settle."""
    said = ""
    if record.max_tokens_requested != record.max_tokens:
        said += f", max_tokens {record.max_tokens_requested:,}->{record.max_tokens:,}"
        said += f" ({record.lowered})" if record.lowered else ""
    if record.waited_s:
        said += f", waited {record.waited_s:.1f}s for calls in flight"
    return said
