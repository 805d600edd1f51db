"""How money and tokens read on screen. Money stays Decimal until here."""

from __future__ import annotations

from tuiagent.cost.display import cap, money

__all__ = ["cap", "money", "tokens"]


def tokens(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n:,}"
