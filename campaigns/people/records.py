"""Everything the database holds on one person, table by table: the one answer that the
person page, the export and the erasure all read, so none of them can miss a table the
others see.

Rows belong to a person by `subscriber_id`, and also where they name the person without
it: events of their messages, texts from their phone before the number was theirs (an
inbound event and its inbox item), and the suppressions of their addresses (plain, or
hashed after an erasure). The audit entries of staff actions on them are theirs too; an
entry holds ids only (campaigns.staff.audit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Text, cast, or_, select
from sqlalchemy.orm import Session

from campaigns.audience.suppression import hashed, stored_form
from campaigns.db import id_in
from campaigns.models import (
    Answer,
    AuditEntry,
    CapHold,
    ConsentRecord,
    ContactRequest,
    ContactRequestNote,
    Enrollment,
    Event,
    InboxItem,
    Message,
    PersonEvent,
    Subscriber,
    Suppression,
)
from campaigns.states import Channel, EventType

# What a staff action or an erasure on a person records as its target (campaigns.staff.audit).
TARGET = "person"


@dataclass
class Records:
    subscriber: Subscriber
    consent_records: list[ConsentRecord] = field(default_factory=list)
    enrollments: list[Enrollment] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    contact_requests: list[ContactRequest] = field(default_factory=list)
    # The care team's notes on their requests: about them, so theirs to read and to erase.
    contact_request_notes: list[ContactRequestNote] = field(default_factory=list)
    inbox_items: list[InboxItem] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    person_events: list[PersonEvent] = field(default_factory=list)
    cap_holds: list[CapHold] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)
    audit_log: list[AuditEntry] = field(default_factory=list)

    def tables(self) -> dict[str, list]:
        """Table name → rows, the subscriber's own row first."""
        return {
            "subscribers": [self.subscriber],
            "consent_records": self.consent_records,
            "enrollments": self.enrollments,
            "messages": self.messages,
            "events": self.events,
            "contact_requests": self.contact_requests,
            "contact_request_notes": self.contact_request_notes,
            "inbox_items": self.inbox_items,
            "answers": self.answers,
            "person_events": self.person_events,
            "cap_holds": self.cap_holds,
            "suppressions": self.suppressions,
            "audit_log": self.audit_log,
        }


def _own(session: Session, model, sid: int, order) -> list:
    return list(session.scalars(select(model).where(model.subscriber_id == sid).order_by(*order)))


def records_for(session: Session, subscriber: Subscriber) -> Records:
    sid = subscriber.id
    rec = Records(subscriber)
    rec.consent_records = _own(
        session, ConsentRecord, sid, (ConsentRecord.created_at, ConsentRecord.id)
    )
    rec.enrollments = _own(session, Enrollment, sid, (Enrollment.created_at, Enrollment.id))
    rec.messages = _own(session, Message, sid, (Message.due_at, Message.id))
    rec.contact_requests = _own(session, ContactRequest, sid, (ContactRequest.created_at,))
    if rec.contact_requests:
        rec.contact_request_notes = list(
            session.scalars(
                select(ContactRequestNote)
                .where(
                    id_in(
                        session, ContactRequestNote.request_id, [c.id for c in rec.contact_requests]
                    )
                )
                .order_by(ContactRequestNote.created_at, ContactRequestNote.id)
            )
        )
    rec.answers = _own(session, Answer, sid, (Answer.answered_at, Answer.id))
    rec.person_events = _own(session, PersonEvent, sid, (PersonEvent.occurred_at,))
    rec.cap_holds = _own(session, CapHold, sid, (CapHold.held_at, CapHold.id))
    inbox_match = InboxItem.subscriber_id == sid
    if subscriber.phone:
        inbox_match = or_(inbox_match, InboxItem.phone == subscriber.phone)
    rec.inbox_items = list(
        session.scalars(select(InboxItem).where(inbox_match).order_by(InboxItem.id))
    )
    # Their events: by person, by message, and the texts their phone sent before it was
    # theirs (stored with no person: an unknown number's STOP, JOIN or question).
    match = [Event.subscriber_id == sid]
    if rec.messages:
        match.append(id_in(session, Event.message_id, [m.id for m in rec.messages]))
    linked = {i.event_id for i in rec.inbox_items} | {a.event_id for a in rec.answers if a.event_id}
    if linked:
        match.append(id_in(session, Event.id, linked))
    if subscriber.phone:
        match.append(
            (Event.subscriber_id.is_(None))
            & (Event.type == EventType.INBOUND)
            & cast(Event.payload, Text).contains(subscriber.phone)
        )
    rec.events = list(
        session.scalars(select(Event).where(or_(*match)).order_by(Event.occurred_at, Event.id))
    )
    forms = []
    for channel, address in ((Channel.EMAIL, subscriber.email), (Channel.SMS, subscriber.phone)):
        if address:
            forms += [
                (Suppression.channel == channel) & (Suppression.address == form)
                for form in (stored_form(channel, address), hashed(session, channel, address))
                if form
            ]
    if forms:
        rec.suppressions = list(
            session.scalars(select(Suppression).where(or_(*forms)).order_by(Suppression.id))
        )
    rec.audit_log = list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.target_type == TARGET, AuditEntry.target_id == str(sid))
            .order_by(AuditEntry.at, AuditEntry.id)
        )
    )
    return rec
