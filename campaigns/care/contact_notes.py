"""What the care team keeps on a contact request: their notes (a thread under the
person's own words) and who has the request.

Names are the staff member's name as signed in, kept as text: the queue neither knows nor
needs how staff accounts are stored. Each change is written to the audit log in the same
transaction; a note's entry names the note, never its text, so the log holds no words
about a person's health.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.care.contact_queue import QueueError, get, staff_name
from campaigns.clock import Clock
from campaigns.models import ContactRequest, ContactRequestNote
from campaigns.staff import audit
from campaigns.text import UncleanText, clean_text

NOTE_MAX = 2000


def add_note(
    session: Session, clock: Clock, actor: audit.Actor, value: int | str, body: str
) -> ContactRequestNote:
    text = (body or "").strip()
    if not text:
        raise QueueError("the note is empty: write what was done or agreed")
    if len(text) > NOTE_MAX:
        # Refused whole rather than cut: a clipped note could drop the part that matters.
        raise QueueError(
            f"the note is {len(text)} characters long; at most {NOTE_MAX} are kept: "
            "shorten it or split it into two notes"
        )
    try:
        clean_text(text, "note", multiline=True)
    except UncleanText as exc:
        raise QueueError(str(exc)) from None
    request = get(session, value)
    note = ContactRequestNote(
        request_id=request.id,
        author=staff_name(actor.name, "author"),
        body=text,
        created_at=clock.now(),
    )
    session.add(note)
    session.flush()
    audit.record(
        session,
        clock,
        actor,
        "contact_request.note",
        "contact_request",
        request.id,
        after={"note_id": note.id},
    )
    return note


def assign(
    session: Session, clock: Clock, actor: audit.Actor, value: int | str, name: str | None
) -> ContactRequest:
    """Give the request to a staff member (`name`), or to nobody (None). Assigning it to
    whoever already has it changes nothing and records nothing."""
    new = None if name is None else staff_name(name, "assignee")
    request = get(session, value, lock=True)
    before = request.assigned_to
    if before == new:
        return request
    request.assigned_to = new
    request.assigned_at = None if new is None else clock.now()
    session.flush()
    audit.record(
        session,
        clock,
        actor,
        "contact_request.assign" if new else "contact_request.unassign",
        "contact_request",
        request.id,
        before={"assigned_to": before},
        after={"assigned_to": new},
    )
    return request


def known_names(session: Session, limit: int = 200) -> list[str]:
    """Names the care team has used here (assignees, note authors): offered when assigning,
    so a request goes to "Maria", not to "maria " or "Mari"."""
    names = session.scalars(
        select(ContactRequest.assigned_to)
        .where(ContactRequest.assigned_to.is_not(None))
        .union(select(ContactRequestNote.author))
        .limit(limit)
    )
    return sorted(set(names), key=str.casefold)
