"""What sign-up keeps, and for how long: a web sign-up never confirmed is removed after
the retention period, so the service holds no addresses of people who never agreed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import (
    ConsentRecord,
    ContactRequest,
    Enrollment,
    Event,
    InboxItem,
    Message,
    Subscriber,
)
from campaigns.states import SubscriberStatus


def remove_unconfirmed(session: Session, clock: Clock, older_than: timedelta) -> int:
    """Delete pending sign-ups older than `older_than` that left no other trace (no
    consent, course, message, event, call request or text); the number removed. A
    pending record that holds anything else is kept: that history is not ours to drop."""
    cutoff = clock.now() - older_than
    traces = [
        exists().where(table.subscriber_id == Subscriber.id)
        for table in (ConsentRecord, Enrollment, Message, Event, ContactRequest, InboxItem)
    ]
    stale = select(Subscriber.id).where(
        Subscriber.status == SubscriberStatus.PENDING,
        # Counted from the latest ask, by mail or by text: a YES still awaited keeps it.
        Subscriber.created_at < cutoff,
        or_(
            Subscriber.confirmation_requested_at.is_(None),
            Subscriber.confirmation_requested_at < cutoff,
        ),
        or_(
            Subscriber.sms_confirmation_requested_at.is_(None),
            Subscriber.sms_confirmation_requested_at < cutoff,
        ),
        *[~t for t in traces],
    )
    ids = list(session.scalars(stale))
    if ids:
        session.execute(delete(Subscriber).where(Subscriber.id.in_(ids)))
    return len(ids)
