"""The care team's queue of people who asked to be contacted: how a request is made
(from the link in a message), listed, marked and closed.

    open ──► contacted ──► closed
      └───────────────────► closed

The queue holds every request not yet closed, oldest first. It carries the real phone
number and email address, because the care team has to call or write back: they are
shown on the admin page and by `drip contacts --reveal`, and never logged (invariant 8);
the dataclass keeps them out of its repr so a stray log line cannot print them.

Each mark is also written to the events table (type `contact_handled`, provider
`admin`) with who did it and their note, since the contact_requests row has no columns
for them: the request's history stays auditable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import backlog
from campaigns.clock import Clock
from campaigns.models import ContactRequest, Enrollment, Event, Message, Subscriber, is_row_id
from campaigns.reasons import ExitReason
from campaigns.sequences.registry import Registry
from campaigns.states import ContactStatus, EnrollmentStatus, EventType
from campaigns.text import UncleanText, clean_text
from campaigns.tracking.portal import Visit

log = logging.getLogger(__name__)

# How the person would like to be reached: a call, an email or a text.
PREFERRED_CHANNELS = ("phone", "email", "sms")

MARKS = (ContactStatus.CONTACTED, ContactStatus.CLOSED)
NOT_CLOSED = (ContactStatus.OPEN, ContactStatus.CONTACTED)
HANDLED_EVENT = EventType.CONTACT_HANDLED  # never from a provider, never in funnels


class QueueError(ValueError):
    """A mark that cannot be applied; the message says why."""


@dataclass
class QueueItem:
    id: int
    status: str
    created_at: datetime
    handled_at: datetime | None
    first_name: str | None
    preferred_channel: str | None
    preferred_time: str | None
    campaign_key: str | None
    step_key: str | None
    # Personal details: shown to the care team, kept out of repr (and so out of logs).
    email: str | None = field(repr=False)
    phone: str | None = field(repr=False)
    note: str | None = field(repr=False)


def queue(
    session: Session, statuses: tuple[str, ...] = NOT_CLOSED, limit: int = 500
) -> list[QueueItem]:
    """Requests in the given statuses, oldest first (the longest wait is called first)."""
    rows = session.execute(
        select(ContactRequest, Subscriber)
        .join(Subscriber, ContactRequest.subscriber_id == Subscriber.id)
        .where(ContactRequest.status.in_(statuses))
        .order_by(ContactRequest.created_at, ContactRequest.id)
        .limit(limit)
    ).all()
    return [
        QueueItem(
            id=req.id,
            status=req.status,
            created_at=req.created_at,
            handled_at=req.handled_at,
            first_name=sub.first_name,
            preferred_channel=req.preferred_channel,
            preferred_time=req.preferred_time,
            campaign_key=req.campaign_key,
            step_key=req.step_key,
            email=sub.email,
            phone=sub.phone,
            note=req.note,
        )
        for req, sub in rows
    ]


def mark(
    session: Session,
    clock: Clock,
    request_id: int | str,
    status: str,
    by: str,
    note: str | None = None,
) -> ContactRequest:
    """Mark a request contacted or closed. Marking it with the status it already has is
    a no-op (a double-clicked button); a closed request stays closed."""
    if status not in MARKS:
        raise QueueError(f"status must be one of {', '.join(MARKS)}, not {status!r}")
    try:
        rid = int(request_id)
    except (TypeError, ValueError):
        raise QueueError(f"contact request id must be a whole number, not {request_id!r}") from None
    by = (by or "").strip()
    if not by:
        raise QueueError("say who handled the request (by)")
    try:
        clean_text(note or "", "note", multiline=True)
    except UncleanText as exc:
        raise QueueError(str(exc)) from None
    request = session.get(ContactRequest, rid, with_for_update=True) if is_row_id(rid) else None
    if request is None:
        raise QueueError(f"no contact request {rid}")
    if request.status == status:
        return request
    if request.status == ContactStatus.CLOSED:
        raise QueueError(f"contact request {rid} is already closed")
    now = clock.now()
    previous = request.status
    request.status = status
    request.handled_at = now
    session.add(
        Event(
            message_id=request.message_id,
            subscriber_id=request.subscriber_id,
            type=HANDLED_EVENT,
            provider="admin",
            occurred_at=now,
            received_at=now,
            payload={
                "request_id": rid,
                "from": previous,
                "to": status,
                "by": by[:80],
                "note": (note or "").strip()[:2000] or None,
            },
        )
    )
    _resume_course(session, request, now)
    session.flush()
    log.info("contact request %s: %s -> %s by %s", rid, previous, status, by[:80])
    return request


def _asked_again(
    request: ContactRequest, now, channel: str, time: str | None, note: str | None
) -> str:
    """The request's note with this ask appended, dated, naming what it changed."""
    changes = []
    if channel != request.preferred_channel:
        changes.append(f"prefers {channel} (was {request.preferred_channel})")
    if time and time != request.preferred_time:
        changes.append(f"best time {time} (was {request.preferred_time or 'not given'})")
    line = (
        f"[asked again {now:%Y-%m-%d %H:%M} UTC"
        + (f"; {'; '.join(changes)}" if changes else "")
        + "]"
    )
    if note:
        line += f" {note}"
    return f"{request.note}\n{line}" if request.note else line


def _resume_course(session: Session, request: ContactRequest, now) -> None:
    """A course paused because the person asked for a call resumes once the care team has
    handled the request; one the person left, or ops paused, stays as it is."""
    if request.message_id is None:
        return
    message = session.get(Message, request.message_id)
    enrollment = session.get(Enrollment, message.enrollment_id) if message else None
    if (
        enrollment is not None
        and enrollment.status == EnrollmentStatus.PAUSED
        and enrollment.exit_reason == ExitReason.CONTACT_REQUESTED
    ):
        enrollment.status, enrollment.exit_reason, enrollment.updated_at = (
            EnrollmentStatus.ACTIVE,
            None,
            now,
        )


def waiting(session: Session) -> backlog.Waiting:
    """Requests nobody has handled yet: how many, and since when the oldest has waited."""
    return backlog.waiting(
        session, ContactRequest.created_at, ContactRequest.status == ContactStatus.OPEN
    )


def request_contact(
    session: Session,
    clock: Clock,
    registry: Registry,
    visit: Visit,
    *,
    preferred_channel: str,
    preferred_time: str | None,
    note: str | None,
) -> ContactRequest:
    """Record an ask to be contacted. One open request per person, so the team calls
    once; asking again adds to it and loses nothing: the newest preferences are the
    request's own, and every earlier note and preferred time stays in its note, dated.
    The campaign decides what happens to the sequence (continue, pause or exit)."""
    if preferred_channel not in PREFERRED_CHANNELS:
        raise ValueError(f"preferred_channel must be one of {', '.join(PREFERRED_CHANNELS)}")
    # UncleanText (a ValueError, as above) for a NUL or other control character.
    clean_text(preferred_time or "", "preferred_time")
    clean_text(note or "", "note", multiline=True)
    now = clock.now()
    sub, msg = visit.subscriber, visit.message
    request = session.scalar(
        select(ContactRequest).where(
            ContactRequest.subscriber_id == sub.id, ContactRequest.status == ContactStatus.OPEN
        )
    )
    new_time = (preferred_time or "").strip()[:100] or None
    new_note = (note or "").strip()[:2000] or None
    if request is None:
        request = ContactRequest(subscriber_id=sub.id, status=ContactStatus.OPEN, created_at=now)
        session.add(request)
        request.note = new_note
    else:
        request.note = _asked_again(request, now, preferred_channel, new_time, new_note)
    request.message_id = msg.id
    request.campaign_key, request.step_key = msg.campaign_key, msg.step_key
    request.preferred_channel = preferred_channel
    request.preferred_time = new_time or request.preferred_time
    session.add(
        Event(
            message_id=msg.id,
            subscriber_id=sub.id,
            type=EventType.CONTACT_REQUESTED,
            provider="tracking",
            occurred_at=now,
            received_at=now,
            payload={"preferred_channel": preferred_channel},
        )
    )
    campaign = registry.campaigns().get(msg.campaign_key)
    behaviour = campaign.on_contact_request if campaign else "continue"
    if behaviour != "continue":
        enrollment = session.get(Enrollment, msg.enrollment_id)
        if enrollment.status == EnrollmentStatus.ACTIVE:
            enrollment.status = (
                EnrollmentStatus.PAUSED if behaviour == "pause" else EnrollmentStatus.EXITED
            )
            enrollment.exit_reason = ExitReason.CONTACT_REQUESTED
            enrollment.updated_at = now
    session.flush()
    return request
