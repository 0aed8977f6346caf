"""Suppression: per address and channel, outliving the subscriber row, so a bounced
address stays suppressed even if it signs up again. Some opt-outs are the person's to
take back; bounces, complaints and invalid numbers are not."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import Suppression
from campaigns.states import Channel


class Cause(StrEnum):
    """Why an address is suppressed (suppressions.reason). Providers may add a detail
    after the cause ("unsubscribed at carrier (21610)"); other causes a provider reports
    (an invalid number) are kept in its own words."""

    UNSUBSCRIBED = "unsubscribed"  # the person: a link, the preference page, their carrier
    STOP = "stop"  # the person: a STOP keyword
    BOUNCE = "bounce"
    DROPPED = "dropped"
    COMPLAINT = "complaint"


# The causes that are the person's own choice, and so theirs to take back.
WAIVABLE = (Cause.UNSUBSCRIBED, Cause.STOP)


def suppression_for(session: Session, channel: str, address: str | None) -> Suppression | None:
    if not address:
        return None
    key = address.lower() if channel == Channel.EMAIL else address
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
        address=address.lower() if channel == Channel.EMAIL else address,
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


def waivable(reason: str) -> bool:
    """Opt-outs the person may take back (unsubscribe, STOP, the carrier's 21610);
    bounces, complaints and invalid numbers are not theirs to lift."""
    return reason.startswith(WAIVABLE)


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
