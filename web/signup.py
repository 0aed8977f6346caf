"""Sign-up and double opt-in pages. Routes are thin: they call campaigns.intake.signup and render
a small page in the visitor's language.

    GET  /signup            the form                POST /signup            sign up
    GET  /confirm/{token}   a button to confirm     POST /confirm/{token}   confirm, enroll

GET never changes state (mail scanners open every link in the confirmation email); a
forged token gets the 404 page and changes nothing. A successful sign-up gets the same
answer whether or not the address was already known, so the form reveals nobody.

The sign-up records that a confirmation is wanted (Subscriber.confirmation_requested_at,
and sms_confirmation_requested_at for the "reply YES" text) and the notify task on the
events queue sends it (the text only within text hours), so a broker hiccup loses nothing. An app
may also set `app.state.send_confirmation(to, email)` to receive the rendered email at
once after the commit (the tests capture it that way).
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from types import SimpleNamespace

from babel.dates import get_timezone_location
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from campaigns.audience.subscribers import InvalidSubscriber, normalize_email, normalize_phone
from campaigns.db import transaction
from campaigns.intake import signup
from campaigns.states import CHANNELS
from campaigns.text import UncleanText
from web.i18n import accepted_lang, words
from web.origin import require_same_origin
from web.render import invalid_link, page

log = logging.getLogger(__name__)
router = APIRouter()
US_ZONES = (
    ("America/New_York", "tz_eastern"),
    ("America/Chicago", "tz_central"),
    ("America/Denver", "tz_mountain"),
    ("America/Phoenix", "tz_arizona"),
    ("America/Los_Angeles", "tz_pacific"),
    ("America/Anchorage", "tz_alaska"),
    ("Pacific/Honolulu", "tz_hawaii"),
    ("America/Puerto_Rico", "tz_puerto_rico"),
)
OTHER_ZONES = (
    "America/Toronto",
    "America/Vancouver",
    "America/Mexico_City",
    "America/Guatemala",
    "America/El_Salvador",
    "America/Tegucigalpa",
    "America/Santo_Domingo",
    "America/Havana",
    "America/Bogota",
    "America/Lima",
    "America/Caracas",
    "America/Santiago",
    "America/Argentina/Buenos_Aires",
    "Europe/London",
    "Europe/Madrid",
    "UTC",
)
# InvalidSubscriber names its field first ("phone: ..."); this says where the message goes
# and which words (web/i18n.py, signup_err_<words>) say it.
FIELD_OF = {
    "first_name": ("first_name", "first_name"),
    "email": ("email", "email"),
    "email or phone": ("email", "email"),
    "phone": ("phone", "phone"),
    "phone_type": ("phone", "phone_type"),
    "phone_country": ("phone", "phone_country"),
    "timezone": ("timezone", "timezone"),
    "locale": ("locale", "locale"),
    "channels": ("channels", "channels"),
    "consent": ("channels", "channels"),
    "sms_consent": ("channels", "channels"),
}
FIELDS = ("first_name", "email", "phone", "timezone", "locale", "form_locale")


def _deps(request: Request):
    return request.app.state  # registry, policy, signer: built once in web/app.py


_page = page


def _invalid(request: Request, title_key: str = "confirm_title") -> HTMLResponse:
    return invalid_link(request, title_key)


def _visitor_lang(request: Request, asked: str | None) -> str:
    if asked:
        return signup.lang(asked)
    return accepted_lang(request.headers.get("accept-language"))


def zone_name(zone: str, lang: str, t: dict[str, str]) -> str:
    """A time zone as a person reads it in their language ("hora de Canadá (Toronto)"),
    from CLDR through Babel; the raw name only for a zone CLDR does not know."""
    if zone == "UTC":
        return t["tz_utc"]
    try:
        return get_timezone_location(zone, locale=lang)
    except (LookupError, ValueError):
        return zone.replace("_", " ")


def _form(
    request: Request, lang: str, values: dict, errors: dict, status: int = 200
) -> HTMLResponse:
    known = {zone for zone, _ in US_ZONES} | set(OTHER_ZONES)
    chosen = values.get("timezone") or ""
    # A zone the browser offered and the visitor kept, shown again rather than lost.
    others = OTHER_ZONES + ((chosen,) if chosen and chosen not in known else ())
    brand = request.app.state.settings.brand_name
    t = words(lang, brand)
    return _page(
        request,
        "signup.html",
        lang,
        "signup_title",
        status=status,
        v=SimpleNamespace(**values),
        errors=errors,
        us_zones=US_ZONES,
        other_zones=[(zone, zone_name(zone, lang, t)) for zone in others],
        other_lang="en" if lang == "es" else "es",
        sms_consent=signup.sms_consent_text(lang, brand),
    )


@router.get("/signup", response_class=HTMLResponse)
async def signup_form(request: Request, lang: str | None = None) -> HTMLResponse:
    page_lang = _visitor_lang(request, lang)
    values = {
        "first_name": "",
        "email": "",
        "phone": "",
        "locale": page_lang,
        "channel_email": True,
        "channel_sms": False,
        "timezone": request.app.state.settings.default_timezone,
        "timezone_chosen": False,
    }
    return _form(request, page_lang, values, {})


def _evidence(request: Request, lang: str, sms: bool) -> dict:
    # Proof of how the person signed up, without storing the client's address (as web.pages).
    evidence = {
        "via": "signup_form",
        "form_locale": lang,
        "user_agent": (request.headers.get("user-agent") or "")[:200],
    }
    if sms:
        evidence["sms_consent_text"] = signup.sms_consent_text(
            lang, request.app.state.settings.brand_name
        )
    return evidence


@router.post("/signup", response_class=HTMLResponse, dependencies=[Depends(require_same_origin)])
async def signup_submit(request: Request) -> HTMLResponse:
    form = await request.form()
    values = {k: str(form.get(k) or "").strip() for k in FIELDS}
    values |= {
        "channel_email": form.get("channel_email") == "1",
        "channel_sms": form.get("channel_sms") == "1",
        "timezone_chosen": True,
    }
    lang = signup.lang(values["form_locale"])
    channels = tuple(c for c in CHANNELS if values[f"channel_{c}"])
    settings = request.app.state.settings
    deps = _deps(request)
    wait = _over_limit(request, values["email"], values["phone"])
    if wait is not None:
        return _too_many(request, lang, wait)

    def act() -> signup.SignupResult:
        with transaction(request.app.state.factory) as session:
            return signup.start_signup(
                session,
                request.app.state.clock,
                email=values["email"],
                phone=values["phone"],
                first_name=values["first_name"],
                locale=values["locale"],
                timezone=values["timezone"],
                channels=channels,
                evidence=_evidence(request, lang, "sms" in channels),
                double_opt_in=settings.double_opt_in,
                signer=deps.signer,
                registry=deps.registry,
                policy=deps.policy,
                campaign_key=settings.signup_campaign,
                sms_countries=settings.sms_countries,
            )

    try:
        result = await run_in_threadpool(act)
    except InvalidSubscriber as exc:
        field, key = FIELD_OF.get(str(exc).split(":", 1)[0], ("channels", "channels"))
        t = words(lang, settings.brand_name)
        shown = t.get(f"signup_err_{key}", str(exc)).replace(
            "{countries}", ", ".join(settings.sms_countries)
        )
        return _form(request, lang, values, {field: shown}, status=400)
    if result.needs_confirmation:
        await run_in_threadpool(_send_confirmation, request, result)
    t = words(lang, settings.brand_name)
    # Decided by what was asked for, never by what was found: reveals nobody.
    waiting = settings.double_opt_in and "email" in channels
    message = t["signup_check_email"] if waiting else t["signup_done"]
    if "sms" in channels:
        message = (message + " " if "email" in channels else "") + t["signup_check_phone"]
    return _page(request, "notice.html", lang, "signup_title", message=message)


def _over_limit(request: Request, email: str, phone: str) -> float | None:
    """Seconds to wait when this client, or this address, has signed up too often."""
    limits = request.app.state.runtime.request_limits
    client = request.client.host if request.client else "unknown"
    wait = limits.hit("signup_client", client)
    # One address however it is typed: the normal form when it parses, else the raw text.
    for key in (_normal(normalize_email, email), _normal(normalize_phone, phone)):
        if wait is None and key:
            wait = limits.hit("signup_address", key)
    return wait


def _normal(normalize, raw: str) -> str:
    if not raw.strip():
        return ""
    try:
        return normalize(raw)
    except (InvalidSubscriber, UncleanText):
        return raw.strip().lower()


def _too_many(request: Request, lang: str, wait: float) -> HTMLResponse:
    t = words(lang, request.app.state.settings.brand_name)
    minutes = max(1, math.ceil(wait / 60))
    response = _page(
        request,
        "notice.html",
        lang,
        "signup_title",
        status=429,
        message=t["too_many"].format(minutes=minutes),
    )
    response.headers["Retry-After"] = str(math.ceil(wait))
    return response


def _send_confirmation(request: Request, result: signup.SignupResult) -> None:
    """After the commit, so the link never names a subscriber that was rolled back."""
    s = request.app.state.settings
    email = signup.confirmation_email(
        s.templates_dir,
        brand=s.brand_name,
        postal_address=s.postal_address,
        locale=result.locale,
        url=signup.confirm_url(s.public_base_url, result.confirm_token),
    )
    send = getattr(request.app.state, "send_confirmation", None)
    if send is None:
        # The request is in the database (confirmation_requested_at); the notify task mails it.
        return
    send(result.confirm_to, email)


async def _ask(request: Request, token: str, template: str, title_key: str) -> HTMLResponse:
    """A confirmation link opened: a page with a button, in the person's language. Opening
    only asks (GET never changes state: mail scanners open every link)."""
    deps = _deps(request)

    def look() -> str | None:
        with request.app.state.factory() as session:
            return signup.subscriber_for_token(session, deps.signer, token).locale

    try:
        locale = await run_in_threadpool(look)
    except signup.SignupNotFound:
        return _invalid(request, title_key)
    return _page(request, template, locale, title_key)


@router.get("/confirm/{token}", response_class=HTMLResponse)
async def confirm_form(request: Request, token: str) -> HTMLResponse:
    return await _ask(request, token, "confirm.html", "confirm_title")


@router.get("/confirm/{token}/stop", response_class=HTMLResponse)
async def stop_form(request: Request, token: str) -> HTMLResponse:
    return await _ask(request, token, "confirm_stop.html", "confirm_stop_title")


@router.post("/confirm/{token}/stop", response_class=HTMLResponse)
async def stop_submit(request: Request, token: str) -> HTMLResponse:
    """The button, or a mail client's one-click unsubscribe (RFC 8058) of the mail."""
    deps = _deps(request)
    state = request.app.state

    def act() -> str | None:
        with transaction(state.factory) as session:
            sub = signup.subscriber_for_token(session, deps.signer, token)
            signup.stop_confirmations(session, state.clock, sub.public_token)
            return sub.locale

    try:
        locale = await run_in_threadpool(act)
    except signup.SignupNotFound:
        return _invalid(request, "confirm_stop_title")
    t = words(locale, state.settings.brand_name)
    return _page(
        request, "notice.html", locale, "confirm_stop_title", message=t["confirm_stop_done"]
    )


@router.post("/confirm/{token}", response_class=HTMLResponse)
async def confirm_submit(request: Request, token: str) -> HTMLResponse:
    deps = _deps(request)
    state = request.app.state
    evidence = {
        "via": "confirm_link",
        "user_agent": (request.headers.get("user-agent") or "")[:200],
    }

    def act() -> str | None:
        with transaction(state.factory) as session:
            sub = signup.subscriber_for_token(session, deps.signer, token)
            signup.confirm(
                session,
                state.clock,
                deps.registry,
                deps.policy,
                sub.public_token,
                campaign_key=state.settings.signup_campaign,
                evidence=evidence,
                link_max_age=timedelta(days=state.settings.confirmation_link_days),
            )
            return sub.locale

    try:
        locale = await run_in_threadpool(act)
    except signup.SignupNotFound:
        return _invalid(request)
    t = words(locale, state.settings.brand_name)
    return _page(request, "notice.html", locale, "confirm_title", message=t["confirm_done"])
