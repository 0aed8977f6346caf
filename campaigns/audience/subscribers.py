"""Subscribers: validating contact details, and creating or finding the person.

Consent lives in campaigns.audience.consent, suppression in .suppression, opting out
and back in in .opt_outs, and whether a message may go in .eligibility.
"""

from __future__ import annotations

import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.consent import record_consent
from campaigns.clock import Clock
from campaigns.models import Subscriber
from campaigns.states import Channel, ConsentAction, SubscriberStatus
from campaigns.text import UncleanText, clean_text

# IANA's geographic areas: a zone named Area/Location is one the database maintains as
# such; bare legacy names (EST5EDT, Cuba), old country folders (US/Eastern) and the
# system's own entries (localtime, posixrules, Factory) are refused with a clear error.
ZONE_AREAS = frozenset(
    {
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
    }
)


class InvalidSubscriber(ValueError):
    """Bad contact details; the message says which field and why."""


def _clean(value: str, field: str) -> None:
    try:
        clean_text(value, field)
    except UncleanText as exc:
        raise InvalidSubscriber(str(exc)) from None


def normalize_email(raw: str) -> str:
    """The address in one form, whatever way it was typed, or InvalidSubscriber.

    Syntax by email-validator (no DNS look-up: a form must answer at once). A trailing
    dot after the domain (`bob@example.com.`, the DNS root) is folded away, so it cannot
    slip past a suppression of `bob@example.com`.
    """
    value = (raw or "").strip()
    _clean(value, "email")
    if value.endswith(".") and "@" in value:
        value = value.rstrip(".")
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidSubscriber(f"email: {raw!r} is not a valid email address ({exc})") from None
    # Lower-cased whole: mailbox providers treat the local part case-insensitively, and
    # Bob@ and bob@ as two subscribers would get every lesson twice.
    return checked.normalized.lower()


def normalize_phone(raw: str, region: str = "US") -> str:
    """E.164, or InvalidSubscriber. A number without + is read in `region`."""
    try:
        number = phonenumbers.parse((raw or "").strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidSubscriber(f"phone: {raw!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidSubscriber(f"phone: {raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_first_name(raw: str | None) -> str | None:
    """Stripped and at most 100 characters, None when blank; InvalidSubscriber when it
    holds a control character (a NUL byte is no letter of anyone's name)."""
    if raw is None:
        return None
    _clean(raw, "first_name")
    return raw.strip()[:100] or None


def check_timezone(name: str | None) -> str | None:
    """A canonical IANA zone name (Area/Location, or UTC), or InvalidSubscriber."""
    if not name:
        return None
    area = name.split("/", 1)[0]
    if name != "UTC" and ("/" not in name or area not in ZONE_AREAS):
        raise InvalidSubscriber(
            f"timezone: {name!r} is not a canonical IANA time zone (like America/New_York)"
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSubscriber(f"timezone: {name!r} is not an IANA time zone") from None
    return name


def address_for(subscriber: Subscriber, channel: str) -> str | None:
    return subscriber.email if channel == Channel.EMAIL else subscriber.phone


def upsert_subscriber(
    session: Session,
    clock: Clock,
    *,
    email: str | None = None,
    phone: str | None = None,
    first_name: str | None = None,
    locale: str | None = None,
    timezone: str | None = None,
    consent: tuple[str, ...] = (),
    source: str = "api",
    evidence: dict | None = None,
    phone_region: str = "US",
) -> Subscriber:
    """Find by email or phone, or create; record consent for each channel in `consent`.

    Validation happens before anything is written, so bad input changes nothing.
    """
    email = normalize_email(email) if email else None
    phone = normalize_phone(phone, phone_region) if phone else None
    timezone = check_timezone(timezone)
    name = check_first_name(first_name)
    if not email and not phone:
        raise InvalidSubscriber("email or phone: at least one is required")
    for channel in consent:
        if channel not in tuple(Channel):
            raise InvalidSubscriber(f"consent: unknown channel {channel!r}")
        if channel == Channel.EMAIL and not email:
            raise InvalidSubscriber("consent: email consent given without an email address")
        if channel == Channel.SMS and not phone:
            raise InvalidSubscriber("consent: sms consent given without a phone number")

    now = clock.now()
    sub = None
    if email:
        sub = session.scalar(select(Subscriber).where(Subscriber.email == email))
    if sub is None and phone:
        sub = session.scalar(select(Subscriber).where(Subscriber.phone == phone))
    if sub is None:
        sub = Subscriber(
            email=email,
            phone=phone,
            status=SubscriberStatus.ACTIVE,
            public_token=secrets.token_urlsafe(32),
            created_at=now,
            updated_at=now,
        )
        session.add(sub)
    else:
        sub.email = sub.email or email
        sub.phone = sub.phone or phone
        sub.updated_at = now
    if first_name is not None:
        sub.first_name = name
    if locale:
        sub.locale = locale
    if timezone:
        sub.timezone = timezone
    session.flush()
    for channel in consent:
        record_consent(session, clock, sub, channel, ConsentAction.GRANTED, source, evidence)
    return sub
