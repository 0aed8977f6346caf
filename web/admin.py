"""Marketer and ops pages under /admin: funnels, the contact queue, the outbox, channels.

    GET  /admin                          campaigns with their enrollment funnels, status
    GET  /admin/campaigns/{key}          per-step funnel (?since=YYYY-MM-DD&until=YYYY-MM-DD),
                                         the goal (reached, per step, time to goal), each
                                         step's clinical review, experiments (variants
                                         with intervals and verdicts, the holdout)
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

Access: HTTP basic auth against ADMIN_USER / ADMIN_PASSWORD, compared in constant time.
With no ADMIN_PASSWORD every admin route answers 503, so a forgotten setting closes the
pages rather than opening them.

Cross-site requests: browsers send basic credentials with any request to this origin,
so a form on another site could post here. Every POST must carry an Origin header (or,
failing that, a Referer) whose origin is PUBLIC_BASE_URL's; anything else is refused
with 403. The pages are served with `Referrer-Policy: same-origin`, because under
`no-referrer` browsers send `Origin: null` with form posts. The admin must therefore be
used at PUBLIC_BASE_URL's origin (not through another host name or a port-forward).

Actions that put messages back on the send queues (resend, resume) commit first, then
call `app.state.dispatch(work)` when the app has one; without it the messages stay
queued and the reaper enqueues them at its next pass (REAP_SECONDS), and the page says so.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse

from campaigns.care import contact_queue
from campaigns.content import review
from campaigns.content.promote import PromoteError, promote
from campaigns.db import transaction
from campaigns.delivery import pauses
from campaigns.delivery.unconfirmed import (
    OPS_OUTCOMES,
    OpsError,
    Selection,
    preview_many,
    settle,
    settle_many,
)
from campaigns.delivery.work import Work
from campaigns.models import ROW_ID_MAX
from campaigns.reporting import funnels
from campaigns.reporting.outbox import latest as outbox_rows
from campaigns.reporting.overview import read_status
from campaigns.reporting.provider_health import provider_health
from campaigns.states import CHANNELS, MessageStatus
from campaigns.text import UncleanText
from campaigns.tracking import inbox
from web.origin import require_same_origin
from web.render import pages

log = logging.getLogger(__name__)

REALM = 'Basic realm="drip admin", charset="UTF-8"'
HEADERS = {
    "Cache-Control": "no-store",  # the queue page holds phone numbers and addresses
    "X-Robots-Tag": "noindex",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
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


def admin_password(settings) -> str:
    secret = settings.admin_password
    return secret.get_secret_value() if secret is not None else ""


def check_basic_auth(request: Request) -> str:
    """The user name when the request carries the admin credentials; else HTTPException
    (503 when no password is configured, 401 asking for credentials otherwise)."""
    settings = request.app.state.settings
    expected = admin_password(settings)
    if not expected:
        raise HTTPException(503, "admin pages are off: set ADMIN_PASSWORD")
    header = request.headers.get("authorization") or ""
    scheme, _, encoded = header.partition(" ")
    user = password = ""
    if scheme.lower() == "basic" and encoded:
        try:
            user, _, password = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
    # Both compared every time (& not `and`): the timing says nothing about which was wrong.
    ok = secrets.compare_digest(
        user.encode(), settings.admin_user.encode()
    ) & secrets.compare_digest(password.encode(), expected.encode())
    if not ok:
        raise HTTPException(401, "admin credentials required", headers={"WWW-Authenticate": REALM})
    return user


AdminUser = Annotated[str, Depends(check_basic_auth)]
# A row id in a path: a 422 outside the id column's range, before any query.
RowId = Annotated[int, Path(ge=1, le=ROW_ID_MAX)]
router = APIRouter(prefix="/admin", dependencies=[Depends(check_basic_auth)])
SameOrigin = Depends(require_same_origin)


# ---------------------------------------------------------------- helpers


def _state(request: Request):
    return request.app.state  # registry, factory, clock, dispatch: built in web/app.py


def _render(name: str, status_code: int = 200, **ctx) -> HTMLResponse:
    html = pages.get_template(name).render(**ctx)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def _notice(
    title: str, message: str, back: str, status: int = 200, detail: str | None = None
) -> HTMLResponse:
    return _render(
        "admin_notice.html",
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


def _parse_day(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{name} must be a date like 2026-03-01, not {value!r}") from None


# ---------------------------------------------------------------- pages


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, user: AdminUser) -> HTMLResponse:
    state = _state(request)
    with state.factory() as session:
        enrollment_funnels = funnels.enrollment_funnels(session, state.registry)
        status = read_status(session, state.clock)
        open_requests = contact_queue.waiting(session).count
        paused = pauses.all_paused(session)
    _, warning = funnels.load_campaigns(state.registry)
    return _render(
        "admin_dashboard.html",
        title="Campaigns",
        user=user,
        funnels=enrollment_funnels,
        status=status,
        open_requests=open_requests,
        paused=paused,
        warning=warning,
    )


@router.get("/campaigns/{key}", response_class=HTMLResponse)
def campaign_page(
    request: Request, key: str, user: AdminUser, since: str | None = None, until: str | None = None
) -> HTMLResponse:
    state = _state(request)
    try:
        start = _parse_day(since, "since")
        end_day = _parse_day(until, "until")
    except ValueError as exc:
        return _notice("Bad date", str(exc), back=f"/admin/campaigns/{key}", status=400)
    # The whole `until` day; the last day a datetime can hold has no day after it.
    end = end_day + timedelta(days=1) if end_day and end_day.date() < date.max else None
    try:
        with state.factory() as session:
            report = funnels.campaign_report(session, state.registry, key, start, end)
    except LookupError as exc:
        return _notice("No such campaign", str(exc), back="/admin", status=404)
    return _render(
        "admin_campaign.html",
        title=report.name,
        user=user,
        report=report,
        reviews=review.campaign_reviews(state.registry, key, state.clock.now().date()),
        since=since or "",
        until=until or "",
        # One promote button per arm: on the step's first channel's table.
        x_channels={
            s.step_key: s.channel
            for s in reversed(report.experiments.steps if report.experiments else [])
        },
    )


@router.post("/campaigns/{key}/promote", response_class=HTMLResponse, dependencies=[SameOrigin])
def promote_variant(
    request: Request,
    key: str,
    user: AdminUser,
    step: Annotated[str, Form(max_length=63)] = "",
    variant: Annotated[str, Form(max_length=20)] = "",
) -> HTMLResponse:
    state = _state(request)
    back = f"/admin/campaigns/{key}"
    try:
        campaign = state.registry.get(key)
    except (LookupError, ValueError):  # not deployed, or its file does not load
        return _notice("No such campaign", f"{key!r} is not deployed", back="/admin", status=404)
    if campaign.source is None:
        return _notice("Not promoted", "this campaign has no file to edit", back=back, status=400)
    try:
        done = promote(
            campaign.source, state.registry.templates_dir, step, variant, state.clock.now().date()
        )
    except PromoteError as exc:
        return _notice("Not promoted", str(exc), back=back, status=400)
    log.info("%s %s: variant %s promoted by admin:%s", key, step, variant, user)
    return _notice("Variant promoted", done.sentence, back=back)


@router.get("/inbox", response_class=HTMLResponse)
def inbox_page(request: Request, user: AdminUser) -> HTMLResponse:
    state = _state(request)
    with state.factory() as session:
        items = inbox.listing(session)
    return _render("admin_inbox.html", title="Inbox", user=user, items=items, now=state.clock.now())


@router.post("/inbox/{item_id}", response_class=HTMLResponse, dependencies=[SameOrigin])
def handle_inbox_item(
    request: Request, item_id: str, user: AdminUser, action: Annotated[str, Form()] = ""
) -> HTMLResponse:
    state = _state(request)
    back = "/admin/inbox"
    try:
        with transaction(state.factory) as session:
            item = inbox.handle(session, state.clock, item_id, action, by=f"admin:{user}")
            status = item.status
    except inbox.InboxError as exc:
        return _notice("Not changed", str(exc), back=back, status=400)
    said = "treated as an opt-out: no more texts" if action == "opt_out" else "marked done"
    return _notice("Text handled", f"Text {item_id} {said}.", back=back, detail=status)


@router.get("/outbox", response_class=HTMLResponse)
def outbox(request: Request, user: AdminUser, status: str | None = None) -> HTMLResponse:
    state = _state(request)
    if status and status not in tuple(MessageStatus):
        return _notice(
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
        title="Outbox",
        user=user,
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
    request: Request, message_id: RowId, user: AdminUser, outcome: Annotated[str, Form()] = ""
) -> HTMLResponse:
    state = _state(request)
    back = "/admin/outbox?status=unconfirmed"
    try:
        with transaction(state.factory) as session:
            work = settle(session, state.clock, message_id, outcome)
    except OpsError as exc:
        return _notice("Not settled", str(exc), back=back, status=409)
    log.info("message %s settled as %s by admin:%s", message_id, outcome, user)
    return _notice(
        "Message settled",
        f"Message {message_id} settled: {outcome}.",
        back=back,
        detail=_dispatch(request, work),
    )


MAX_OLDER_THAN_MINUTES = 10 * 365 * 24 * 60


@router.post("/outbox/settle-all", response_class=HTMLResponse, dependencies=[SameOrigin])
def settle_all(
    request: Request,
    user: AdminUser,
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
        return _notice("Not settled", str(exc), back=back, status=400)
    if confirm != "yes":
        with state.factory() as session:
            count, oldest = preview_many(session, state.clock, selection)
        return _render(
            "admin_settle_all.html",
            title="Settle unconfirmed messages",
            user=user,
            count=count,
            oldest=oldest,
            outcome=outcome,
            channel=channel,
            older_than=minutes,
            as_of=selection.as_of.isoformat(),
            back=back,
        )
    with transaction(state.factory) as session:
        settled, work = settle_many(session, state.clock, selection, outcome)
    log.info("%d unconfirmed message(s) settled as %s by admin:%s", settled, outcome, user)
    return _notice(
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
def channels_page(request: Request, user: AdminUser, minutes: int = 60) -> HTMLResponse:
    state = _state(request)
    minutes = max(1, min(minutes, 7 * 24 * 60))
    with state.factory() as session:
        health = provider_health(session, state.clock, minutes)
        paused = pauses.all_paused(session)
    return _render(
        "admin_channels.html",
        title="Channels",
        user=user,
        health=health,
        paused=paused,
        minutes=minutes,
        channels=sorted(set(KNOWN_CHANNELS) | set(health.channels)),
    )


def _known_channel(channel: str) -> None:
    if channel not in KNOWN_CHANNELS:
        raise HTTPException(404, f"no channel {channel!r}")


@router.post("/channels/{channel}/resume", response_class=HTMLResponse, dependencies=[SameOrigin])
def resume_channel(request: Request, channel: str, user: AdminUser) -> HTMLResponse:
    _known_channel(channel)
    state = _state(request)
    with transaction(state.factory) as session:
        was_paused = pauses.paused(session, channel) is not None
        work = pauses.resume(session, state.clock, channel)
    log.info("%s channel resumed by admin:%s (%s waiting)", channel, user, len(work))
    message = (
        f"The {channel} channel is running."
        if was_paused
        else f"The {channel} channel was not paused."
    )
    return _notice(
        "Channel resumed", message, back="/admin/channels", detail=_dispatch(request, work)
    )


@router.post("/channels/{channel}/pause", response_class=HTMLResponse, dependencies=[SameOrigin])
def pause_channel(
    request: Request, channel: str, user: AdminUser, reason: Annotated[str, Form()] = ""
) -> HTMLResponse:
    _known_channel(channel)
    reason = reason.strip()
    if not reason:
        return _notice(
            "Not paused",
            "Give a reason, so whoever resumes it knows why.",
            back="/admin/channels",
            status=400,
        )
    state = _state(request)
    try:
        with transaction(state.factory) as session:
            pauses.pause(session, state.clock, channel, reason, by=f"admin:{user}"[:40])
    except UncleanText as exc:
        return _notice("Not paused", str(exc), back="/admin/channels", status=400)
    log.info("%s channel paused by admin:%s", channel, user)
    return _notice(
        "Channel paused",
        f"The {channel} channel is paused; queued messages wait.",
        back="/admin/channels",
    )
