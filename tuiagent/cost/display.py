"""How money and counts read to a person (screens, notices, halt messages, the CLI). Money
stays Decimal until here; the log keeps its exact figures (pricing.usd)."""

from __future__ import annotations

from decimal import Decimal


def money(amount: Decimal | float | int, places: int = 4) -> str:
    """`$0.0123`, `-$0.0001`; amounts of a dollar or more keep two decimals unless they need
    more; an amount too small for `places` keeps two significant digits (`$0.0000012`),
    so a non-zero amount never reads as `$0.0000`."""
    d = Decimal(str(amount))
    sign, a = ("-" if d < 0 else ""), abs(d)
    if a >= 1:
        text = f"{a:.{places}f}".rstrip("0")
        whole, _, frac = text.partition(".")
        return f"{sign}${whole}.{frac.ljust(2, '0')}"
    if 0 < a < Decimal(1).scaleb(-places):
        digits = f"{a:.{-a.adjusted() + 1}f}".rstrip("0")
        return f"{sign}${digits}"
    if a == 0 or round(a, places) == 0:
        sign = ""
    return f"{sign}${a:.{places}f}"


def cap(amount: Decimal) -> str:
    """A cap as the user set it: `$1.00`, `$2.50`, `$0.105`, `$0.000001`; one the app worked
    out (F3 at a halt raises it to what the next call needs) is rounded as money is:
    `$0.0724`, not `$0.072362875`."""
    d = amount.normalize()
    exponent = d.as_tuple().exponent
    places = max(2, -exponent if isinstance(exponent, int) else 2)
    if places > 4:
        return money(amount, 4 if abs(amount) >= Decimal("0.01") else 6)
    return f"${amount:.{places}f}"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 turn`, `2 turns`, `1,024 calls`: a count with its noun."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"
