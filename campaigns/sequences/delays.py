"""Delays as a campaign file writes them: '3d', '1w 2d', '12h', '30m', '0m' (or a whole
number of minutes), and back again for people."""

from __future__ import annotations

import re
from datetime import timedelta

_DELAY = re.compile(r"^\s*(?:(\d+)\s*w)?\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*$")


def parse_delay(value: str | int) -> timedelta:
    """'3d', '1w 2d', '12h', '30m', '0m' (or a whole number of minutes)."""
    if isinstance(value, bool):
        raise ValueError("delay must be like '3d', '12h' or '30m'")  # pydantic reports ValueErrors
    if isinstance(value, int):
        if value < 0:
            raise ValueError("delay must not be negative")
        return timedelta(minutes=value)
    text = str(value).strip().lower()
    if text.startswith("-"):
        raise ValueError("delay must not be negative")
    match = _DELAY.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"delay {value!r} is not like '3d', '1w 2d', '12h' or '30m'")
    weeks, days, hours, minutes = (int(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes)


def format_delay(delay: timedelta) -> str:
    """'2d', '1d 12h', '30m', '0m': a delay as the file would write it (whole minutes)."""
    seconds = int(delay.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return (
        " ".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (rest // 60, "m")) if n) or "0m"
    )
