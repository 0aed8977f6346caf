"""Person events: something a person did outside our messages (a visit booked, a class
attended), told to us by another system through the events API or a CSV file.

    fields from outside ─► parse_event (one schema for the API and the CSV: every problem
                           named by its field) ─► record_person_event: the same event id
                           again is the original, not a second event ─► person_events

Fields (the API's JSON keys and the CSV's columns):

    event_id          the sender's own id for the event (printable ASCII, at most 100
                      characters): sending it again records nothing new
    name              what happened, like visit_booked (lower case, digits and _)
    email | phone | subscriber_token
                      who did it: an address (normalised as sign-ups are), or the
                      subscriber's public token; at least one
    occurred_at       when (ISO 8601 with a zone); now if absent; not in the future
    properties        a small flat object: at most 20 keys, values text (at most 500
                      characters), numbers, true/false or null, 2 KiB in all

The person must already be a subscriber: an event names someone we know, it never
creates a person (invariant 11). What an event then does to courses (a goal) is
campaigns.journeys.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.audience.subscribers import InvalidSubscriber, normalize_email, normalize_phone
from campaigns.clock import Clock
from campaigns.models import PersonEvent, Subscriber
from campaigns.text import UncleanText, clean_text, plain_id

EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
PROPERTY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
TOKEN = re.compile(r"[A-Za-z0-9_\-]{1,43}")
MAX_PROPERTIES = 20
MAX_PROPERTY_TEXT = 500
MAX_PROPERTIES_BYTES = 2048
# A sender's clock may run a little ahead of ours; more than this is a mistake.
FUTURE_SLACK = timedelta(minutes=5)
# Nothing this service tracks happened before it could exist; far-off years also overflow
# the conversion to UTC (year 1 in a zone east of UTC).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FIELDS = ("event_id", "name", "email", "phone", "subscriber_token", "occurred_at", "properties")
PERSON_FIELDS = ("email", "phone", "subscriber_token")


class EventInputError(ValueError):
    """The fields do not make an event: `problems` is [(field, what is wrong)]."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))


class MalformedBody(ValueError):
    """The API's body is not JSON at all."""


class UnknownPerson(ValueError):
    """No subscriber is named by the event's address or token (str(): field and why)."""


class EventConflict(ValueError):
    """The event id was already used for a different event (another name or person)."""


def _check(value: str, field: str, **kw) -> str:
    try:
        return clean_text(value, field, **kw)
    except UncleanText as exc:
        raise ValueError(str(exc).removeprefix(f"{field}: ")) from None


class PersonEventIn(BaseModel):
    """One event as given; `parse_event` builds it with the checks that need a context
    (the deployment's phone region, the clock)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    event_id: str
    name: str
    email: str | None = None
    phone: str | None = None
    subscriber_token: str | None = None
    occurred_at: AwareDatetime | None = None
    properties: dict[str, Any] | None = None

    @field_validator("event_id")
    @classmethod
    def _event_id(cls, value: str) -> str:
        try:
            return plain_id(value, "event_id", max_len=100)
        except UncleanText:
            raise ValueError(
                "must be 1 to 100 printable ASCII characters without spaces (your own id)"
            ) from None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not EVENT_NAME.fullmatch(value):
            raise ValueError(
                "must start with a lower-case letter and hold only a-z, 0-9 and _ "
                "(at most 63 characters), like visit_booked"
            )
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return normalize_email(value)
        except InvalidSubscriber as exc:
            raise ValueError(str(exc).removeprefix("email: ")) from None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info) -> str | None:
        if not value:
            return None
        _check(value, "phone")
        region = (info.context or {}).get("region", "US")
        try:
            return normalize_phone(value, region)
        except InvalidSubscriber as exc:
            raise ValueError(str(exc).removeprefix("phone: ")) from None

    @field_validator("subscriber_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not TOKEN.fullmatch(value):
            raise ValueError("is not a subscriber token (up to 43 characters of A-Z a-z 0-9 _ -)")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _when(cls, value: datetime | None, info) -> datetime | None:
        if value is None:
            return None
        try:
            # 0001-01-01T00:00+14:00 parses, but is before the first instant UTC can hold.
            value = value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValueError("is not a time this service can store") from None
        if value < EARLIEST:
            raise ValueError(f"is before {EARLIEST:%Y-%m-%d}: not an event of this course")
        now = (info.context or {}).get("now")
        if now is not None and value > now + FUTURE_SLACK:
            raise ValueError("is in the future")
        return value

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if not value:
            return None
        if len(value) > MAX_PROPERTIES:
            raise ValueError(f"at most {MAX_PROPERTIES} keys")
        for key, item in value.items():
            if not PROPERTY_KEY.fullmatch(key):
                raise ValueError(
                    f"key {key[:40]!r} must be a letter or _ then letters, digits or _ "
                    "(at most 40 characters)"
                )
            if isinstance(item, str):
                _check(item, f"properties.{key}", max_len=MAX_PROPERTY_TEXT)
            elif isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"{key}: numbers must be finite")
            elif not (item is None or isinstance(item, int | float | bool)):
                raise ValueError(f"{key}: values must be text, a number, true/false or null")
        if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_PROPERTIES_BYTES:
            raise ValueError(f"at most {MAX_PROPERTIES_BYTES} bytes as JSON")
        return value


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "[key]"]
    return ".".join(parts) or "body"


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown field (fields: {', '.join(FIELDS)})"
        elif err["type"] == "model_type":
            message = "the event must be a JSON object of fields"
        elif err["type"] == "missing":
            message = "required"
        elif err["type"] == "dict_type":
            message = 'must be a JSON object like {"clinic": "north"}'
        elif err["type"] == "timezone_aware":
            message = "needs a time zone, like 2026-11-20T14:30:00Z or +01:00 at the end"
        out.append((_field(loc), message))
    return out


def parse_event(data: dict | bytes, now: datetime, region: str = "US") -> PersonEventIn:
    """The event, or EventInputError naming every bad field (MalformedBody for bytes that
    are not JSON). `region` reads a phone number written without +."""
    context = {"now": now, "region": region}
    try:
        if isinstance(data, bytes | str):
            event = PersonEventIn.model_validate_json(data, context=context)
        else:
            event = PersonEventIn.model_validate(data, context=context)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            detail = exc.errors()[0]["msg"]
            raise MalformedBody(f"the body is not valid JSON ({detail})") from None
        raise EventInputError(_problems(exc)) from None
    if not (event.email or event.phone or event.subscriber_token):
        raise EventInputError(
            [("person", "give email, phone or subscriber_token to name the person")]
        )
    return event


# ---------------------------------------------------------------- the person


def find_person(session: Session, event: PersonEventIn) -> Subscriber:
    """The subscriber the event names: by email, else phone, else token (the first that
    matches). UnknownPerson when none does, or when two name different people."""
    found: dict[str, Subscriber] = {}
    for field, column in (
        ("email", Subscriber.email),
        ("phone", Subscriber.phone),
        ("subscriber_token", Subscriber.public_token),
    ):
        value = getattr(event, field)
        if value:
            sub = session.scalar(select(Subscriber).where(column == value))
            if sub is not None:
                found[field] = sub
    people = {s.id for s in found.values()}
    if len(people) > 1:
        raise UnknownPerson(f"person: {' and '.join(found)} name different subscribers")
    if not found:
        given = " or ".join(f for f in PERSON_FIELDS if getattr(event, f))
        raise UnknownPerson(f"person: no subscriber has this {given}")
    return next(iter(found.values()))


def _names(sub: Subscriber, event: PersonEventIn) -> bool:
    return (
        (event.email is not None and event.email == sub.email)
        or (event.phone is not None and event.phone == sub.phone)
        or (event.subscriber_token is not None and event.subscriber_token == sub.public_token)
    )


# ---------------------------------------------------------------- recording


@dataclass(frozen=True)
class Recorded:
    event: PersonEvent
    created: bool  # False: the event id was known; `event` is the original


def _existing(session: Session, event: PersonEventIn) -> PersonEvent | None:
    row = session.scalar(select(PersonEvent).where(PersonEvent.event_id == event.event_id))
    if row is None:
        return None
    if row.name != event.name or not _names(session.get(Subscriber, row.subscriber_id), event):
        raise EventConflict(
            f"event_id: {event.event_id!r} was already used for another event "
            "(a different name or person); use a new id"
        )
    # A retry repeats the event as it was (or leaves out what it gave before); the same id
    # with another time or other properties is a different event, and taking it as a
    # duplicate would lose it.
    if (event.occurred_at is not None and event.occurred_at != row.occurred_at) or (
        event.properties is not None and event.properties != (row.properties or None)
    ):
        raise EventConflict(
            f"event_id: {event.event_id!r} was already used with another time or other "
            "properties; use a new id"
        )
    return row


def record_person_event(
    session: Session,
    clock: Clock,
    event: PersonEventIn,
    source: str,
    source_ref: str | None = None,
) -> Recorded:
    """Record `event`, once per event id. The same id again (a retry, a file imported
    twice) returns the original; used for another name or person, EventConflict. An event
    naming nobody we know raises UnknownPerson and records nothing."""
    original = _existing(session, event)
    if original is not None:
        return Recorded(original, False)
    sub = find_person(session, event)
    now = clock.now()
    row = PersonEvent(
        event_id=event.event_id,
        subscriber_id=sub.id,
        name=event.name,
        occurred_at=event.occurred_at or now,
        properties=event.properties,
        source=source,
        source_ref=(source_ref or "")[:200] or None,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same id, recorded by another request meanwhile
        original = _existing(session, event)
        if original is None:
            raise
        return Recorded(original, False)
    return Recorded(row, True)


def as_dict(row: PersonEvent) -> dict:
    """The event as the API answers with it (no address: the caller sent it)."""
    return {
        "event_id": row.event_id,
        "name": row.name,
        "occurred_at": row.occurred_at.isoformat(),
        "received_at": row.created_at.isoformat(),
        "source": row.source,
        "properties": row.properties or {},
    }
