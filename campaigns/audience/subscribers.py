"""Subscribers, consent and suppression.

Consent is a history (append-only records); the latest record per channel decides.
Suppression is per address and channel and outlives the subscriber row, so a bounced
address stays suppressed even if it signs up again. Both are read at send time.
"""

from __future__ import annotations

import re
import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.db import id_in
from campaigns.models import ConsentRecord, Enrollment, Subscriber, Suppression

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


class InvalidSubscriber(ValueError):
    """Bad contact details; the message says which field and why."""


def normalize_email(raw: str) -> str:
    value = (raw or "").strip()
    if not _EMAIL.match(value) or len(value) > 320:
        raise InvalidSubscriber(f"email: {raw!r} is not a valid email address")
    # Lower-cased whole: mailbox providers treat the local part case-insensitively, and
    # Bob@ and bob@ as two subscribers would get every lesson twice.
    return value.lower()


def normalize_phone(raw: str, region: str = "US") -> str:
    """E.164, or InvalidSubscriber. A number without + is read in `region`."""
    try:
        number = phonenumbers.parse((raw or "").strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidSubscriber(f"phone: {raw!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidSubscriber(f"phone: {raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_timezone(name: str | None) -> str | None:
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSubscriber(f"timezone: {name!r} is not an IANA time zone") from None
    return name


def address_for(subscriber: Subscriber, channel: str) -> str | None:
    return subscriber.email if channel == "email" else subscriber.phone


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
    if not email and not phone:
        raise InvalidSubscriber("email or phone: at least one is required")
    for channel in consent:
        if channel not in ("email", "sms"):
            raise InvalidSubscriber(f"consent: unknown channel {channel!r}")
        if channel == "email" and not email:
            raise InvalidSubscriber("consent: email consent given without an email address")
        if channel == "sms" and not phone:
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
            status="active",
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
        sub.first_name = first_name.strip()[:100] or None
    if locale:
        sub.locale = locale
    if timezone:
        sub.timezone = timezone
    session.flush()
    for channel in consent:
        record_consent(session, clock, sub, channel, "granted", source, evidence)
    return sub


def record_consent(
    session: Session,
    clock: Clock,
    subscriber: Subscriber,
    channel: str,
    action: str,
    source: str,
    evidence: dict | None = None,
) -> ConsentRecord:
    record = ConsentRecord(
        subscriber_id=subscriber.id,
        channel=channel,
        action=action,
        source=source,
        evidence=evidence,
        created_at=clock.now(),
    )
    session.add(record)
    session.flush()
    return record


def has_consent(session: Session, subscriber_id: int, channel: str) -> bool:
    latest = session.scalar(
        select(ConsentRecord.action)
        .where(ConsentRecord.subscriber_id == subscriber_id, ConsentRecord.channel == channel)
        .order_by(ConsentRecord.created_at.desc(), ConsentRecord.id.desc())
        .limit(1)
    )
    return latest == "granted"


def suppression_for(session: Session, channel: str, address: str | None) -> Suppression | None:
    if not address:
        return None
    key = address.lower() if channel == "email" else address
    return session.scalar(
        select(Suppression).where(Suppression.channel == channel, Suppression.address == key)
    )


def suppress(
    session: Session, clock: Clock, channel: str, address: str, reason: str, source: str
) -> Suppression:
    """Idempotent: the first reason recorded for an address is kept."""
    existing = suppression_for(session, channel, address)
    if existing:
        return existing
    row = Suppression(
        channel=channel,
        address=address.lower() if channel == "email" else address,
        reason=reason,
        source=source,
        created_at=clock.now(),
    )
    # A savepoint, so a concurrent insert of the same address loses quietly.
    try:
        with session.begin_nested():
            session.add(row)
    except Exception:
        existing = suppression_for(session, channel, address)
        if existing is None:
            raise
        return existing
    return row


def unsubscribe(
    session: Session,
    clock: Clock,
    subscriber: Subscriber,
    channels: tuple[str, ...] = ("email", "sms"),
    source: str = "unsubscribe",
    evidence: dict | None = None,
) -> None:
    """Stop the named channels now: consent revoked, address suppressed. Stopping every
    channel the subscriber has also ends their enrollments."""
    for channel in channels:
        address = address_for(subscriber, channel)
        if not address:
            continue
        record_consent(session, clock, subscriber, channel, "revoked", source, evidence)
        suppress(session, clock, channel, address, "unsubscribed", source)
    reachable = [c for c in ("email", "sms") if address_for(subscriber, c) and c not in channels]
    if not any(has_consent(session, subscriber.id, c) for c in reachable):
        subscriber.status = "unsubscribed"
        subscriber.updated_at = clock.now()
        for enrollment in session.scalars(
            select(Enrollment).where(
                Enrollment.subscriber_id == subscriber.id,
                Enrollment.status.in_(("active", "paused")),
            )
        ):
            enrollment.status = "exited"
            enrollment.exit_reason = "unsubscribed"
            enrollment.updated_at = clock.now()
    session.flush()


def waivable(reason: str) -> bool:
    """Opt-outs the person may take back (unsubscribe, STOP, the carrier's 21610);
    bounces, complaints and invalid numbers are not theirs to lift."""
    return reason == "stop" or reason.startswith("unsubscribed")


def lift_unsubscribe(session: Session, channel: str, address: str) -> bool:
    """Remove an opt-out suppression; False (row kept) when the suppression is not waivable."""
    row = suppression_for(session, channel, address)
    if row is None:
        return True
    if not waivable(row.reason):
        return False
    session.delete(row)
    session.flush()
    return True


def resubscribe(session: Session, clock: Clock, subscriber: Subscriber, channel: str, source: str,
                evidence: dict | None = None) -> bool:
    """An explicit opt-in again (START, the preference page). Records consent, lifts the
    opt-out, and resumes the courses that the opt-out ended. False when the address stays
    suppressed for a reason the person cannot waive."""
    address = address_for(subscriber, channel)
    if not address or not lift_unsubscribe(session, channel, address):
        return False
    record_consent(session, clock, subscriber, channel, "granted", source, evidence)
    if subscriber.status == "unsubscribed":
        subscriber.status = "active"
        subscriber.updated_at = clock.now()
        for enrollment in session.scalars(
            select(Enrollment).where(Enrollment.subscriber_id == subscriber.id,
                                     Enrollment.status == "exited",
                                     Enrollment.exit_reason == "unsubscribed",
                                     Enrollment.next_step_key.is_not(None))
        ):
            enrollment.status = "active"
            enrollment.exit_reason = None
            enrollment.updated_at = clock.now()
    session.flush()
    return True


class Facts:
    """Consent and suppression for many subscribers, read in two queries (the send and
    claim paths work on whole batches)."""

    def __init__(self, session: Session, subscribers: list[Subscriber]):
        ids = [s.id for s in subscribers]
        self.consent: dict[tuple[int, str], bool] = {}
        if ids:
            rows = session.execute(
                select(ConsentRecord.subscriber_id, ConsentRecord.channel, ConsentRecord.action)
                .where(id_in(session, ConsentRecord.subscriber_id, ids))
                .order_by(ConsentRecord.created_at, ConsentRecord.id)
            )
            for sid, channel, action in rows:  # ordered: the latest record wins
                self.consent[(sid, channel)] = action == "granted"
        emails = [s.email.lower() for s in subscribers if s.email]
        phones = [s.phone for s in subscribers if s.phone]
        self.suppressed: dict[tuple[str, str], str] = {}
        if emails or phones:
            rows = session.execute(
                select(Suppression.channel, Suppression.address, Suppression.reason).where(
                    ((Suppression.channel == "email") & id_in(session, Suppression.address, emails))
                    | ((Suppression.channel == "sms") & id_in(session, Suppression.address, phones)))
            )
            self.suppressed = {(c, a): r for c, a, r in rows}

    def has_consent(self, subscriber: Subscriber, channel: str) -> bool:
        return self.consent.get((subscriber.id, channel), False)

    def suppression(self, subscriber: Subscriber, channel: str) -> str | None:
        address = address_for(subscriber, channel)
        if not address:
            return None
        return self.suppressed.get((channel, address.lower() if channel == "email" else address))

    def reachable(self, subscriber: Subscriber) -> list[str]:
        return [c for c in ("email", "sms") if address_for(subscriber, c) and self.has_consent(subscriber, c)]
