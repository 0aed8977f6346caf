"""Consent: a history of append-only records per subscriber and channel; the latest
record decides."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import ConsentRecord, Subscriber
from campaigns.states import ConsentAction


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
    return latest == ConsentAction.GRANTED
