"""The reaper: work the broker lost, and sends that died half-way."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.delivery.work import Work
from campaigns.models import ChannelPause, Message
from campaigns.reasons import Reason
from campaigns.sequences.timing import Policy
from campaigns.states import MessageStatus


@dataclass
class Reaped:
    requeued: Work
    unconfirmed: list[int]


def reap(
    session: Session, clock: Clock, policy: Policy, busy: frozenset[str] = frozenset()
) -> Reaped:
    """Find work the broker lost and sends that died half-way.

    A queued message whose task never started is enqueued again (the send task is
    idempotent, so a late duplicate does nothing). Channels that are paused, or whose
    broker queue still holds tasks (`busy`: a long backlog is not lost work), are left
    alone, so a backlog is never multiplied. A message still `sending` after its lease may
    have reached the provider, so it becomes `unconfirmed`: settled by a webhook, a
    provider look-up or ops, never re-sent blindly.
    """
    now = clock.now()
    skip = set(busy) | set(session.scalars(select(ChannelPause.channel)))
    stale_query = select(Message.id, Message.channel).where(
        Message.status == MessageStatus.QUEUED, Message.enqueued_at < now - policy.requeue_after
    )
    if skip:
        stale_query = stale_query.where(Message.channel.not_in(skip))
    stale = session.execute(stale_query).all()
    requeued = Work()
    for message_id, channel in stale:
        session.execute(
            update(Message)
            .where(Message.id == message_id, Message.status == MessageStatus.QUEUED)
            .values(enqueued_at=now, updated_at=now)
        )
        requeued.add(channel, message_id)
    expired = session.scalars(
        select(Message.id).where(Message.status == MessageStatus.SENDING, Message.lease_until < now)
    ).all()
    for message_id in expired:
        session.execute(
            update(Message)
            .where(
                Message.id == message_id,
                Message.status == MessageStatus.SENDING,
                Message.lease_until < now,
            )
            .values(
                # The lease token stays: a definite answer arriving late (a 429, a 21610)
                # still settles the message; webhooks clear it when they settle it first.
                status=MessageStatus.UNCONFIRMED,
                updated_at=now,
                **Reason.LEASE_EXPIRED.values(),
            )
        )
    return Reaped(requeued=requeued, unconfirmed=list(expired))
