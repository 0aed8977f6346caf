"""Sends, opens, clicks and call requests over time, for the results page's trend chart
and its CSV.

    trend(session, key, filters) ─► Trend: one TrendPoint per day, or per ISO week
        (starting Monday) when the range is longer than WEEKLY_AFTER_DAYS

Counted as the per-step funnel counts them (campaigns.reporting.funnels), over the same
messages (created in the range, narrowed by the filters), so each column's total is the
funnel's total over every step:
  sent            messages the provider took (campaigns.reporting.sent), on the day it
                  took them (sent_at; the day created when the provider gave no time)
  opens, clicks   unique: messages a person opened / clicked, on the day of the first
                  such event; machines' events left out (events.automated)
  call requests   contact requests made from the messages, on the day asked
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.engagement import engagement
from campaigns.models import ContactRequest, Message
from campaigns.reporting.days import day_of, to_day, week_of
from campaigns.reporting.filters import Filters, message_clauses
from campaigns.reporting.sent import accepted
from campaigns.states import EventType

WEEKLY_AFTER_DAYS = 62  # about two months of days; beyond, a chart of days is a smear
MEASURES = ("sent", "opens", "clicks", "call_requests")


@dataclass
class TrendPoint:
    start: date  # the day, or the Monday of the week
    sent: int = 0
    opens: int = 0
    clicks: int = 0
    call_requests: int = 0


@dataclass
class Trend:
    grain: str  # "day" or "week"
    points: list[TrendPoint] = field(default_factory=list)

    def total(self, measure: str) -> int:
        return sum(getattr(p, measure) for p in self.points)

    def to_dict(self) -> dict:
        return {"grain": self.grain, "points": [asdict(p) for p in self.points]}


def trend(session: Session, campaign_key: str, filters: Filters) -> Trend:
    where = [
        Message.campaign_key == campaign_key,
        *filters.in_range(Message.created_at),
        *message_clauses(filters, campaign_key),
    ]
    by_day: dict[str, dict[str, int]] = {}

    def add(measure: str, query) -> None:
        for day, n in session.execute(query):
            by_day.setdefault(day, {})[measure] = n

    when_sent = day_of(session, func.coalesce(Message.sent_at, Message.created_at))
    add("sent", select(when_sent, func.count()).where(*where, accepted()).group_by(when_sent))
    for measure, kind in (("opens", EventType.OPENED), ("clicks", EventType.CLICKED)):
        ev = engagement((kind,))  # raw events and the rollups of pruned ones
        first = (
            select(ev.c.message_id, func.min(ev.c.at).label("at"))
            .join(Message, ev.c.message_id == Message.id)
            .where(*where, ev.c.automated.is_(False))
            .group_by(ev.c.message_id)
            .subquery()
        )
        day = day_of(session, first.c.at)
        add(measure, select(day, func.count()).select_from(first).group_by(day))
    asked = day_of(session, ContactRequest.created_at)
    add(
        "call_requests",
        select(asked, func.count(ContactRequest.id))
        .join(Message, ContactRequest.message_id == Message.id)
        .where(*where)
        .group_by(asked),
    )
    return _bucketed({to_day(d): counts for d, counts in by_day.items()}, filters)


def _bucketed(by_day: dict[date, dict[str, int]], filters: Filters) -> Trend:
    """Every day (or week) from the first to the last, empty ones too: the range asked
    for, narrowed to where there is anything, so an open-ended range stays short."""
    if not by_day:
        return Trend("day")
    first, last = min(by_day), max(by_day)
    since, until = filters.since, filters.until
    if since is not None and until is not None and (until - since).days <= WEEKLY_AFTER_DAYS * 7:
        first, last = min(first, filters.since), max(last, filters.until)
    weekly = (last - first).days > WEEKLY_AFTER_DAYS
    step = timedelta(weeks=1) if weekly else timedelta(days=1)
    start = week_of(first) if weekly else first
    points: dict[date, TrendPoint] = {}
    while start <= last:
        points[start] = TrendPoint(start)
        start += step
    for day, counts in by_day.items():
        point = points[week_of(day) if weekly else day]
        for measure, n in counts.items():
            setattr(point, measure, getattr(point, measure) + n)
    return Trend("week" if weekly else "day", list(points.values()))
