"""The reaper: work the broker lost, and sends that died half-way.

Which queued messages are lost is decided against what the broker holds right now
(`Held`, read by the caller just before the pass), never by waiting for a queue to empty:

    queued row, enqueued more than DISPATCH_GRACE ago
     ├── its id is in a task waiting on a queue ........ a backlog: left alone, so a long
     │                                                   queue is never multiplied
     ├── its id is in a task a worker took (unacked) ... lost only if the row was not
     │                                                   touched for `requeue_after`: a live
     │                                                   send task marks the rest of its
     │                                                   batch fresh before every chunk, so
     │                                                   a stale one belongs to a dead worker
     └── no task holds it .............................. lost (a broker restart without
                                                         persistence, a task that gave up
                                                         on its database retries, a publish
                                                         that failed after the commit)

Enqueuing a message twice is harmless (the send task leases rows with a conditional
UPDATE, so a second task finds nothing to send); the rules above only keep the number of
such no-op tasks small. Where the transport cannot show what workers took (the embedded
file-system broker hands a task out and forgets it), rows no queued task holds are lost
after `requeue_after`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.delivery.work import Work
from campaigns.models import ChannelPause, Message
from campaigns.reasons import Reason
from campaigns.sequences.timing import Policy
from campaigns.states import MessageStatus

# Between a claim's commit and its task reaching the broker: rows younger than this are
# never judged lost, whatever the broker shows.
DISPATCH_GRACE = timedelta(seconds=10)


@dataclass(frozen=True)
class Held:
    """Message ids in the broker's send tasks: `waiting` on a queue, `taken` by a worker
    and not yet acknowledged (None when the transport cannot show them)."""

    waiting: frozenset[int] = frozenset()
    taken: frozenset[int] | None = frozenset()


@dataclass
class Reaped:
    requeued: Work
    unconfirmed: list[int] = field(default_factory=list)
    from_dead_workers: int = 0  # of requeued: held by a task a worker took and never finished


def reap(
    session: Session,
    clock: Clock,
    policy: Policy,
    held: Held | None = Held(),
) -> Reaped:
    """Enqueue lost work again and mark sends whose lease ran out as `unconfirmed`.

    `held` None means the broker could not be read: nothing is requeued this pass. A
    message still `sending` after its lease may have reached the provider, so it becomes
    `unconfirmed`, to be looked up at the provider (campaigns.delivery.unconfirmed) or
    settled by a webhook or ops, never re-sent blindly.
    """
    now = clock.now()
    requeued, from_dead = Work(), 0
    if held is not None:
        paused = set(session.scalars(select(ChannelPause.channel)))
        query = select(Message.id, Message.channel, Message.enqueued_at).where(
            Message.status == MessageStatus.QUEUED, Message.enqueued_at < now - DISPATCH_GRACE
        )
        if paused:
            query = query.where(Message.channel.not_in(paused))
        stale_after = now - policy.requeue_after
        for message_id, channel, enqueued_at in session.execute(query).all():
            if message_id in held.waiting:
                continue
            taken = held.taken is not None and message_id in held.taken
            if (taken or held.taken is None) and enqueued_at >= stale_after:
                continue
            moved = session.execute(
                update(Message)
                .where(
                    Message.id == message_id,
                    Message.status == MessageStatus.QUEUED,
                    Message.enqueued_at == enqueued_at,  # a send task touched it meanwhile
                )
                .values(enqueued_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if moved:
                requeued.add(channel, message_id)
                from_dead += taken
    expired = session.scalars(
        select(Message.id).where(Message.status == MessageStatus.SENDING, Message.lease_until < now)
    ).all()
    marked = []
    for message_id in expired:
        if session.execute(
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
            .execution_options(synchronize_session=False)
        ).rowcount:
            marked.append(message_id)
    return Reaped(requeued=requeued, unconfirmed=marked, from_dead_workers=from_dead)
