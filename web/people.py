"""The care team's people pages under /admin/people: finding a person, their page, what
staff may do to their courses, and their data rights (export, erase).

    GET  /admin/people?q=&page=                 search by name, email, phone or #id
    GET  /admin/people/{id}                     the person: details, courses, messages and
                                                their events, consent, suppressions,
                                                contact requests, answers, events, holds
    POST /admin/people/{id}/courses/{eid}/pause | resume | exit
    POST /admin/people/{id}/suppress            channel, reason
    GET  /admin/people/{id}/export.json         everything held on them, one document
    GET  /admin/people/{id}/export.zip          the same, one CSV per table
    GET  /admin/people/{id}/erase               asks to type the person's id
    POST /admin/people/{id}/erase               confirm=<the id>: erases them

Every POST carries the staff member's CSRF token and comes from our own origin; every
action, export and erasure is in the audit log (campaigns.people). An id that names
nobody (or is no id at all) answers the 404 page, never an error.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from campaigns.db import transaction
from campaigns.models import is_row_id
from campaigns.people import actions, erasure, export, profile, search
from campaigns.redact import mask
from campaigns.staff.roles import may
from campaigns.states import CHANNELS
from web.access import Staff, need
from web.render import ADMIN_HEADERS, admin_page, pages

router = APIRouter(prefix="/admin/people")
Care = Annotated[Staff, Depends(need("people"))]
pages.filters["mask"] = mask


def _render(name: str, staff: Staff, status_code: int = 200, **ctx) -> HTMLResponse:
    return admin_page(name, staff, status_code, **ctx)


def _notice(staff: Staff, title: str, message: str, back: str, status: int = 200) -> HTMLResponse:
    return _render(
        "admin_notice.html", staff, status, title=title, message=message, detail=None, back=back
    )


def _missing(staff: Staff, raw: str) -> HTMLResponse:
    return _notice(
        staff, "No such person", f"Nobody here has the id {raw[:40]!r}.", "/admin/people", 404
    )


def _row_id(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and is_row_id(int(raw)) else None


def _state(request: Request):
    return request.app.state


@router.get("", response_class=HTMLResponse)
def people_page(
    request: Request,
    staff: Care,
    q: Annotated[str, Query(max_length=search.MAX_QUERY)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    with _state(request).factory() as session:
        results = search.search(session, q, page)
    return _render(
        "admin_people.html",
        staff,
        title="People",
        results=results,
        plain=may(staff.role, "contacts"),  # who may read names and numbers in full
    )


@router.get("/{person_id}", response_class=HTMLResponse)
def person_page(request: Request, person_id: str, staff: Care) -> HTMLResponse:
    sid = _row_id(person_id)
    if sid is None:
        return _missing(staff, person_id)
    try:
        with _state(request).factory() as session:
            view = profile.profile(session, sid)
            name = view.subscriber.first_name
            title = f"{name} (person {sid})" if name else f"Person {sid}"
            return _render("admin_person.html", staff, title=title, view=view, channels=CHANNELS)
    except profile.NotFound:
        return _missing(staff, person_id)


def _act(request: Request, staff: Staff, person_id: str, do) -> HTMLResponse:
    sid = _row_id(person_id)
    if sid is None:
        return _missing(staff, person_id)
    back = f"/admin/people/{sid}"
    state = _state(request)
    try:
        with transaction(state.factory) as session:
            done = do(session, state.clock, sid)
    except profile.NotFound as exc:
        return _notice(staff, "Not found", str(exc), back if sid else "/admin/people", 404)
    except (actions.ActionError, ValueError) as exc:
        return _notice(staff, "Not changed", str(exc), back, 400)
    return _notice(staff, "Done", done, back)


COURSE_ACTIONS = {
    "pause": (actions.pause, "paused"),
    "resume": (actions.resume, "resumed"),
    "exit": (actions.exit_course, "ended"),
}


@router.post("/{person_id}/courses/{course_id}/{action}", response_class=HTMLResponse)
def course_action(
    request: Request,
    person_id: str,
    course_id: str,
    action: str,
    staff: Care,
) -> HTMLResponse:
    eid = _row_id(course_id)
    if action not in COURSE_ACTIONS or eid is None:
        return _notice(staff, "Not found", "No such course action.", "/admin/people", 404)
    fn, word = COURSE_ACTIONS[action]

    def do(session, clock, sid):
        enrollment = fn(session, clock, staff.actor, sid, eid)
        return f"Course {eid} ({enrollment.campaign_key}) {word}."

    return _act(request, staff, person_id, do)


@router.post("/{person_id}/suppress", response_class=HTMLResponse)
def suppress_channel(
    request: Request,
    person_id: str,
    staff: Care,
    channel: Annotated[str, Form(max_length=10)] = "",
    reason: Annotated[str, Form(max_length=actions.MAX_REASON)] = "",
) -> HTMLResponse:
    def do(session, clock, sid):
        actions.suppress_channel(session, clock, staff.actor, sid, channel, reason)
        return f"{channel} stopped for person {sid}: consent withdrawn, address suppressed."

    return _act(request, staff, person_id, do)


@router.get("/{person_id}/export.{fmt}")
def export_person(request: Request, person_id: str, fmt: str, staff: Care) -> Response:
    sid = _row_id(person_id)
    kind = {"json": "json", "zip": "csv"}.get(fmt)
    if sid is None or kind is None:
        return _missing(staff, f"{person_id}/export.{fmt}")
    state = _state(request)
    try:
        with transaction(state.factory) as session:
            body, name = export.export(session, state.clock, staff.actor, sid, kind)
    except profile.NotFound:
        return _missing(staff, person_id)
    media = "application/json" if kind == "json" else "application/zip"
    return Response(
        body,
        media_type=media,
        headers={**ADMIN_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/{person_id}/erase", response_class=HTMLResponse)
def erase_page(request: Request, person_id: str, staff: Care) -> HTMLResponse:
    sid = _row_id(person_id)
    if sid is None:
        return _missing(staff, person_id)
    with _state(request).factory() as session:
        try:
            sub = profile.person(session, sid)
        except profile.NotFound:
            return _missing(staff, person_id)
        return _render("admin_erase.html", staff, title=f"Erase person {sid}", sub=sub)


@router.post("/{person_id}/erase", response_class=HTMLResponse)
def erase_person(
    request: Request,
    person_id: str,
    staff: Care,
    confirm: Annotated[str, Form(max_length=40)] = "",
) -> HTMLResponse:
    sid = _row_id(person_id)
    if sid is not None and confirm.strip() != str(sid):
        return _notice(
            staff,
            "Not erased",
            f"Type the person's id ({sid}) to confirm; nothing was changed.",
            f"/admin/people/{sid}/erase",
            400,
        )

    def do(session, clock, sid):
        done = erasure.erase(session, clock, staff.actor, sid)
        if done.already:
            return f"Person {sid} was already erased; nothing changed."
        return (
            f"Person {sid} erased: personal details wiped; "
            f"{done.counts['messages']} message(s) and {done.counts['events']} event(s) kept "
            f"without identity; {done.counts['suppressions_hashed']} suppression(s) kept hashed."
        )

    return _act(request, staff, person_id, do)
