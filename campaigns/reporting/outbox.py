"""Outbox rows for ops to look at by hand: `drip outbox list` shows the unconfirmed
messages (or any other status) that a person has to decide with `drip outbox settle`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Message


def latest(session: Session, limit: int, status: str | None = None) -> list[Message]:
    """Up to `limit` messages, the most recently changed first; in one status, the longest
    waiting first, since that is the one to act on."""
    query = select(Message)
    if status:
        query = query.where(Message.status == status).order_by(Message.updated_at, Message.id)
    else:
        query = query.order_by(Message.updated_at.desc(), Message.id.desc())
    return list(session.scalars(query.limit(limit)))


def messages_in(session: Session, status: str, limit: int) -> list[Message]:
    """Up to `limit` messages in `status`, oldest first."""
    return list(
        session.scalars(
            select(Message).where(Message.status == status).order_by(Message.id).limit(limit)
        )
    )
