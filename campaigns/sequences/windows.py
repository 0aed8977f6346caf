"""Send windows in the subscriber's local time.

A window is a set of weekdays and a [start, end) range of local wall-clock time, closed at
its start and open at its end to the microsecond: with text hours 08:00-21:00, 08:00:00
and 20:59:59.999999 are inside, 21:00:00 is not. Texts
are further held to the legal quiet hours (08:00-21:00 local by default); a campaign
window narrows that, never widens it. `next_allowed` answers "the earliest moment at or
after t that falls inside every window", which is how a held message is deferred to the
next allowed minute instead of dropped.

All comparisons are done in UTC: Python compares two datetimes that share a tzinfo
object by wall time, which is wrong across a daylight-saving change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time  # exclusive; time(0, 0) as an end means midnight (end of day)

    @classmethod
    def every_day(cls, start_hour: int, end_hour: int) -> Window:
        end = time(0, 0) if end_hour == 24 else time(end_hour, 0)
        return cls(frozenset(range(7)), time(start_hour, 0), end)

    def intersect(self, other: Window) -> Window | None:
        days = self.days & other.days
        start = max(self.start, other.start)
        end = min(_end_key(self.end), _end_key(other.end))
        if not days or end <= _minutes(start):
            return None
        end_time = time(0, 0) if end == 24 * 60 else time(end // 60, end % 60)
        return Window(frozenset(days), start, end_time)

    @property
    def always_open(self) -> bool:
        """Every day, all day: nothing to check."""
        return len(self.days) == 7 and self.start == time(0, 0) and self.end == time(0, 0)

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        return (
            f"{days} {self.start:%H:%M}-{'24:00' if self.end == time(0) else f'{self.end:%H:%M}'}"
        )


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _end_key(t: time) -> int:
    return 24 * 60 if t == time(0, 0) else _minutes(t)


def _local_to_utc(day: date, at: time, tz: ZoneInfo) -> datetime:
    # fold=0 resolves an ambiguous autumn hour to its first occurrence; a wall time
    # inside the spring gap maps forward (02:30 EST-clock becomes 03:30 EDT).
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _bounds(day: date, window: Window, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = _local_to_utc(day, window.start, tz)
    if window.end == time(0, 0):
        end = _local_to_utc(day + timedelta(days=1), time(0, 0), tz)
    else:
        end = _local_to_utc(day, window.end, tz)
    return start, end


def is_allowed(t: datetime, window: Window, tz: ZoneInfo) -> bool:
    t = t.astimezone(UTC)
    local_day = t.astimezone(tz).date()
    if local_day.weekday() not in window.days:
        return False
    start, end = _bounds(local_day, window, tz)
    return start <= t < end


def next_allowed(t: datetime, window: Window, tz: ZoneInfo) -> datetime:
    """Earliest instant >= t inside `window` in zone `tz` (t itself when it is allowed;
    otherwise the window's next opening, which is always a whole minute)."""
    t = t.astimezone(UTC)
    first_day = t.astimezone(tz).date()
    for offset in range(9):
        day = first_day + timedelta(days=offset)
        if day.weekday() not in window.days:
            continue
        start, end = _bounds(day, window, tz)
        candidate = max(t, start)
        if candidate < end:
            return candidate
    raise ValueError(f"window {window.describe()} has no allowed time")
