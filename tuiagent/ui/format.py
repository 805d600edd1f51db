"""How money and tokens read on screen. Money stays Decimal until here."""

from __future__ import annotations

from decimal import Decimal


def money(amount: Decimal | float | int, places: int = 4) -> str:
    """`$0.0123`; amounts of a dollar or more keep two decimals unless they need more."""
    d = Decimal(str(amount))
    if abs(d) >= 1:
        text = f"{d:.{places}f}".rstrip("0")
        whole, _, frac = text.partition(".")
        return f"${whole}.{frac.ljust(2, '0')}"
    return f"${d:.{places}f}"


def cap(amount: Decimal) -> str:
    """A cap as the user set it: `$1.00`, `$2.50`, `$0.105`."""
    d = amount.normalize()
    exponent = d.as_tuple().exponent
    places = max(2, -exponent if isinstance(exponent, int) else 2)
    return f"${amount:.{places}f}"


def tokens(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n:,}"
