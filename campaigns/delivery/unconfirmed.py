"""Unconfirmed messages: the provider call may have happened but no answer was recorded
(invariant 2). They are never re-sent blindly: a webhook settles them
(campaigns.tracking.events), a provider that can look a message up settles them here, or
ops decides after checking the provider's console."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.delivery.work import Work
from campaigns.models import Message, is_row_id
from campaigns.reasons import Reason
from campaigns.states import MessageStatus

# What ops may say happened, and what it does to the message.
OPS_OUTCOMES = {
    "sent": (MessageStatus.SENT, Reason.SETTLED_SENT),
    "failed": (MessageStatus.FAILED, Reason.SETTLED_FAILED),
    "resend": (MessageStatus.QUEUED, Reason.SETTLED_RESEND),
}


class OpsError(ValueError):
    pass


def settle(session: Session, clock: Clock, message_id: int, outcome: str) -> Work:
    """Resolve an unconfirmed message: ops checked the provider and says what happened."""
    msg = session.get(Message, message_id, with_for_update=True) if is_row_id(message_id) else None
    if msg is None:
        raise OpsError(f"no message {message_id}")
    if msg.status != MessageStatus.UNCONFIRMED:
        raise OpsError(f"message {message_id} is {msg.status}, not unconfirmed; nothing to settle")
    if outcome not in OPS_OUTCOMES:
        raise OpsError(f"unknown outcome {outcome!r}")
    now = clock.now()
    status, reason = OPS_OUTCOMES[outcome]
    _set(msg, status, reason, now)
    msg.lease_token = None  # ops decided: a late provider answer must not undo it
    work = Work()
    if status == MessageStatus.SENT:
        msg.sent_at = now
    elif status == MessageStatus.QUEUED:
        msg.enqueued_at = now
        work.add(msg.channel, msg.id)
    return work


def settle_unconfirmed(
    session: Session, clock: Clock, lookups: dict[str, object]
) -> tuple[Work, dict[str, int]]:
    """Ask providers that can tell (the local outbox can) whether unconfirmed messages
    went out: found ones become sent, missing ones are queued again (returned, to be
    enqueued after commit), the rest wait for a webhook or ops."""
    now = clock.now()
    work = Work()
    counts = {"sent": 0, "requeued": 0, "waiting": 0}
    unconfirmed = (
        select(Message)
        .where(Message.status == MessageStatus.UNCONFIRMED)
        .with_for_update(skip_locked=True)
    )
    for msg in session.scalars(unconfirmed).all():
        provider = lookups.get(msg.channel)
        lookup = getattr(provider, "lookup", None)
        found = lookup(msg.id) if lookup else None
        if found is not None:
            msg.lease_token = None  # settled: a late answer from the first call changes nothing
        if found is True:
            _set(msg, MessageStatus.SENT, Reason.CONFIRMED_BY_LOOKUP, now)
            msg.sent_at, msg.provider = now, provider.name
            counts["sent"] += 1
        elif found is False:
            _set(msg, MessageStatus.QUEUED, Reason.NOT_RECEIVED, now)
            msg.enqueued_at = now
            counts["requeued"] += 1
            work.add(msg.channel, msg.id)
        else:
            counts["waiting"] += 1
            msg.updated_at = now
    return work, counts


def _set(msg: Message, status: MessageStatus, reason: Reason, now) -> None:
    msg.status, msg.reason_code, msg.reason, msg.updated_at = (
        status,
        reason.value,
        reason.text(),
        now,
    )
