"""The care team's contact queue under /admin/contact-requests (area `contacts`).

    GET  /admin/contact-requests                 the queue: ?status=waiting|open|contacted|
                                                 closed|all, assignee=anyone|unassigned|me|
                                                 <name>, channel=phone|email|sms, overdue=1,
                                                 page=N; open requests first, oldest first
    GET  /admin/contact-requests/{id}            one request: the person, what they asked,
                                                 their other requests, the staff notes
    POST /admin/contact-requests/{id}            status=contacted|closed|open (reopen), note
    POST /admin/contact-requests/{id}/assign     assignee=me|<name>
    POST /admin/contact-requests/{id}/unassign
    POST /admin/contact-requests/{id}/notes      body (at most 2000 characters)

The pages show real names, phone numbers and addresses: the care team calls and writes
back. Every POST carries the form's csrf_token and comes from PUBLIC_BASE_URL's origin
(web/origin.py); every change is audited with it, in one transaction
(campaigns/care/contact_queue.py, contact_notes.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from campaigns.care import contact_notes, contact_queue
from campaigns.clock import Clock
from campaigns.db import transaction
from campaigns.states import ContactStatus
from web.access import Staff, need
from web.render import admin_page

QUEUE = "/admin/contact-requests"
Contacts = need("contacts")  # one dependency object, so FastAPI resolves it once a request
router = APIRouter(prefix=QUEUE, dependencies=[Depends(Contacts)])


# need() checks a post's origin and, for a browser session, its CSRF token (web/access.py).
Poster = Annotated[Staff, Depends(Contacts)]
Reader = Annotated[Staff, Depends(Contacts)]
FLAGS = {None: False, "": False, "0": False, "1": True, "on": True}  # a checkbox's values


def _render(name: str, staff: Staff, status_code: int = 200, **ctx) -> HTMLResponse:
    return admin_page(name, staff, status_code, **ctx)


def _notice(staff: Staff, title: str, message: str, back: str, status: int = 200):
    return _render(
        "admin_notice.html", staff, status, title=title, message=message, detail=None, back=back
    )


def _refused(staff: Staff, exc: contact_queue.QueueError, back: str) -> HTMLResponse:
    missing = isinstance(exc, contact_queue.NoSuchRequest)
    title = "No such contact request" if missing else "Not changed"
    return _notice(
        staff, title, str(exc), back=QUEUE if missing else back, status=404 if missing else 400
    )


def _target(request: Request) -> timedelta:
    return timedelta(hours=request.app.state.settings.contact_response_target_hours)


def _me(staff: Staff, name: str | None) -> str | None:
    return staff.name if (name or "").strip() == "me" else name


@router.get("", response_class=HTMLResponse)
def queue_page(
    request: Request,
    staff: Reader,
    status: str | None = None,
    assignee: str | None = None,
    channel: str | None = None,
    overdue: str | None = None,
    page: str | None = None,
) -> HTMLResponse:
    state = request.app.state
    try:
        number = int(page or 1)
    except ValueError:
        number = 0  # refused below with the page's range
    try:
        if overdue not in FLAGS:
            raise contact_queue.QueueError("overdue must be 1 (overdue only) or left out")
        wanted = contact_queue.filters(status, _me(staff, assignee), channel, FLAGS[overdue])
        with state.factory() as session:
            found = contact_queue.search(
                session, state.clock.now(), _target(request), wanted, number
            )
            names = contact_notes.known_names(session)
    except contact_queue.QueueError as exc:
        return _notice(staff, "Cannot show that", str(exc), back=QUEUE, status=400)
    query = {
        "status": wanted.status,
        "assignee": "me" if (assignee or "").strip() == "me" else wanted.assignee,
        "channel": wanted.channel or "",
        "overdue": "1" if wanted.overdue else "",
    }
    return _render(
        "admin_contacts.html",
        staff,
        title="Contact requests",
        found=found,
        query=query,
        link=lambda n: f"{QUEUE}?{urlencode({**query, 'page': n})}",
        statuses=tuple(contact_queue.STATUS_FILTERS),
        channels=contact_queue.PREFERRED_CHANNELS,
        names=names,
        target_hours=state.settings.contact_response_target_hours,
        now=state.clock.now(),
    )


@router.get("/{request_id}", response_class=HTMLResponse)
def request_page(request: Request, request_id: str, staff: Reader) -> HTMLResponse:
    return _request_page(request, staff, request_id)


def _request_page(
    request: Request, staff: Staff, request_id: str, status: int = 200, **ctx
) -> HTMLResponse:
    state = request.app.state
    try:
        with state.factory() as session:
            found = contact_queue.detail(session, request_id, state.clock.now(), _target(request))
            names = contact_notes.known_names(session)
    except contact_queue.QueueError as exc:
        return _refused(staff, exc, QUEUE)
    return _render(
        "admin_contact.html",
        staff,
        status,
        title=f"Contact request {found.item.id}",
        found=found,
        names=names,
        note_max=contact_notes.NOTE_MAX,
        target_hours=state.settings.contact_response_target_hours,
        now=state.clock.now(),
        **ctx,
    )


def _act(
    request: Request,
    staff: Staff,
    request_id: str,
    title: str,
    change: Callable[..., str],  # (session, clock) -> what it did
    draft: str | None = None,
) -> HTMLResponse:
    """Run one change in a transaction (the change and its audit entry commit together)
    and say what it did; a refused change says why, and a refused note comes back in its
    box so nothing typed is lost."""
    state = request.app.state
    try:
        with transaction(state.factory) as session:
            said = change(session, state.clock)
    except contact_queue.NoSuchRequest as exc:
        return _refused(staff, exc, QUEUE)
    except contact_queue.QueueError as exc:
        if draft is not None:
            return _request_page(request, staff, request_id, 400, error=str(exc), draft=draft)
        return _refused(staff, exc, f"{QUEUE}/{request_id}")
    return _notice(staff, title, said, f"{QUEUE}/{request_id}")


@router.post("/{request_id}", response_class=HTMLResponse)
def set_status(
    request: Request,
    request_id: str,
    staff: Poster,
    status: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> HTMLResponse:
    def change(session, clock: Clock) -> str:
        done = contact_queue.set_status(session, clock, staff.actor, request_id, status, note)
        if note.strip():
            contact_notes.add_note(session, clock, staff.actor, done.id, note)
        said = "reopened" if status == ContactStatus.OPEN else f"now {done.status}"
        return f"Request {done.id} is {said}."

    return _act(request, staff, request_id, "Contact request updated", change)


@router.post("/{request_id}/assign", response_class=HTMLResponse)
def assign(
    request: Request, request_id: str, staff: Poster, assignee: Annotated[str, Form()] = ""
) -> HTMLResponse:
    def change(session, clock: Clock) -> str:
        name = _me(staff, assignee) or ""
        done = contact_notes.assign(session, clock, staff.actor, request_id, name)
        return f"Request {done.id} is with {done.assigned_to}."

    return _act(request, staff, request_id, "Assigned", change)


@router.post("/{request_id}/unassign", response_class=HTMLResponse)
def unassign(request: Request, request_id: str, staff: Poster) -> HTMLResponse:
    def change(session, clock: Clock) -> str:
        done = contact_notes.assign(session, clock, staff.actor, request_id, None)
        return f"Request {done.id} is with nobody now."

    return _act(request, staff, request_id, "Unassigned", change)


@router.post("/{request_id}/notes", response_class=HTMLResponse)
def add_note(
    request: Request, request_id: str, staff: Poster, body: Annotated[str, Form()] = ""
) -> HTMLResponse:
    def change(session, clock: Clock) -> str:
        note = contact_notes.add_note(session, clock, staff.actor, request_id, body)
        return f"The note is on request {note.request_id}."

    return _act(request, staff, request_id, "Note added", change, draft=body)
