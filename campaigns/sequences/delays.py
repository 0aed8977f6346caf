"""Delays as a campaign file writes them: '3d', '1w 2d', '12h', '30m', '0m' (or a whole
number of minutes), and back again for people."""

from __future__ import annotations

import re
from datetime import timedelta

# ASCII digits only: `\d` would also take "٣d" or a full-width "１d".
_DELAY = re.compile(
    r"^\s*(?:([0-9]+)\s*w)?\s*(?:([0-9]+)\s*d)?\s*(?:([0-9]+)\s*h)?\s*(?:([0-9]+)\s*m)?\s*$"
)
# A course paces lessons over days and weeks; a delay beyond this is a typing slip (and
# far enough beyond it, a date past the calendar's end when a step falls due).
MAX_DELAY = timedelta(days=366)


def parse_delay(value: str | int) -> timedelta:
    """'3d', '1w 2d', '12h', '30m', '0m' (or a whole number of minutes)."""
    if isinstance(value, bool):
        raise ValueError("delay must be like '3d', '12h' or '30m'")  # pydantic reports ValueErrors
    if isinstance(value, int):
        if value < 0:
            raise ValueError("delay must not be negative")
        return _bounded(value, 0, 0, 0)
    text = str(value).strip().lower()
    if text.startswith("-"):
        raise ValueError("delay must not be negative")
    match = _DELAY.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"delay {value!r} is not like '3d', '1w 2d', '12h' or '30m'")
    weeks, days, hours, minutes = (int(g or 0) for g in match.groups())
    return _bounded(minutes, hours, days, weeks)


def _bounded(minutes: int, hours: int, days: int, weeks: int) -> timedelta:
    total = ((weeks * 7 + days) * 24 + hours) * 60 + minutes
    if total > MAX_DELAY.total_seconds() // 60:
        raise ValueError(f"delay is over {MAX_DELAY.days} days: at most '52w' or '366d'")
    return timedelta(minutes=total)


def format_delay(delay: timedelta) -> str:
    """'2d', '1d 12h', '30m', '0m': a delay as the file would write it (whole minutes)."""
    seconds = int(delay.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return (
        " ".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (rest // 60, "m")) if n) or "0m"
    )
