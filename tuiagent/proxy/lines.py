"""One proxied call as a line, for the headless proxy and its dashboard."""

from __future__ import annotations

from typing import Any


def call_line(record: dict[str, Any]) -> str:
    """One call, for the headless output: never a header, never the key."""
    turn = f"#{record.get('turn', '?')}"
    who = f"{record.get('client', '?')} {str(record.get('model', '?')).removeprefix('claude-')}"
    if record["type"] == "refused":
        return f"{turn} {who} refused: {record.get('error', '')}"
    tokens = (
        f"in {record.get('input_tokens', 0):,} out {record.get('output_tokens', 0):,} "
        f"c.read {record.get('cache_read_input_tokens', 0):,} "
        f"c.write {record.get('cache_creation_input_tokens', 0):,}"
    )
    money = f"${record.get('cost_usd', 0):.6f} total ${record.get('cumulative_cost_usd', 0):.6f}"
    if record["type"] == "turn":
        end = record.get("stop_reason") or "-"
        cut = record.get("max_tokens_requested") != record.get("max_tokens")
        if cut:
            end += f", max_tokens {record['max_tokens_requested']}->{record['max_tokens']}"
    else:
        end = f"{record.get('error_type')}: {record.get('error')}"
        if record.get("usage_unknown"):
            end += "; usage unknown, worst case kept"
    miss = f" cache miss: {record['cache_miss_reason']}" if record.get("cache_miss_reason") else ""
    return f"{turn} {who} {tokens} {money} [{end}]{miss}"
