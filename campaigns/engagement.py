"""Opens and clicks as reports and conditions read them: the raw events still kept plus
the rollups of the ones retention deleted (campaigns.reporting.retention), as one
selectable. A raw event counts 1; a rollup row counts its `events`, stands at its first
time and names its message, so distinct messages, totals and first-open days come out
the same before and after a prune."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Subquery, func, literal, select, union_all

from campaigns.models import Event, EventRollup


def engagement(kinds: Iterable[str]) -> Subquery:
    """Columns: message_id, type, automated, automated_reason, route, link, url, at
    (when; a rollup's first), events (how many this row stands for)."""
    kinds = tuple(kinds)
    raw = select(
        Event.message_id,
        Event.type,
        Event.automated,
        Event.automated_reason,
        Event.payload["route"].as_string().label("route"),
        Event.payload["link"].as_string().label("link"),
        Event.payload["url"].as_string().label("url"),
        Event.occurred_at.label("at"),
        literal(1).label("events"),
    ).where(Event.type.in_(kinds), Event.message_id.is_not(None))
    rolled = select(
        EventRollup.message_id,
        EventRollup.type,
        EventRollup.automated,
        func.nullif(EventRollup.automated_reason, ""),
        func.nullif(EventRollup.route, ""),
        func.nullif(EventRollup.link, ""),
        func.nullif(EventRollup.url, ""),
        EventRollup.first_at,
        EventRollup.events,
    ).where(EventRollup.type.in_(kinds))
    return union_all(raw, rolled).subquery("engagement")
