"""Eligibility: whether a message may still go to a person on a channel, decided at
claim time and again right before every send (invariant 4).

One re-check (`recheck`) serves both the batch's preparation and the lease taken right
before each provider call, so a cause always reads the same in reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.consent import has_consent
from campaigns.audience.subscribers import address_for
from campaigns.audience.suppression import stored_form, suppressed_addresses
from campaigns.db import id_in
from campaigns.models import ConsentRecord, Enrollment, Message, Subscriber
from campaigns.reasons import Reason
from campaigns.states import (
    CHANNELS,
    Channel,
    ConsentAction,
    EnrollmentStatus,
    MessageStatus,
    SubscriberStatus,
)


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
                self.consent[(sid, channel)] = action == ConsentAction.GRANTED
        self.suppressed = suppressed_addresses(
            session,
            [s.email for s in subscribers if s.email],
            [s.phone for s in subscribers if s.phone],
        )

    def has_consent(self, subscriber: Subscriber, channel: str) -> bool:
        return self.consent.get((subscriber.id, channel), False)

    def suppression(self, subscriber: Subscriber, channel: str) -> str | None:
        address = address_for(subscriber, channel)
        if not address:
            return None
        return self.suppressed.get((channel, stored_form(channel, address)))

    def reachable(self, subscriber: Subscriber) -> list[str]:
        return [
            c for c in CHANNELS if address_for(subscriber, c) and self.has_consent(subscriber, c)
        ]


@dataclass(frozen=True)
class Stop:
    """Why a message must not go: the terminal status it takes and its reason."""

    status: MessageStatus
    reason: Reason
    text: str

    @classmethod
    def of(cls, status: MessageStatus, reason: Reason, **details: object) -> Stop:
        return cls(status, reason, reason.text(**details))

    def values(self) -> dict[str, str]:
        return {"status": self.status, "reason_code": self.reason.value, "reason": self.text}


def stop_for(subscriber: Subscriber, channel: str, facts: Facts) -> Stop | None:
    """None when a message on `channel` may go to `subscriber`; else why not."""
    if subscriber.status == SubscriberStatus.ERASED:
        return Stop.of(MessageStatus.SKIPPED, Reason.ERASED)
    if not address_for(subscriber, channel):
        what = "email address" if channel == Channel.EMAIL else "phone number"
        return Stop.of(MessageStatus.SKIPPED, Reason.NO_ADDRESS, address=what)
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return Stop.of(MessageStatus.SUPPRESSED, Reason.UNSUBSCRIBED)
    cause = facts.suppression(subscriber, channel)
    if cause is not None:
        return Stop.of(MessageStatus.SUPPRESSED, Reason.ADDRESS_SUPPRESSED, cause=cause)
    if not facts.has_consent(subscriber, channel):
        return Stop.of(MessageStatus.SKIPPED, Reason.NO_CONSENT, channel=channel)
    return None


def reachable_channels(session: Session, subscriber: Subscriber) -> list[str]:
    """The channels one person can be reached on now: an address and consent."""
    return [
        c for c in CHANNELS if address_for(subscriber, c) and has_consent(session, subscriber.id, c)
    ]


@dataclass
class Checked:
    """A batch of messages re-read with everything that decides whether each may go."""

    subscribers: dict[int, Subscriber]
    enrollments: dict[int, Enrollment]
    facts: Facts
    stops: dict[int, Stop]  # message id: why it must not go


def recheck(session: Session, messages: list[Message], channel: str) -> Checked:
    """Re-read the people and courses behind `messages` and say which must not go: an
    exited course, an unsubscribe, STOP, bounce or complaint, a revoked consent. A few
    queries for the whole batch, whatever its size."""
    subscribers = {
        s.id: s
        for s in session.scalars(
            select(Subscriber).where(
                id_in(session, Subscriber.id, {m.subscriber_id for m in messages})
            )
        )
    }
    enrollments = {
        e.id: e
        for e in session.scalars(
            select(Enrollment).where(
                id_in(session, Enrollment.id, {m.enrollment_id for m in messages})
            )
        )
    }
    facts = Facts(session, list(subscribers.values()))
    stops: dict[int, Stop] = {}
    for msg in messages:
        # The person's own state first: an unsubscribe also ends their courses, and
        # "suppressed: unsubscribed" is the cause a report should show for it.
        stop = stop_for(subscribers[msg.subscriber_id], channel, facts)
        enrollment = enrollments[msg.enrollment_id]
        if stop is None and enrollment.status == EnrollmentStatus.EXITED:
            stop = Stop.of(
                MessageStatus.SKIPPED,
                Reason.ENROLLMENT_EXITED,
                cause=enrollment.exit_reason or "no reason recorded",
            )
        if stop is not None:
            stops[msg.id] = stop
    return Checked(subscribers, enrollments, facts, stops)
