"""Ops actions on single messages, with the rules that keep them safe."""

from __future__ import annotations

from sqlalchemy.orm import Session

from campaigns import states
from campaigns.clock import Clock
from campaigns.models import Message
from campaigns.delivery.claiming import Work


class OpsError(ValueError):
    pass


def settle(session: Session, clock: Clock, message_id: int, outcome: str) -> Work:
    """Resolve an unconfirmed message: ops checked the provider and says what happened."""
    msg = session.get(Message, message_id, with_for_update=True)
    if msg is None:
        raise OpsError(f"no message {message_id}")
    if msg.status != states.UNCONFIRMED:
        raise OpsError(f"message {message_id} is {msg.status}, not unconfirmed; nothing to settle")
    now = clock.now()
    msg.updated_at = now
    msg.lease_token = None  # ops decided: a late provider answer must not undo it
    work = Work()
    if outcome == "sent":
        msg.status, msg.reason, msg.sent_at = states.SENT, "settled by ops: provider has it", now
    elif outcome == "failed":
        msg.status, msg.reason = states.FAILED, "settled by ops: provider never sent it; not resending"
    elif outcome == "resend":
        msg.status, msg.reason, msg.enqueued_at = states.QUEUED, "settled by ops: resending", now
        work.add(msg.channel, msg.id)
    else:
        raise OpsError(f"unknown outcome {outcome!r}")
    return work
