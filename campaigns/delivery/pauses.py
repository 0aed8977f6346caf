"""Pausing a whole channel. A provider that says our credentials or sender are wrong
will say it for every message; failing them one by one would burn the queue, so the
channel stops, ops is told, and the messages wait until someone resumes it."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.delivery.work import Work
from campaigns.models import ChannelPause, Message
from campaigns.states import MessageStatus
from campaigns.text import clean_text


def paused(session: Session, channel: str) -> ChannelPause | None:
    return session.get(ChannelPause, channel)


def pause(session: Session, clock: Clock, channel: str, reason: str, by: str) -> None:
    """UncleanText (nothing paused) for a reason holding a control character."""
    clean_text(reason, "reason", multiline=True)
    if paused(session, channel) is None:
        session.add(
            ChannelPause(
                channel=channel, reason=reason[:2000], paused_by=by, created_at=clock.now()
            )
        )
        session.flush()


def resume(session: Session, clock: Clock, channel: str) -> Work:
    """Lift the pause and hand every waiting message of the channel back to the workers."""
    row = paused(session, channel)
    if row is not None:
        session.delete(row)
    now = clock.now()
    ids = session.scalars(
        select(Message.id).where(Message.channel == channel, Message.status == MessageStatus.QUEUED)
    ).all()
    session.execute(
        update(Message).where(Message.id.in_(ids)).values(enqueued_at=now, updated_at=now)
    )
    work = Work()
    for message_id in ids:
        work.add(channel, message_id)
    return work


def all_paused(session: Session) -> list[ChannelPause]:
    return list(session.scalars(select(ChannelPause)))
