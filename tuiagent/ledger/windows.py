"""Budget windows: when a budget's spending starts over.

A calendar window (`day`, `week` from Monday, `month`) starts at midnight in its time zone
(UTC unless the budget names one) and ends at the next; `run` never ends (the budget is the
whole life of its scope: a session, a key); a rolling window (`"5h"`, `"30m"`, `"7d"`) is the
span up to now. Nothing runs at a boundary: the window a call falls in is worked out from
the clock when it is reserved, so a new day is a new bucket and the old one is simply no
longer read.

Rolling windows are counted by the minute: a call counts in the minute it was reserved, and
leaves the window once that whole minute is older than the span (so up to a minute late,
never early).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CALENDAR = ("day", "week", "month")
MINUTE = 60
_ROLLING = re.compile(r"([1-9][0-9]{0,5})([mhd])", re.ASCII)
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
MAX_ROLLING_S = 366 * 86400


def time_zone(name: str) -> tzinfo:
    """A time zone by its IANA name (`UTC`, `Europe/Paris`); ValueError if unknown."""
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name like 'UTC' or 'Europe/Paris'; "
            "without a system zone database, pip install tzdata)"
        ) from None


@dataclass(frozen=True)
class Window:
    """`kind` is run, day, week, month or rolling (then `span_s` seconds)."""

    kind: str
    span_s: int = 0
    tz: str = "UTC"

    @classmethod
    def parse(cls, text: str, tz: str = "UTC") -> Window:
        """`run`, `day`, `week`, `month`, or a rolling span like `5h`, `30m`, `7d`."""
        time_zone(tz)
        if text in ("run", *CALENDAR):
            return cls(text, 0, tz)
        m = _ROLLING.fullmatch(text)
        if m is None or int(m[1]) * _UNIT_S[m[2]] > MAX_ROLLING_S:
            raise ValueError(
                f'run, day, week, month, or a rolling span like "5h", "30m", "7d" (up to '
                f"366 days), got {text!r}"
            )
        return cls("rolling", int(m[1]) * _UNIT_S[m[2]], tz)

    @property
    def label(self) -> str:
        """As the config writes it: `day`, `5h`."""
        if self.kind != "rolling":
            return self.kind
        for unit in ("d", "h", "m"):
            if self.span_s % _UNIT_S[unit] == 0:
                return f"{self.span_s // _UNIT_S[unit]}{unit}"
        raise AssertionError(self.span_s)  # pragma: no cover - spans are whole minutes

    @property
    def rolling(self) -> bool:
        return self.kind == "rolling"

    def bounds(self, now: float) -> tuple[float | None, float | None]:
        """[start, end) of the window `now` falls in, as epoch seconds; None: unbounded
        (a run window has neither; a rolling one starts a span ago and has no end)."""
        if self.kind == "run":
            return None, None
        if self.rolling:
            return first_minute(now, self.span_s), None
        zone = time_zone(self.tz)
        today = datetime.fromtimestamp(now, zone).date()
        if self.kind == "day":
            start, end = today, today + timedelta(days=1)
        elif self.kind == "week":
            start = today - timedelta(days=today.weekday())
            end = start + timedelta(days=7)
        else:
            start = today.replace(day=1)
            end = (start + timedelta(days=32)).replace(day=1)
        return _midnight(start, zone), _midnight(end, zone)

    def bucket(self, now: float) -> str:
        """The name of the counter `now` falls in: one per calendar window (named by its
        start), one for `run`, one per minute for a rolling window."""
        if self.kind == "run":
            return "run"
        if self.rolling:
            return minute_bucket(now)
        start, _ = self.bounds(now)
        assert start is not None
        return f"{self.kind}@{int(start)}"

    def resets_at(self, now: float) -> float | None:
        """When a calendar window starts over (its end); None for run and rolling ones."""
        return None if self.rolling else self.bounds(now)[1]


def _midnight(day: date, zone: tzinfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()


def minute_of(t: float) -> int:
    return int(t // MINUTE) * MINUTE


def minute_bucket(t: float) -> str:
    """The minute counter of a rolling window: fixed width, so names sort by time."""
    return f"m:{minute_of(t):012d}"


def first_minute(now: float, span_s: int) -> float:
    """The oldest minute a rolling window of `span_s` still counts at `now`: every minute
    any second of which lies within the span."""
    return float(minute_of(now - span_s))
