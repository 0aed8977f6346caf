"""Who and what a results view counts: the filters of the results page, its charts and
its CSV exports (web/results.py), as where-clauses the reports add to their own.

    parse_filters({"locale": "es", "since": "2026-03-01", ...}) ─► Filters
        (FilterError, with a sentence naming the field, for a value that cannot be one)
    filter_options(session, key) ─► the locales, sources and time zones people of the
        campaign have, for the page's choices

  locale, time zone   the person's (subscribers.locale, subscribers.timezone)
  source              how the person joined the campaign (enrollments.source: signup,
                      import, api, trigger, demo, simulation...)
  channel             the message's channel; people counts (enrolled, completed...) are
                      not per channel, so the channel narrows what was sent to them
  since / until       days, `until` inclusive; messages by when they were created, people
                      by when they joined (as campaigns.reporting.funnels counts)

A well-formed value nobody has (a locale no one reads) is no error: the view is empty,
so a shared link keeps working after the people it counted are gone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Enrollment, Message, Subscriber
from campaigns.states import CHANNELS

FIELDS = ("locale", "channel", "source", "timezone", "since", "until")
_LOCALE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?")
_SOURCE = re.compile(r"[a-z0-9_]{1,40}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class FilterError(ValueError):
    """A filter value that cannot be one; the message names the field."""


@dataclass(frozen=True)
class Filters:
    locale: str | None = None
    channel: str | None = None
    source: str | None = None
    timezone: str | None = None
    since: date | None = None
    until: date | None = None  # inclusive

    @property
    def start(self) -> datetime | None:
        return datetime.combine(self.since, datetime.min.time(), UTC) if self.since else None

    @property
    def end(self) -> datetime | None:
        """The moment after the `until` day (exclusive); none after the last day there is."""
        if self.until is None or self.until == date.max:
            return None
        return datetime.combine(self.until + timedelta(days=1), datetime.min.time(), UTC)

    def in_range(self, column) -> list:
        """Where-clauses keeping `column` (a moment) within the days."""
        where = []
        if self.start is not None:
            where.append(column >= self.start)
        if self.end is not None:
            where.append(column < self.end)
        return where

    @property
    def narrows_people(self) -> bool:
        return any((self.locale, self.source, self.timezone))

    def query(self) -> dict[str, str]:
        """The filters as URL query fields (only those set), for links and exports."""
        return {k: str(v) for k, v in asdict(self).items() if v is not None}


def parse_filters(raw: Mapping[str, str | None]) -> Filters:
    """Filters from a page's query; an empty field is no filter."""
    value = {name: (raw.get(name) or "").strip() or None for name in FIELDS}
    locale, channel, source, zone = (value[k] for k in ("locale", "channel", "source", "timezone"))
    if locale is not None and not _LOCALE.fullmatch(locale):
        raise FilterError(f"locale must be a language code like en or es-US, not {locale!r}")
    if channel is not None and channel not in CHANNELS:
        raise FilterError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    if source is not None and not _SOURCE.fullmatch(source):
        raise FilterError(f"source must be a name like signup or import, not {source!r}")
    if zone is not None:
        try:
            if len(zone) > 64 or zone.startswith(("/", ".")) or ".." in zone:
                raise ValueError(zone)
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise FilterError(
                f"time zone must be one like America/New_York, not {zone!r}"
            ) from None
    since, until = _day(value["since"], "since"), _day(value["until"], "until")
    if since and until and since > until:
        raise FilterError(f"since ({since}) is after until ({until})")
    return Filters(locale, channel, source, zone, since, until)


def _day(text: str | None, name: str) -> date | None:
    if text is None:
        return None
    try:
        if not _DAY.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(f"{name} must be a date like 2026-03-01, not {text!r}") from None


def people_clauses(filters: Filters) -> list:
    """Where-clauses on Enrollment for the person filters (locale, time zone, source)."""
    where = []
    if filters.source is not None:
        where.append(Enrollment.source == filters.source)
    person = []
    if filters.locale is not None:
        person.append(Subscriber.locale == filters.locale)
    if filters.timezone is not None:
        person.append(Subscriber.timezone == filters.timezone)
    if person:
        where.append(Enrollment.subscriber_id.in_(select(Subscriber.id).where(*person)))
    return where


def message_clauses(filters: Filters | None, campaign_key: str) -> list:
    """Where-clauses on Message for the channel and the person filters (not the dates:
    each report says which moment its range is on)."""
    if filters is None:
        return []
    where = []
    if filters.channel is not None:
        where.append(Message.channel == filters.channel)
    if filters.narrows_people:
        where.append(Message.enrollment_id.in_(enrollment_ids(filters, campaign_key)))
    return where


def enrollment_ids(filters: Filters, campaign_key: str):
    """The campaign's enrollments the person filters keep, as a subquery."""
    return select(Enrollment.id).where(
        Enrollment.campaign_key == campaign_key, *people_clauses(filters)
    )


@dataclass(frozen=True)
class FilterOptions:
    locales: list[str]
    sources: list[str]
    timezones: list[str]


def filter_options(session: Session, campaign_key: str) -> FilterOptions:
    """What the campaign's people have (sorted), for the page's choices."""

    def values(column) -> list[str]:
        rows = session.execute(
            select(column)
            .select_from(Enrollment)
            .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
            .where(Enrollment.campaign_key == campaign_key, column.is_not(None))
            .group_by(column)
            .order_by(column)
        ).scalars()
        return list(rows)

    return FilterOptions(
        values(Subscriber.locale), values(Enrollment.source), values(Subscriber.timezone)
    )
