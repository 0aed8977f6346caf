"""Opting out and back in: what an unsubscribe, STOP, START or the preference page does
to consent, suppression and the person's courses."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.consent import has_consent, record_consent
from campaigns.audience.subscribers import address_for
from campaigns.audience.suppression import Cause, lift_unsubscribe, suppress
from campaigns.clock import Clock
from campaigns.models import Enrollment, Subscriber
from campaigns.reasons import ExitReason
from campaigns.states import (
    CHANNELS,
    Channel,
    ConsentAction,
    EnrollmentStatus,
    SubscriberStatus,
)


def unsubscribe(
    session: Session,
    clock: Clock,
    subscriber: Subscriber,
    channels: tuple[str, ...] = CHANNELS,
    source: str = "unsubscribe",
    evidence: dict | None = None,
) -> None:
    """Stop the named channels now: consent revoked, address suppressed. Stopping every
    channel the subscriber has also ends their enrollments. Stopping texts also cancels a
    pending "reply YES" request, so a later yes cannot lift the stop."""
    if Channel.SMS in channels:
        subscriber.sms_confirmation_requested_at = None
    for channel in channels:
        address = address_for(subscriber, channel)
        if not address:
            continue
        record_consent(session, clock, subscriber, channel, ConsentAction.REVOKED, source, evidence)
        suppress(session, clock, channel, address, Cause.UNSUBSCRIBED, source)
    reachable = [c for c in CHANNELS if address_for(subscriber, c) and c not in channels]
    if not any(has_consent(session, subscriber.id, c) for c in reachable):
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.updated_at = clock.now()
        for enrollment in session.scalars(
            select(Enrollment).where(
                Enrollment.subscriber_id == subscriber.id,
                Enrollment.status.in_((EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)),
            )
        ):
            enrollment.status = EnrollmentStatus.EXITED
            enrollment.exit_reason = ExitReason.UNSUBSCRIBED
            enrollment.updated_at = clock.now()
    session.flush()


def resubscribe(
    session: Session,
    clock: Clock,
    subscriber: Subscriber,
    channel: str,
    source: str,
    evidence: dict | None = None,
) -> bool:
    """An explicit opt-in again (START, the preference page). Records consent, lifts the
    opt-out, and resumes the courses that the opt-out ended. False when the address stays
    suppressed for a reason the person cannot waive."""
    address = address_for(subscriber, channel)
    if not address or not lift_unsubscribe(session, channel, address):
        return False
    record_consent(session, clock, subscriber, channel, ConsentAction.GRANTED, source, evidence)
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.updated_at = clock.now()
        for enrollment in session.scalars(
            select(Enrollment).where(
                Enrollment.subscriber_id == subscriber.id,
                Enrollment.status == EnrollmentStatus.EXITED,
                Enrollment.exit_reason == ExitReason.UNSUBSCRIBED,
                Enrollment.next_step_key.is_not(None),
            )
        ):
            enrollment.status = EnrollmentStatus.ACTIVE
            enrollment.exit_reason = None
            enrollment.updated_at = clock.now()
    session.flush()
    return True
