"""Subscriber pages behind the links in every message. Routes are thin: they resolve the
signed token, call campaigns.tracking.portal, and render a small page in the subscriber's language.

    GET  /m/{token}   the lesson online (records a click)       GET  /o/{token}  open pixel
    GET  /c/{token}   request-a-call form     POST /c/{token}   record the request
    GET  /p/{token}   preferences             POST /p/{token}   save them
    GET  /u/{token}   confirm unsubscribing   POST /u/{token}   unsubscribe (RFC 8058 one-click)
    GET  /l/{token}/{link id}   a page the lesson links to (records a click, redirects)
    GET  /a/{token}   a check-in answer: the value, to confirm   POST /a/{token}  record it
    GET  /privacy, /terms   the texts in LEGAL_DIR (unless PRIVACY_URL, TERMS_URL say elsewhere)

A test message's links open the same pages as previews, under /t/ (web/previews.py).
Every page names only the channels the person has (campaigns.tracking.portal.reachable).

GETs never change a subscriber's state (mail scanners open every link); a bad or forged
token gets a 404 page that says so, titled for the page it meant to open, and changes
nothing. The pages that record an open or
a click answer HEAD too, and record it as a machine's (campaigns.tracking.machine judges
every one; a machine's is kept, not counted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from types import SimpleNamespace

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from campaigns.audience.emergency import country_of
from campaigns.care import contact_choices, contact_queue
from campaigns.care.help_path import help_path
from campaigns.db import transaction
from campaigns.links import links_for
from campaigns.states import CHANNELS, EventType
from campaigns.tracking import answers, portal
from web import hits
from web.i18n import accepted_lang, channel_words, words
from web.render import NO_STORE, invalid_link, page

router = APIRouter()
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _deps(request: Request):
    return request.app.state  # registry, renderer, signer, factory, clock: web/app.py


_page = page


# Each kind of link's page title, on its invalid-link page too.
TITLES = {
    "m": "lesson_title",
    "l": "link_title",
    "u": "unsub_title",
    "p": "prefs_title",
    "c": "contact_title",
    "a": "answer_title",
    "o": "lesson_title",
}


def invalid(request: Request, kind: str, locale: str | None = None) -> HTMLResponse:
    return invalid_link(request, TITLES[kind], locale)


def _evidence(request: Request) -> dict:
    # Proof of who asked and how, without storing the full address of the client.
    return {"user_agent": (request.headers.get("user-agent") or "")[:200], "via": "link"}


def _engage(request: Request, purpose: str, token: str, kind: str):
    detail = {"route": purpose}
    return hits.record_now(_deps(request), request, purpose, token, kind, purpose, detail)


@router.api_route("/o/{token}", methods=["GET", "HEAD"])
async def open_pixel(request: Request, token: str) -> Response:
    """Queued with Redis, on the event loop; recorded in the request (a thread) without
    it, or when the queue cannot take it (web/hits.py)."""
    state = _deps(request)
    try:
        public = hits.signed(state, "o", token)
    except portal.NotFound:
        public = None  # forged: nothing recorded, and the pixel all the same
    if public is not None:
        detail = {"route": "o"}
        hit_id = await hits.queue_async(state, request, public, EventType.OPENED, "o", detail)
        if hit_id is not None:
            await run_in_threadpool(_record_open, request, token, detail, hit_id)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


def _record_open(request: Request, token: str, detail: dict, hit_id: str) -> None:
    state = _deps(request)
    with contextlib.suppress(portal.NotFound):  # a pixel never shows an error page
        hits.record_now(state, request, "o", token, EventType.OPENED, "o", detail, hit_id)


@router.api_route("/l/{token}/{link_id}", methods=["GET", "HEAD"])
async def follow_link(request: Request, token: str, link_id: str) -> Response:
    """Only ever to a URL the message was rendered with (campaigns.tracking.redirects).
    A message's targets already looked up in this process answer on the event loop."""
    state = _deps(request)
    try:
        public = hits.signed(state, "l", token)
        url = hits.known_target(state, public, link_id)
        if url is None:
            visit = await hits.look_up_async(state, public)
            targets = hits.quick_targets(state, visit)
            if targets is None:
                targets = await run_in_threadpool(hits.targets_of, state, visit)
            if link_id not in targets:
                raise portal.NotFound("this link is not valid")
            url = targets[link_id]
    except portal.NotFound:
        return invalid(request, "l")
    link = f"l:{link_id}"
    detail = {"route": "l", "link": link_id, "url": url[:500]}
    hit_id = await hits.queue_async(state, request, public, EventType.CLICKED, link, detail)
    if hit_id is not None:
        try:
            await run_in_threadpool(
                hits.record_now, state, request, "l", token, EventType.CLICKED, link, detail, hit_id
            )
        except portal.NotFound:
            return invalid(request, "l")
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


@router.api_route("/l", methods=["GET", "HEAD"], response_class=HTMLResponse)
@router.api_route("/l/{rest:path}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def not_a_link(request: Request, rest: str = "") -> HTMLResponse:
    """Anything else under /l/ is no link of ours: the invalid-link page, never a redirect."""
    return invalid(request, "l")


@router.api_route("/m/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def read_online(request: Request, token: str) -> HTMLResponse:
    state = _deps(request)
    try:
        public = hits.signed(state, "m", token)
        detail = {"route": "m"}
        # The push and the read at once: each waits on a round trip of its own.
        hit_id, visit = await asyncio.gather(
            hits.queue_async(state, request, public, EventType.CLICKED, "m", detail),
            hits.look_up_async(state, public),
        )
        if hit_id is not None:
            await run_in_threadpool(
                hits.record_now, state, request, "m", token, EventType.CLICKED, "m", detail, hit_id
            )
    except portal.NotFound:
        return invalid(request, "m")
    page = hits.lesson_page(state, visit, quick=True)
    if page is None:
        page = await run_in_threadpool(hits.lesson_page, state, visit)
    locale, html = page
    if html is None:
        return invalid(request, "m", locale)
    return HTMLResponse(html, headers=NO_STORE)


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_form(request: Request, token: str) -> HTMLResponse:
    state = _deps(request)
    try:
        with state.factory() as session:
            visit = portal.resolve(session, state.signer, "u", token)
            first = portal.channels_to_stop(visit, None)
            has = portal.reachable(visit.subscriber)
    except portal.NotFound:
        return invalid(request, "u")
    return unsubscribe_page(request, visit.subscriber.locale, first, has)


def unsubscribe_page(request: Request, locale: str | None, first, has, **ctx) -> HTMLResponse:
    """Names what each button stops: the channel the link came in, and, when the person
    has more than one, all of them."""
    t = words(locale, request.app.state.settings.brand_name)
    if not has:  # no address left on the record (erased): nothing to offer or to stop
        return _page(request, "notice.html", locale, "unsub_title", message=t["unsub_nothing"])
    first_scope = "all" if set(first) == set(has) and len(has) > 1 else first[0]
    return _page(
        request,
        "unsubscribe.html",
        locale,
        "unsub_title",
        ask=t["unsub_ask"].replace("{what}", channel_words(t, first)),
        first_scope=first_scope,
        first_button=t["unsub_stop"].replace("{what}", channel_words(t, first)),
        all_button=(
            t["unsub_all"].replace("{what}", channel_words(t, has))
            if len(has) > len(first)
            else None
        ),
        **ctx,
    )


def unsubscribe_done(request: Request, locale: str | None, stopped, still, prefs_url, **ctx):
    t = words(locale, request.app.state.settings.brand_name)
    if not stopped:
        return _page(request, "notice.html", locale, "unsub_title", message=t["unsub_nothing"])
    follow = None
    if still:
        text = t["unsub_still"].replace("{what}", channel_words(t, still))
        follow = {"text": text, "url": prefs_url, "label": t["prefs_title"]}
    done = t["unsub_done"].replace("{what}", channel_words(t, stopped))
    return _page(request, "notice.html", locale, "unsub_title", message=done, follow=follow, **ctx)


def unsubscribe_scope(form) -> str | None:
    """The button pressed; None for RFC 8058's one-click POST (List-Unsubscribe=One-Click),
    which means the channel the link came in."""
    scope = form.get("scope")
    return scope if scope in ("email", "sms", "all") else None


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    form = await request.form()
    scope = unsubscribe_scope(form)
    state = _deps(request)

    def act():
        with transaction(state.factory) as session:
            visit = portal.resolve(session, state.signer, "u", token)
            evidence = _evidence(request)
            stopped, still = portal.unsubscribe_from_link(
                session, state.clock, visit, scope, evidence
            )
            links = links_for(
                state.settings.public_base_url, state.signer, visit.message.public_token
            )
            return visit.subscriber.locale, stopped, still, links.preferences

    try:
        locale, stopped, still, prefs_url = await run_in_threadpool(act)
    except portal.NotFound:
        return invalid(request, "u")
    return unsubscribe_done(request, locale, stopped, still, prefs_url)


@router.get("/p/{token}", response_class=HTMLResponse)
async def preferences_form(request: Request, token: str) -> HTMLResponse:
    return await run_in_threadpool(_preferences, request, token, None)


@router.post("/p/{token}", response_class=HTMLResponse)
async def preferences_save(request: Request, token: str) -> HTMLResponse:
    form = await request.form()
    return await run_in_threadpool(
        _preferences,
        request,
        token,
        {"email": form.get("email") == "1", "sms": form.get("sms") == "1"},
    )


def _preferences(request: Request, token: str, wanted: dict | None) -> HTMLResponse:
    state = _deps(request)
    try:
        with transaction(state.factory) as session:
            visit = portal.resolve(session, state.signer, "p", token)
            if wanted is not None:
                prefs = portal.update_preferences(
                    session, state.clock, visit.subscriber, evidence=_evidence(request), **wanted
                )
            else:
                prefs = portal.preferences(session, visit.subscriber)
            blocked = [c for c in CHANNELS if wanted and wanted[c] and not getattr(prefs, c)]
            links = links_for(
                state.settings.public_base_url, state.signer, visit.message.public_token
            )
            locale = visit.subscriber.locale
            has = portal.reachable(visit.subscriber)
    except portal.NotFound:
        return invalid(request, "p")
    return preferences_page(
        request, locale, prefs, has, links.unsubscribe, saved=wanted is not None, blocked=blocked
    )


def preferences_page(request: Request, locale, prefs, has, unsubscribe_url, **ctx):
    t = words(locale, request.app.state.settings.brand_name)
    ctx.setdefault("saved", False)
    ctx.setdefault("blocked", [])
    return _page(
        request,
        "preferences.html",
        locale,
        "prefs_title",
        prefs=prefs,
        unsubscribe_url=unsubscribe_url,
        stop_all=t["unsub_all"].replace("{what}", channel_words(t, has)) if has else None,
        channel_names={c: t[f"ch_{c}"] for c in CHANNELS},
        **ctx,
    )


@router.api_route("/c/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def contact_form(request: Request, token: str) -> HTMLResponse:
    try:
        visit = await run_in_threadpool(_engage, request, "c", token, EventType.CLICKED)
    except portal.NotFound:
        return invalid(request, "c")
    return contact_page(request, contact_choices.Caller.of(visit.subscriber))


def contact_page(
    request: Request, caller, values: dict | None = None, error=None, status=200, **ctx
) -> HTMLResponse:
    """The call-request form, offering only the ways the person can be reached, and a
    phone field when we have no number for them."""
    state = _deps(request)
    t = words(caller.locale, state.settings.brand_name)
    values = values or {}
    return _page(
        request,
        "contact.html",
        caller.locale,
        "contact_title",
        status=status,
        error=t[error[1]] if error else None,
        error_field=error[0] if error else None,
        offered=caller.offered,
        chosen=values.get("preferred_channel") or caller.offered[0],
        ask_phone=not caller.has_phone,
        v=SimpleNamespace(
            phone=values.get("phone", ""),
            preferred_time=values.get("preferred_time", ""),
            note=values.get("note", ""),
        ),
        help=help_path(state.renderer.sender, caller.country, t["lang"]),
        **ctx,
    )


@router.post("/c/{token}", response_class=HTMLResponse)
async def contact_request(request: Request, token: str) -> HTMLResponse:
    form = await request.form()
    values = contact_choices.form_values(form)
    state = _deps(request)

    def act():
        with transaction(state.factory) as session:
            visit = portal.resolve(session, state.signer, "c", token)
            caller = contact_choices.Caller.of(visit.subscriber)
            # Refused (contact_choices.Refused) before anything is written: nothing to undo.
            channel, note, number = caller.choice(values, state.settings.default_country)
            contact_queue.request_contact(
                session,
                state.clock,
                state.registry,
                visit,
                preferred_channel=channel,
                preferred_time=values["preferred_time"],
                note=note,
                callback_phone=number,
            )
            return caller

    try:
        caller = await run_in_threadpool(act)
    except portal.NotFound:
        return invalid(request, "c")
    except contact_choices.Refused as refused:
        return contact_page(request, refused.caller, values, refused.error, status=400)
    t = words(caller.locale, state.settings.brand_name)
    # Worded after the request is committed: nothing here can undo it.
    help = help_path(state.renderer.sender, caller.country, t["lang"])
    done = t["contact_done"].format(reply=help.reply_within, number=help.emergency_number)
    return _page(request, "notice.html", caller.locale, "contact_title", message=done)


# ---------------------------------------------------------------- check-in answers
# The value is health data: it is in no URL (each value's link is signed for it), and
# nothing here logs it.


def _answer_view(request: Request, token: str, act=None):
    """(locale, country, the scale, the value the link stands for); with `act`, calls it
    with the session and the question first, in one transaction."""
    state = _deps(request)
    with transaction(state.factory) as session:
        asked, value = answers.open_link(session, state.registry, state.signer, token)
        if act is not None:
            act(session, asked)
        person = asked.subscriber
        return person.locale, country_of(person), list(asked.question.values), value


def answer_page(request: Request, view, chosen, error=None, status=200, **ctx) -> HTMLResponse:
    locale, country, values, _ = view
    state = _deps(request)
    help = help_path(state.renderer.sender, country, words(locale, "")["lang"])
    return _page(
        request,
        "answer.html",
        locale,
        "answer_title",
        status=status,
        error=error,
        chosen=chosen,
        values=values,
        emergency_number=help.emergency_number,
        **ctx,
    )


@router.get("/a/{token}", response_class=HTMLResponse)
async def answer_form(request: Request, token: str) -> HTMLResponse:
    """Shows the value the link stands for, ready to confirm: records nothing."""
    try:
        view = await run_in_threadpool(_answer_view, request, token)
    except answers.NotAnswerable:
        return invalid(request, "a")
    return answer_page(request, view, chosen=view[3])


@router.post("/a/{token}", response_class=HTMLResponse)
async def answer_save(request: Request, token: str) -> HTMLResponse:
    form = await request.form()
    state = _deps(request)
    raw = str(form.get("value") or "").strip()
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 2 else None

    def act(session, asked):
        if value is None or value not in asked.question.values:
            raise ValueError("not on the scale")
        answers.record(session, state.clock, asked, value, answers.VIA_LINK)

    try:
        view = await run_in_threadpool(_answer_view, request, token, act)
    except answers.NotAnswerable:
        return invalid(request, "a")
    except ValueError:
        view = await run_in_threadpool(_answer_view, request, token)
        t = words(view[0], state.settings.brand_name)
        return answer_page(request, view, chosen=None, error=t["answer_bad"], status=400)
    t = words(view[0], state.settings.brand_name)
    help = help_path(state.renderer.sender, view[1], t["lang"])
    done = (
        t["answer_done"] + " " + t["answer_not_watched"].replace("{number}", help.emergency_number)
    )
    return _page(request, "notice.html", view[0], "answer_title", message=done)


@router.api_route("/a", methods=["GET", "POST"], response_class=HTMLResponse)
@router.api_route("/a/{rest:path}", methods=["GET", "POST"], response_class=HTMLResponse)
async def not_an_answer(request: Request, rest: str = "") -> HTMLResponse:
    """Anything else under /a/ is no answer link of ours: the invalid-link page."""
    return invalid(request, "a")


# ---------------------------------------------------------------- privacy and terms
# Our own pages, linked from every subscriber page's footer unless PRIVACY_URL or
# TERMS_URL names another; their text is the operator's, from LEGAL_DIR.


def _legal(request: Request, kind: str, lang: str | None) -> HTMLResponse:
    settings = request.app.state.settings
    asked = request.headers.get("accept-language")
    lang = words(lang, "")["lang"] if lang else accepted_lang(asked)
    folder = settings.legal_dir
    path = folder / f"{kind}.{lang}.txt"
    text = (path if path.is_file() else folder / f"{kind}.en.txt").read_text(encoding="utf-8")
    text = text.replace("{brand}", settings.brand_name).replace(
        "{postal_address}", settings.postal_address
    )
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    return _page(
        request,
        "notice.html",
        lang,
        f"{kind}_title",
        message=paragraphs[0] if paragraphs else "",
        paragraphs=paragraphs[1:],
    )


@router.get("/privacy", response_class=HTMLResponse)
async def privacy(request: Request, lang: str | None = None) -> HTMLResponse:
    return _legal(request, "privacy", lang)


@router.get("/terms", response_class=HTMLResponse)
async def terms(request: Request, lang: str | None = None) -> HTMLResponse:
    return _legal(request, "terms", lang)
