"""Texts a person wrote that are neither a keyword nor an opt-out: nothing a patient writes
is lost (invariant 12). Each waits here, oldest first, until someone of the care team
answers it (done) or reads it as a wish to stop (treat as opt-out).

    open ──► done
      └────► opted_out (SMS consent revoked, or the unknown number suppressed)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import backlog
from campaigns.audience.opt_outs import unsubscribe
from campaigns.audience.suppression import Cause, suppress
from campaigns.clock import Clock
from campaigns.models import Event, InboxItem, Message, Subscriber
from campaigns.states import Channel, InboxStatus

# A row id larger than the INTEGER id column holds is no row: refused before a query
# (PostgreSQL would refuse the comparison itself).
MAX_ID = 2**31 - 1
ACTIONS = ("done", "opt_out")


class InboxError(ValueError):
    """A request about the inbox that cannot be done; the message says why."""


def add(
    session: Session, event: Event, phone: str, body: str, question_message_id: int | None = None
) -> InboxItem:
    item = InboxItem(
        event_id=event.id,
        subscriber_id=event.subscriber_id,
        phone=phone,
        # Whatever a phone sends, the column takes: control characters (NUL, which
        # PostgreSQL text refuses) go; the provider's payload keeps the text as it came.
        body="".join(c for c in body if c.isprintable() or c in "\n\t")[:2000],
        status=InboxStatus.OPEN,
        created_at=event.received_at,
        question_message_id=question_message_id,
    )
    session.add(item)
    session.flush()
    return item


def waiting(session: Session) -> backlog.Waiting:
    """How many texts wait for a person, and since when the oldest has."""
    return backlog.waiting(session, InboxItem.created_at, InboxItem.status == InboxStatus.OPEN)


@dataclass
class Row:
    id: int
    created_at: datetime
    phone: str
    first_name: str | None
    body: str
    status: str
    handled_at: datetime | None
    handled_by: str | None
    # The check-in question the text may answer: "hip_and_back/pain_check_end", and when
    # it went out; None when no question went out lately.
    question: str | None = None
    question_sent_at: datetime | None = None


def listing(session: Session, status: str | None = InboxStatus.OPEN, limit: int = 200) -> list[Row]:
    """Texts in one status (all when None), oldest first, with who wrote them."""
    query = (
        select(InboxItem, Subscriber.first_name, Message.campaign_key, Message.step_key)
        .add_columns(Message.sent_at)
        .outerjoin(Subscriber, Subscriber.id == InboxItem.subscriber_id)
        .outerjoin(Message, Message.id == InboxItem.question_message_id)
        .order_by(InboxItem.created_at, InboxItem.id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(InboxItem.status == status)
    return [
        Row(
            i.id,
            i.created_at,
            i.phone,
            name,
            i.body,
            i.status,
            i.handled_at,
            i.handled_by,
            f"{campaign}/{step}" if campaign else None,
            sent_at,
        )
        for i, name, campaign, step, sent_at in session.execute(query)
    ]


def handle(session: Session, clock: Clock, item_id: int | str, action: str, by: str) -> InboxItem:
    """Mark a text done, or treat it as an opt-out. Repeating the same action is a no-op
    (a double-clicked button); a handled text is not handled again another way."""
    if action not in ACTIONS:
        raise InboxError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    try:
        iid = int(item_id)
    except (TypeError, ValueError):
        raise InboxError(f"inbox id must be a whole number, not {item_id!r}") from None
    by = (by or "").strip()
    if not by:
        raise InboxError("say who handled the text (by)")
    item = session.get(InboxItem, iid, with_for_update=True) if 0 < iid <= MAX_ID else None
    if item is None:
        raise InboxError(f"no text {item_id} in the inbox")
    target = InboxStatus.DONE if action == "done" else InboxStatus.OPTED_OUT
    if item.status == target:
        return item
    if item.status != InboxStatus.OPEN:
        raise InboxError(f"text {iid} was already handled ({item.status})")
    if target == InboxStatus.OPTED_OUT:
        evidence = {"inbox_item": iid, "by": by[:80]}
        subscriber = session.get(Subscriber, item.subscriber_id) if item.subscriber_id else None
        if subscriber is not None and subscriber.phone == item.phone:
            unsubscribe(
                session,
                clock,
                subscriber,
                channels=(Channel.SMS,),
                source="inbox",
                evidence=evidence,
            )
        else:
            suppress(session, clock, Channel.SMS, item.phone, Cause.STOP, "inbox")
    item.status, item.handled_at, item.handled_by = target, clock.now(), by[:80]
    session.flush()
    return item
