"""How money and counts read to a person (screens, notices, halt messages, the CLI). Money
stays Decimal until here; the log keeps its exact figures (pricing.usd)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (the app's first frame imports this module: the ledger comes later)
    from tuiagent.ledger import BudgetLine


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


def duration(seconds: float) -> str:
    """`42s`, `5m`, `5h12m`, `3d4h`: how long until something happens."""
    s = max(int(seconds + 0.999), 0)
    if s < 60:
        return f"{s}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 3600:
        return f"{minutes}m"
    if s < 86400:
        return f"{hours}h{minutes % 60:02d}m" if minutes % 60 else f"{hours}h"
    return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"


def resets(line: BudgetLine, now: float) -> str:
    """When a budget starts over: `resets 2026-12-08 00:00 UTC, in 5h12m`."""
    window = line.spec.window
    if window.kind == "run":
        return "never resets"
    if line.resets_at is None:
        return f"counts the last {window.label} (a call leaves it {window.label} after it is made)"
    from tuiagent.ledger.windows import time_zone

    at = datetime.fromtimestamp(line.resets_at, time_zone(window.tz))
    return f"resets {at:%Y-%m-%d %H:%M} {window.tz}, in {duration(line.resets_at - now)}"


def budget_line(line: BudgetLine, now: float) -> str:
    """A budget as a halt or a refusal names it: `the budget "session run" of session abc
    ($0.20: $0.1990 spent, $0.0000 held, $0.0010 left; never resets)`."""
    of = "" if line.spec.scope == "global" else f" of {line.spec.scope} {line.value}"
    sim = ", simulated" if line.simulated else ""
    return (
        f'the budget "{line.title}"{of} ({cap(line.cap)}{sim}: {money(line.spent)} spent, '
        f"{money(line.held)} held, {money(line.left)} left; {resets(line, now)})"
    )


def budget_short(line: BudgetLine) -> str:
    """A budget in a few words, for a gauge: `today $3.12 / $20.00`, `session $0.15 /
    $0.20`, `last 5h $1.20 / $5.00` (spent plus held, against its cap)."""
    window = line.spec.window
    when = {"day": "today", "week": "this week", "month": "this month"}.get(window.kind)
    if line.spec.name:
        label = line.spec.name
    elif when is not None:
        label = when if line.spec.scope == "global" else f"{line.spec.scope} {when}"
    elif window.rolling:
        label = f"{line.spec.scope} last {window.label}"
    else:
        label = line.spec.scope
    return f"{label} {money(line.spent + line.held)} / {cap(line.cap)}"
