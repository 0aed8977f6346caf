"""The staff workspace under /admin: funnels, the contact queue, the inbox, the outbox,
channels. Each route names the area it belongs to (campaigns.staff.roles); a role sees
and does only its areas' parts.

    area        routes
    dashboard   GET /admin (every role; each sees only its parts: a marketer the
                campaigns' funnels, the care team the waiting requests and texts, ops the
                queues, the outbox and paused channels)
    campaigns   /admin/campaigns/...
    contacts    /admin/contact-requests...
    inbox       /admin/inbox...
    outbox      /admin/outbox...
    channels    /admin/channels...

    GET  /admin                          campaigns with their enrollment funnels, status
    /admin/campaigns/{key}               a campaign's results, charts, filters and CSV
                                         exports: web/results.py
    POST /admin/campaigns/{key}/promote  step, variant: the step keeps that variant's copy
                                         and no variants (a live edit of the campaign file)
    /admin/contact-requests              the care team's queue: web/contacts.py
    GET  /admin/outbox                   messages by status (?status=unconfirmed)
    POST /admin/outbox/{id}/settle       outcome=sent|failed|resend (unconfirmed only)
    POST /admin/outbox/settle-all        outcome, channel, older_than (minutes): shows how
                                         many and asks; with confirm=yes and the as_of it
                                         showed, settles exactly those (unconfirmed only)
    GET  /admin/channels                 paused channels, provider health (?minutes=60)
    POST /admin/channels/{channel}/pause   reason
    POST /admin/channels/{channel}/resume

Access (web/access.py): staff accounts sign in at /admin/login (web/login.py) and get a
server-side session; scripts may send HTTP basic credentials of an account or of the
bootstrap admin (ADMIN_USER / ADMIN_PASSWORD). A role refused an area gets a 403 page.
With no ADMIN_PASSWORD and no staff account every route answers 503, so a forgotten
setting closes the pages rather than opening them.

Cross-site requests: every POST must carry an Origin header (or, failing that, a Referer)
whose origin is PUBLIC_BASE_URL's, and, from a signed-in browser, the session's CSRF
token (the hidden `csrf_token` every form carries); anything else is refused with 403.
Basic-auth requests carry no cookie and no token; the origin rule is their guard, since
browsers send cached basic credentials with any request. The pages are served with
`Referrer-Policy: same-origin`, because under `no-referrer` browsers send `Origin: null`
with form posts. The workspace must therefore be used at PUBLIC_BASE_URL's origin (not
through another host name or a port-forward).

Audit: every action here that changes state (promote, inbox, settle, settle-all, pause,
resume) is a function of campaigns.staff.audited, which records it in the same
transaction as the change, with the fields it changed before and after; the CLI calls the
same functions, so its actions are logged alike. The log is at /admin/audit (web/audit.py).

Actions that put messages back on the send queues (resend, resume) commit first, then
call `app.state.dispatch(work)` when the app has one; without it the messages stay
queued and the reaper enqueues them at its next pass (REAP_SECONDS), and the page says so.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse

from campaigns.care import contact_queue
from campaigns.content.promote import PromoteError
from campaigns.db import transaction
from campaigns.delivery import pauses
from campaigns.delivery.unconfirmed import (
    OPS_OUTCOMES,
    OpsError,
    Selection,
    preview_many,
)
from campaigns.delivery.work import Work
from campaigns.editing import promoting
from campaigns.models import ROW_ID_MAX
from campaigns.reporting import funnels
from campaigns.reporting.outbox import latest as outbox_rows
from campaigns.reporting.overview import read_status
from campaigns.reporting.provider_health import provider_health
from campaigns.staff import audited
from campaigns.staff.roles import may
from campaigns.states import CHANNELS, MessageStatus
from campaigns.text import UncleanText
from campaigns.tracking import inbox
from web.access import Staff, current_staff, need
from web.origin import require_same_origin
from web.render import admin_page, pages

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 200
KNOWN_CHANNELS = CHANNELS


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


pages.filters.update(pct=_pct, when=_when, age=_age)


# ---------------------------------------------------------------- access


Dashboard = Annotated[Staff, Depends(need("dashboard"))]
Campaigns = Annotated[Staff, Depends(need("campaigns"))]
Contacts = Annotated[Staff, Depends(need("contacts"))]
Inbox = Annotated[Staff, Depends(need("inbox"))]
Outbox = Annotated[Staff, Depends(need("outbox"))]
Channels = Annotated[Staff, Depends(need("channels"))]
# A row id in a path: a 422 outside the id column's range, before any query.
RowId = Annotated[int, Path(ge=1, le=ROW_ID_MAX)]
# Signed in before anything else (a 401 or the sign-in page comes before a 403 or 422).
router = APIRouter(prefix="/admin", dependencies=[Depends(current_staff)])
SameOrigin = Depends(require_same_origin)


# ---------------------------------------------------------------- helpers


def _state(request: Request):
    return request.app.state  # registry, factory, clock, dispatch: built in web/app.py


def _render(template: str, staff: Staff, /, status_code: int = 200, **ctx) -> HTMLResponse:
    """Every workspace page: the signed-in staff's nav, and `csrf` for its forms."""
    return admin_page(template, staff, status_code, **ctx)


def _notice(
    staff: Staff,
    title: str,
    message: str,
    back: str,
    status: int = 200,
    detail: str | None = None,
) -> HTMLResponse:
    return _render(
        "admin_notice.html",
        staff,
        status_code=status,
        title=title,
        message=message,
        detail=detail,
        back=back,
    )


def _dispatch(request: Request, work: Work) -> str | None:
    """Hand re-queued messages to the workers after the commit; say what happened."""
    if not len(work):
        return None
    state = request.app.state
    dispatch = getattr(state, "dispatch", None)
    later = f"the reaper enqueues them within {state.settings.reap_seconds:g} s"
    if dispatch is None:
        return (
            f"{len(work)} message(s) left queued: this web process has no dispatcher, so {later}."
        )
    try:
        dispatch(work)
    except Exception:  # the commit stands; the reaper is the safety net
        log.exception("dispatch after an admin action failed; the reaper will enqueue the messages")
        return f"{len(work)} message(s) are queued but the broker did not take them; {later}."
    return f"{len(work)} message(s) handed to the send queues."


# ---------------------------------------------------------------- pages


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, staff: Dashboard) -> HTMLResponse:
    """Each role's parts only: what it may not open is neither shown nor read."""
    state = _state(request)
    show = {area: may(staff.role, area) for area in ("campaigns", "contacts", "inbox", "outbox")}
    show["channels"] = may(staff.role, "channels")
    enrollment_funnels, status, open_requests, paused, warning = [], None, None, [], None
    with state.factory() as session:
        if show["campaigns"]:
            enrollment_funnels = funnels.enrollment_funnels(session, state.registry)
        if show["outbox"] or show["inbox"]:
            status = read_status(session, state.clock)
        if show["contacts"]:
            open_requests = contact_queue.waiting(session).count
        if show["channels"]:
            paused = pauses.all_paused(session)
    if show["campaigns"]:
        _, warning = funnels.load_campaigns(state.registry)
    return _render(
        "admin_dashboard.html",
        staff,
        title="Overview",
        show=show,
        funnels=enrollment_funnels,
        status=status,
        open_requests=open_requests,
        paused=paused,
        warning=warning,
    )


@router.post("/campaigns/{key}/promote", response_class=HTMLResponse, dependencies=[SameOrigin])
def promote_variant(
    request: Request,
    key: str,
    staff: Campaigns,
    step: Annotated[str, Form(max_length=63)] = "",
    variant: Annotated[str, Form(max_length=20)] = "",
) -> HTMLResponse:
    state = _state(request)
    back = f"/admin/campaigns/{key}"
    try:
        state.registry.get(key)
    except (LookupError, ValueError):  # not deployed, or its file does not load
        return _notice(
            staff, "No such campaign", f"{key!r} is not deployed", back="/admin", status=404
        )
    try:
        with transaction(state.factory) as session:
            done = promoting.promote_step(
                session,
                state.clock,
                staff.actor,
                state.registry,
                key,
                step,
                variant,
                state.settings.templates_dir,
            )
    except PromoteError as exc:
        return _notice(staff, "Not promoted", str(exc), back=back, status=400)
    if hasattr(state.registry, "refresh"):
        state.registry.refresh()  # this process shows the new revision at once
    log.info("%s %s: variant %s promoted by %s", key, step, variant, staff.actor.by)
    return _notice(staff, "Variant promoted", done.sentence, back=back)


@router.get("/inbox", response_class=HTMLResponse)
def inbox_page(request: Request, staff: Inbox) -> HTMLResponse:
    state = _state(request)
    with state.factory() as session:
        items = inbox.listing(session)
    return _render("admin_inbox.html", staff, title="Inbox", items=items, now=state.clock.now())


@router.post("/inbox/{item_id}", response_class=HTMLResponse, dependencies=[SameOrigin])
def handle_inbox_item(
    request: Request, item_id: str, staff: Inbox, action: Annotated[str, Form()] = ""
) -> HTMLResponse:
    state = _state(request)
    back = "/admin/inbox"
    try:
        with transaction(state.factory) as session:
            item = audited.handle_inbox_item(session, state.clock, staff.actor, item_id, action)
            status = item.status
    except inbox.InboxError as exc:
        return _notice(staff, "Not changed", str(exc), back=back, status=400)
    said = "treated as an opt-out: no more texts" if action == "opt_out" else "marked done"
    return _notice(staff, "Text handled", f"Text {item_id} {said}.", back=back, detail=status)


@router.get("/outbox", response_class=HTMLResponse)
def outbox(request: Request, staff: Outbox, status: str | None = None) -> HTMLResponse:
    state = _state(request)
    if status and status not in tuple(MessageStatus):
        return _notice(
            staff,
            "Unknown status",
            f"status must be one of {', '.join(tuple(MessageStatus))}",
            back="/admin/outbox",
            status=400,
        )
    with state.factory() as session:
        counts = read_status(session, state.clock).messages
        rows = outbox_rows(session, OUTBOX_LIMIT, status)
    return _render(
        "admin_outbox.html",
        staff,
        title="Outbox",
        counts=counts,
        rows=rows,
        statuses=tuple(MessageStatus),
        status=status or "",
        limit=OUTBOX_LIMIT,
        unconfirmed=MessageStatus.UNCONFIRMED,
        has_dispatch=getattr(state, "dispatch", None) is not None,
        requeue_after=f"{state.settings.reap_seconds:g}",
        now=state.clock.now(),
        outcomes=tuple(OPS_OUTCOMES),
        channels=CHANNELS,
    )


@router.post("/outbox/{message_id}/settle", response_class=HTMLResponse, dependencies=[SameOrigin])
def settle_message(
    request: Request, message_id: RowId, staff: Outbox, outcome: Annotated[str, Form()] = ""
) -> HTMLResponse:
    state = _state(request)
    back = "/admin/outbox?status=unconfirmed"
    try:
        with transaction(state.factory) as session:
            work = audited.settle_message(session, state.clock, staff.actor, message_id, outcome)
    except OpsError as exc:
        return _notice(staff, "Not settled", str(exc), back=back, status=409)
    log.info("message %s settled as %s by %s", message_id, outcome, staff.actor.by)
    return _notice(
        staff,
        "Message settled",
        f"Message {message_id} settled: {outcome}.",
        back=back,
        detail=_dispatch(request, work),
    )


MAX_OLDER_THAN_MINUTES = 10 * 365 * 24 * 60


@router.post("/outbox/settle-all", response_class=HTMLResponse, dependencies=[SameOrigin])
def settle_all(
    request: Request,
    staff: Outbox,
    outcome: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "",
    older_than: Annotated[str, Form()] = "0",
    as_of: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Bulk settle in two steps: the first post shows how many messages it would take and
    asks; the confirming post carries the moment of that count (as_of), so a message that
    became unconfirmed in between is left out."""
    state = _state(request)
    back = "/admin/outbox?status=unconfirmed"
    try:
        selection, minutes = _selection(outcome, channel, older_than, as_of, state.clock.now())
    except ValueError as exc:
        return _notice(staff, "Not settled", str(exc), back=back, status=400)
    if confirm != "yes":
        with state.factory() as session:
            count, oldest = preview_many(session, state.clock, selection)
        return _render(
            "admin_settle_all.html",
            staff,
            title="Settle unconfirmed messages",
            count=count,
            oldest=oldest,
            outcome=outcome,
            channel=channel,
            older_than=minutes,
            as_of=selection.as_of.isoformat(),
            back=back,
        )
    with transaction(state.factory) as session:
        settled, work = audited.settle_all(session, state.clock, staff.actor, selection, outcome)
    log.info("%d unconfirmed message(s) settled as %s by %s", settled, outcome, staff.actor.by)
    return _notice(
        staff,
        "Messages settled",
        f"{settled} unconfirmed message(s) settled: {outcome}.",
        back=back,
        detail=_dispatch(request, work),
    )


def _selection(
    outcome: str, channel: str, older_than: str, as_of: str, now: datetime
) -> tuple[Selection, int]:
    if outcome not in OPS_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OPS_OUTCOMES)}")
    if channel and channel not in KNOWN_CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(KNOWN_CHANNELS)}, or empty")
    text = (older_than or "0").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ValueError("older than must be a whole number of minutes")
    minutes = min(int(text), MAX_OLDER_THAN_MINUTES)
    moment = now
    if as_of:
        try:
            moment = datetime.fromisoformat(as_of[:40])
        except ValueError:
            raise ValueError("as_of is not a time this page wrote") from None
        if moment.tzinfo is None:
            raise ValueError("as_of is not a time this page wrote")
    selection = Selection(channel or None, timedelta(minutes=minutes), as_of=min(moment, now))
    return selection, minutes


@router.get("/channels", response_class=HTMLResponse)
def channels_page(request: Request, staff: Channels, minutes: int = 60) -> HTMLResponse:
    state = _state(request)
    minutes = max(1, min(minutes, 7 * 24 * 60))
    with state.factory() as session:
        health = provider_health(session, state.clock, minutes)
        paused = pauses.all_paused(session)
    return _render(
        "admin_channels.html",
        staff,
        title="Channels",
        health=health,
        paused=paused,
        minutes=minutes,
        channels=sorted(set(KNOWN_CHANNELS) | set(health.channels)),
    )


def _known_channel(channel: str) -> None:
    if channel not in KNOWN_CHANNELS:
        raise HTTPException(404, f"no channel {channel!r}")


@router.post("/channels/{channel}/resume", response_class=HTMLResponse, dependencies=[SameOrigin])
def resume_channel(request: Request, channel: str, staff: Channels) -> HTMLResponse:
    _known_channel(channel)
    state = _state(request)
    with transaction(state.factory) as session:
        was_paused, work = audited.resume_channel(session, state.clock, staff.actor, channel)
    log.info("%s channel resumed by %s (%s waiting)", channel, staff.actor.by, len(work))
    message = (
        f"The {channel} channel is running."
        if was_paused
        else f"The {channel} channel was not paused."
    )
    return _notice(
        staff, "Channel resumed", message, back="/admin/channels", detail=_dispatch(request, work)
    )


@router.post("/channels/{channel}/pause", response_class=HTMLResponse, dependencies=[SameOrigin])
def pause_channel(
    request: Request, channel: str, staff: Channels, reason: Annotated[str, Form()] = ""
) -> HTMLResponse:
    _known_channel(channel)
    reason = reason.strip()
    if not reason:
        return _notice(
            staff,
            "Not paused",
            "Give a reason, so whoever resumes it knows why.",
            back="/admin/channels",
            status=400,
        )
    state = _state(request)
    try:
        with transaction(state.factory) as session:
            audited.pause_channel(session, state.clock, staff.actor, channel, reason)
    except UncleanText as exc:
        return _notice(staff, "Not paused", str(exc), back="/admin/channels", status=400)
    log.info("%s channel paused by %s", channel, staff.actor.by)
    return _notice(
        staff,
        "Channel paused",
        f"The {channel} channel is paused; queued messages wait.",
        back="/admin/channels",
    )
