"""The care team's queue of people who asked to be contacted: how a request is made
(from the link in a message), listed, marked and closed.

    open ──► contacted ──► closed
      ▲ └───────────────────► closed
      └──── reopen ◄──────────┘ (from contacted or closed)

The queue holds every request not yet closed, oldest open first; `search` filters it
(status, assignee, preferred channel, overdue) and pages it, and judges each open
request's age against the response-time target. It carries the real phone
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
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from campaigns import backlog
from campaigns.clock import Clock
from campaigns.models import (
    ContactRequest,
    ContactRequestNote,
    Enrollment,
    Event,
    Message,
    Subscriber,
    is_row_id,
)
from campaigns.reasons import ExitReason
from campaigns.sequences.registry import Registry
from campaigns.staff import audit
from campaigns.states import ContactStatus, EnrollmentStatus, EventType
from campaigns.text import UncleanText, clean_text
from campaigns.tracking.portal import Visit

log = logging.getLogger(__name__)

# How the person would like to be reached: a call, an email or a text.
PREFERRED_CHANNELS = ("phone", "email", "sms")

MARKS = (ContactStatus.CONTACTED, ContactStatus.CLOSED)
STAFF_STATUSES = (ContactStatus.CONTACTED, ContactStatus.CLOSED, ContactStatus.OPEN)  # + reopen
NOT_CLOSED = (ContactStatus.OPEN, ContactStatus.CONTACTED)
HANDLED_EVENT = EventType.CONTACT_HANDLED  # never from a provider, never in funnels


class QueueError(ValueError):
    """A mark that cannot be applied; the message says why."""


class NoSuchRequest(QueueError):
    """The id names no contact request (a page answers 404, not 400)."""


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
    callback_phone: str | None = field(default=None, repr=False)  # typed on the form
    subscriber_id: int | None = None
    assigned_to: str | None = None
    assigned_at: datetime | None = None
    last_note: ContactRequestNote | None = field(default=None, repr=False)
    # Against the response-time target (open requests only): OVERDUE, DUE_SOON or None.
    urgency: str | None = None


def _item(req: ContactRequest, sub: Subscriber) -> QueueItem:
    return QueueItem(
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
        callback_phone=req.callback_phone,
        subscriber_id=sub.id,
        assigned_to=req.assigned_to,
        assigned_at=req.assigned_at,
    )


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
    return [_item(req, sub) for req, sub in rows]


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
        raise NoSuchRequest(f"no contact request {rid}")
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
    callback_phone: str | None = None,
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
    # A number typed on the form (E.164, contact_choices): only the care team calls it.
    request.callback_phone = callback_phone or request.callback_phone
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


# ---------------------------------------------------------------- the worklist

OVERDUE, DUE_SOON = "overdue", "due_soon"
# "Due soon" is the last quarter of the target: time enough to pick it up before it is late.
DUE_SOON_SHARE = 0.75
# Status filters: "waiting" (open or contacted, i.e. not closed) is the default view.
WAITING = "waiting"
STATUS_FILTERS = {
    WAITING: NOT_CLOSED,
    ContactStatus.OPEN.value: (ContactStatus.OPEN,),
    ContactStatus.CONTACTED.value: (ContactStatus.CONTACTED,),
    ContactStatus.CLOSED.value: (ContactStatus.CLOSED,),
    "all": tuple(ContactStatus),
}
ANYONE, UNASSIGNED = "anyone", "unassigned"
NAME_MAX = 80
PAGE_SIZE = 50
PAGE_MAX = 10_000  # an offset past this is a typo, not a page anyone reads


@dataclass(frozen=True)
class Filters:
    status: str = WAITING
    assignee: str = ANYONE  # ANYONE, UNASSIGNED or a staff member's name
    channel: str | None = None  # one of PREFERRED_CHANNELS
    overdue: bool = False


@dataclass
class Page:
    items: list[QueueItem]
    total: int
    number: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


def staff_name(value: str | None, what: str = "name") -> str:
    """A staff member's name as given (assignee, note author): one line, not empty."""
    name = (value or "").strip()
    if not name:
        raise QueueError(f"give the {what}")
    try:
        return clean_text(name, what, max_len=NAME_MAX)
    except UncleanText as exc:
        raise QueueError(str(exc)) from None


def filters(
    status: str | None = None,
    assignee: str | None = None,
    channel: str | None = None,
    overdue: bool = False,
) -> Filters:
    """Filters from outside (a query string, CLI options): an unknown value is refused."""
    status = status or WAITING
    if status not in STATUS_FILTERS:
        raise QueueError(f"status must be one of {', '.join(STATUS_FILTERS)}, not {status!r}")
    if channel and channel not in PREFERRED_CHANNELS:
        raise QueueError(f"channel must be one of {', '.join(PREFERRED_CHANNELS)}, not {channel!r}")
    assignee = (assignee or "").strip() or ANYONE
    if assignee not in (ANYONE, UNASSIGNED):
        assignee = staff_name(assignee, "assignee")
    return Filters(status, assignee, channel or None, overdue)


def urgency(status: str, created_at: datetime, now: datetime, target: timedelta) -> str | None:
    """How an open request's wait compares with the response-time target; a request
    someone has contacted or closed is answered, so it is never late."""
    if status != ContactStatus.OPEN:
        return None
    waited = now - created_at
    if waited >= target:
        return OVERDUE
    if waited >= target * DUE_SOON_SHARE:
        return DUE_SOON
    return None


def search(
    session: Session,
    now: datetime,
    target: timedelta,
    wanted: Filters = Filters(),  # frozen: one shared default is safe
    number: int = 1,
    size: int = PAGE_SIZE,
) -> Page:
    """One page of the queue: open requests first, each group oldest first, with each
    one's assignee, last staff note and urgency."""
    if not 1 <= number <= PAGE_MAX:
        raise QueueError(f"page must be a number from 1 to {PAGE_MAX}")
    query = (
        select(ContactRequest, Subscriber)
        .join(Subscriber, ContactRequest.subscriber_id == Subscriber.id)
        .where(ContactRequest.status.in_(STATUS_FILTERS[wanted.status]))
    )
    if wanted.assignee == UNASSIGNED:
        query = query.where(ContactRequest.assigned_to.is_(None))
    elif wanted.assignee != ANYONE:
        query = query.where(ContactRequest.assigned_to == wanted.assignee)
    if wanted.channel:
        query = query.where(ContactRequest.preferred_channel == wanted.channel)
    if wanted.overdue:
        query = query.where(
            ContactRequest.status == ContactStatus.OPEN, ContactRequest.created_at <= now - target
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    order = case(
        (ContactRequest.status == ContactStatus.OPEN, 0),
        (ContactRequest.status == ContactStatus.CONTACTED, 1),
        else_=2,
    )
    rows = session.execute(
        query.order_by(order, ContactRequest.created_at, ContactRequest.id)
        .offset((number - 1) * size)
        .limit(size)
    ).all()
    items = [_item(req, sub) for req, sub in rows]
    last = _last_notes(session, [i.id for i in items])
    for item in items:
        item.last_note = last.get(item.id)
        item.urgency = urgency(item.status, item.created_at, now, target)
    return Page(items, total, number, size)


def _last_notes(session: Session, request_ids: list[int]) -> dict[int, ContactRequestNote]:
    if not request_ids:
        return {}
    newest = (
        select(func.max(ContactRequestNote.id))
        .where(ContactRequestNote.request_id.in_(request_ids))
        .group_by(ContactRequestNote.request_id)
    )
    notes = session.scalars(select(ContactRequestNote).where(ContactRequestNote.id.in_(newest)))
    return {n.request_id: n for n in notes}


@dataclass
class Detail:
    item: QueueItem
    notes: list[ContactRequestNote]  # oldest first: a thread reads top to bottom
    others: list[QueueItem]  # the same person's other requests, newest first


def parse_id(value: int | str) -> int:
    try:
        rid = int(value)
    except (TypeError, ValueError):
        shown = str(value)[:40]
        raise QueueError(f"contact request id must be a whole number, not {shown!r}") from None
    if not is_row_id(rid):
        raise NoSuchRequest(f"no contact request {rid}")
    return rid


def get(session: Session, value: int | str, *, lock: bool = False) -> ContactRequest:
    rid = parse_id(value)
    request = session.get(ContactRequest, rid, with_for_update=lock)
    if request is None:
        raise NoSuchRequest(f"no contact request {rid}")
    return request


def detail(session: Session, value: int | str, now: datetime, target: timedelta) -> Detail:
    request = get(session, value)
    sub = session.get(Subscriber, request.subscriber_id)
    item = _item(request, sub)
    item.urgency = urgency(item.status, item.created_at, now, target)
    notes = list(
        session.scalars(
            select(ContactRequestNote)
            .where(ContactRequestNote.request_id == request.id)
            .order_by(ContactRequestNote.created_at, ContactRequestNote.id)
        )
    )
    others = session.scalars(
        select(ContactRequest)
        .where(ContactRequest.subscriber_id == sub.id, ContactRequest.id != request.id)
        .order_by(ContactRequest.created_at.desc(), ContactRequest.id.desc())
    )
    return Detail(item, notes, [_item(o, sub) for o in others])


def set_status(
    session: Session,
    clock: Clock,
    actor: audit.Actor,
    value: int | str,
    status: str,
    note: str | None = None,
) -> ContactRequest:
    """A staff member marks a request contacted or closed (mark(), which resumes a paused
    course), or reopens it; audited in the same transaction. Setting the status it already
    has changes nothing and records nothing."""
    if status not in STAFF_STATUSES:
        raise QueueError(f"status must be one of {', '.join(STAFF_STATUSES)}, not {status!r}")
    request = get(session, value, lock=True)
    before = request.status
    if status != ContactStatus.OPEN:
        request = mark(session, clock, request.id, status, by=actor.by, note=note)
    elif before != ContactStatus.OPEN:
        other = session.scalar(
            select(ContactRequest.id).where(
                ContactRequest.subscriber_id == request.subscriber_id,
                ContactRequest.status == ContactStatus.OPEN,
                ContactRequest.id != request.id,
            )
        )
        if other is not None:
            # request_contact keeps one open request per person; so does reopening.
            raise QueueError(f"this person already has open request {other}: use that one")
        request.status = ContactStatus.OPEN
        session.flush()
        log.info("contact request %s: %s -> open by %s", request.id, before, actor.by)
    if request.status != before:
        audit.record(
            session,
            clock,
            actor,
            "contact_request.status",
            "contact_request",
            request.id,
            before={"status": before},
            after={"status": request.status},
        )
    return request
