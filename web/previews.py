"""The pages a test message's links open (campaigns.delivery.testsend): each subscriber
page as the patient would see it, under a "Test preview — nothing is recorded" banner.

    GET  /t/m/{token}   the lesson online          GET  /t/o/{token}   the pixel (records nothing)
    GET  /t/c/{token}   request-a-call form        POST /t/c/{token}   checked, not recorded
    GET  /t/p/{token}   preferences                POST /t/p/{token}   nothing saved
    GET  /t/u/{token}   confirm unsubscribing      POST /t/u/{token}   nothing stopped
    GET  /t/l/{token}/{link id}   the page the lesson links to
    GET  /t/a/{token}   a check-in answer          POST /t/a/{token}   nothing saved

A POST shows what the subscriber would read next, and changes nothing. The tokens are
signed for test purposes only (campaigns.links.TEST): a real message's link is not one,
and a test link is refused by every real page.
"""

from __future__ import annotations

import html
import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from campaigns.care.contact_choices import Caller, Refused, form_values
from campaigns.care.help_path import help_path
from campaigns.links import TEST, sample_links_for
from campaigns.tracking import previews
from campaigns.tracking.portal import NotFound
from web.i18n import channel_words, words
from web.pages import (
    PIXEL,
    answer_page,
    contact_page,
    invalid,
    preferences_page,
    unsubscribe_page,
    unsubscribe_scope,
)
from web.render import NO_STORE, page

router = APIRouter(prefix=f"/{TEST}")
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def _open(request: Request, kind: str, token: str) -> previews.Preview:
    state = request.app.state
    return previews.open_link(state.registry, state.signer, kind, token)


def _links(request: Request, preview: previews.Preview):
    state = request.app.state
    return sample_links_for(state.settings.public_base_url, state.signer, preview.sample)


def _done(request: Request, preview: previews.Preview, title_key: str, *paragraphs: str):
    """What a POST shows: that nothing changed, then what the subscriber would read."""
    t = words(preview.locale, request.app.state.settings.brand_name)
    return page(
        request,
        "notice.html",
        preview.locale,
        title_key,
        preview=True,
        message=t["preview_done"],
        paragraphs=list(paragraphs),
    )


@router.api_route("/m/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
def lesson(request: Request, token: str) -> HTMLResponse:
    state = request.app.state
    try:
        preview = _open(request, "m", token)
        email = previews.lesson(
            state.renderer, state.signer, state.settings.public_base_url, preview
        )
    except NotFound:
        return invalid(request, "m")
    t = words(preview.locale, state.settings.brand_name)
    banner = (
        '<p role="status" style="margin:0;padding:10px 16px;background:#fff4ce;color:#4d3500;'
        'font:600 16px Arial,sans-serif;text-align:center;border-bottom:2px solid #4d3500">'
        f"{html.escape(t['preview_banner'])}</p>"
    )
    body = _BODY.search(email.html)
    at = body.end() if body else 0
    return HTMLResponse(email.html[:at] + banner + email.html[at:], headers=NO_STORE)


@router.api_route("/o/{token}", methods=["GET", "HEAD"])
def pixel(request: Request, token: str) -> Response:
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.api_route("/l/{token}/{link_id}", methods=["GET", "HEAD"])
def follow(request: Request, token: str, link_id: str) -> Response:
    state = request.app.state
    try:
        preview = _open(request, "l", token)
        url = previews.destination(
            state.renderer, state.signer, state.settings.public_base_url, preview, link_id
        )
    except NotFound:
        return invalid(request, "l")
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_form(request: Request, token: str) -> HTMLResponse:
    try:
        preview = _open(request, "u", token)
    except NotFound:
        return invalid(request, "u")
    return unsubscribe_page(request, preview.locale, preview.stops(None), preview.has, preview=True)


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    scope = unsubscribe_scope(await request.form())
    try:
        preview = _open(request, "u", token)
    except NotFound:
        return invalid(request, "u")
    stopped = preview.stops(scope)
    still = tuple(c for c in preview.has if c not in stopped)
    t = words(preview.locale, request.app.state.settings.brand_name)
    said = [t["unsub_done"].replace("{what}", channel_words(t, stopped))]
    if still:
        said.append(t["unsub_still"].replace("{what}", channel_words(t, still)).rstrip(":") + ".")
    return _done(request, preview, "unsub_title", *said)


@router.get("/p/{token}", response_class=HTMLResponse)
def preferences_form(request: Request, token: str) -> HTMLResponse:
    try:
        preview = _open(request, "p", token)
    except NotFound:
        return invalid(request, "p")
    return _preferences(request, preview, saved=False)


@router.post("/p/{token}", response_class=HTMLResponse)
def preferences_save(request: Request, token: str) -> HTMLResponse:
    try:
        preview = _open(request, "p", token)
    except NotFound:
        return invalid(request, "p")
    t = words(preview.locale, request.app.state.settings.brand_name)
    return _done(request, preview, "prefs_title", t["prefs_saved"])


def _preferences(request: Request, preview: previews.Preview, **ctx) -> HTMLResponse:
    unsubscribe_url = _links(request, preview).unsubscribe
    return preferences_page(
        request, preview.locale, preview.preferences(), preview.has, unsubscribe_url,
        preview=True, **ctx,
    )  # fmt: skip


def _caller(preview: previews.Preview) -> Caller:
    return Caller(preview.locale, None, "email" in preview.has, "sms" in preview.has)


@router.api_route("/c/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
def contact_form(request: Request, token: str) -> HTMLResponse:
    try:
        preview = _open(request, "c", token)
    except NotFound:
        return invalid(request, "c")
    return contact_page(request, _caller(preview), preview=True)


@router.post("/c/{token}", response_class=HTMLResponse)
async def contact_request(request: Request, token: str) -> HTMLResponse:
    """Checked as a real request is, so the marketer sees the same errors; not recorded."""
    values = form_values(await request.form())
    state = request.app.state
    try:
        preview = _open(request, "c", token)
    except NotFound:
        return invalid(request, "c")
    caller = _caller(preview)
    try:
        caller.choice(values, state.settings.default_country)
    except Refused as refused:
        return contact_page(request, caller, values, refused.error, status=400, preview=True)
    t = words(preview.locale, state.settings.brand_name)
    help = help_path(state.renderer.sender, None, t["lang"])
    done = t["contact_done"].format(reply=help.reply_within, number=help.emergency_number)
    return _done(request, preview, "contact_title", done)


def _answer(request: Request, token: str):
    state = request.app.state
    return previews.open_answer(state.registry, state.signer, token)


@router.get("/a/{token}", response_class=HTMLResponse)
def answer_form(request: Request, token: str) -> HTMLResponse:
    try:
        preview, value = _answer(request, token)
    except NotFound:
        return invalid(request, "a")
    view = (preview.locale, None, list(preview.step.question.values), value)
    return answer_page(request, view, chosen=value, preview=True)


@router.post("/a/{token}", response_class=HTMLResponse)
def answer_save(request: Request, token: str) -> HTMLResponse:
    try:
        preview, _ = _answer(request, token)
    except NotFound:
        return invalid(request, "a")
    state = request.app.state
    t = words(preview.locale, state.settings.brand_name)
    help = help_path(state.renderer.sender, None, t["lang"])
    done = t["answer_done"]
    warning = t["answer_not_watched"].replace("{number}", help.emergency_number)
    return _done(request, preview, "answer_title", done, warning)


@router.api_route("/{rest:path}", methods=["GET", "HEAD", "POST"], response_class=HTMLResponse)
def not_a_preview(request: Request, rest: str = "") -> HTMLResponse:
    """Anything else under /t/ is no test link of ours."""
    kind = rest.split("/", 1)[0]
    return invalid(request, kind if kind in ("m", "c", "p", "u", "a") else "l")
