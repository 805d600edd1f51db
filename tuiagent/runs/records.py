"""Reading fields of a run-log record, tolerantly: a log from an older or newer version.

A field this version does not know is ignored; a field an older version did not write, or
one of the wrong type, reads as absent (0, "", None), never as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from tuiagent.llm.usage import TokenUsage


def int_of(record: Mapping[str, Any], key: str) -> int:
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


def str_of(record: Mapping[str, Any], key: str, default: str = "") -> str:
    value = record.get(key)
    return value if isinstance(value, str) else default


def usage_of(record: Mapping[str, Any]) -> TokenUsage:
    return TokenUsage(
        input_tokens=int_of(record, "input_tokens"),
        output_tokens=int_of(record, "output_tokens"),
        cache_read_input_tokens=int_of(record, "cache_read_input_tokens"),
        cache_creation_input_tokens=int_of(record, "cache_creation_input_tokens"),
        cache_creation_5m_input_tokens=int_of(record, "cache_creation_5m_input_tokens"),
        cache_creation_1h_input_tokens=int_of(record, "cache_creation_1h_input_tokens"),
        web_search_requests=int_of(record, "web_search_requests"),
    )
