"""Who is asking, and may they: the one dependency every staff page and action uses.

    staff: Staff = Depends(need("people"))

`need(area)` answers with a `Staff` (its `actor` for campaigns.staff.audit) when the
request is signed in with a role that may use the area (campaigns.staff.roles), and
refuses otherwise with a 403 page. On a POST (any unsafe method) it also checks that the
form came from PUBLIC_BASE_URL's origin (web/origin.py) and, for a browser session, that
it echoes the session's CSRF token in the hidden field CSRF_FIELD (`{{ csrf }}` in every
workspace page's context, web/render.admin_page); a missing or wrong token gets a 403 page.

Signed in means one of:
- a session cookie from /admin/login (campaigns.staff.sessions): HttpOnly, SameSite=Lax,
  and Secure with the `__Host-` prefix when PUBLIC_BASE_URL is https;
- HTTP basic credentials of a staff account or of the bootstrap admin (ADMIN_USER /
  ADMIN_PASSWORD), for scripts. Such a request carries no cookie, so it has no CSRF
  token to echo; the same-origin rule still holds for its posts.

Not signed in: a browser asking for a page is sent to /admin/login?next=<the page>; any
other request gets a 401 asking for basic credentials. With no ADMIN_PASSWORD and no
enabled staff account every route answers 503, so a fresh install is closed, not open.

Failed sign-ins (form or basic) are counted per name and per client address
(LOGIN_FAILURES_PER_NAME, LOGIN_FAILURES_PER_CLIENT; workers/request_limits.py, shared
through Redis when it is set); past either, sign-in is refused with a 429 until the
window passes, even with the right password.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from campaigns.db import transaction
from campaigns.staff import accounts, sessions
from campaigns.staff.accounts import Bootstrap, Who
from campaigns.staff.audit import Actor
from campaigns.staff.roles import ADMIN, may
from campaigns.staff.sessions import Lifetimes
from web.origin import require_same_origin
from web.render import admin_page

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REALM = 'Basic realm="drip admin", charset="UTF-8"'
LOGIN_PATH = "/admin/login"
HOME = "/admin"


@dataclass(frozen=True)
class Staff:
    actor: Actor
    csrf: str = ""  # the token a form must echo back in CSRF_FIELD; "" for basic auth

    @property
    def name(self) -> str:
        return self.actor.name

    @property
    def role(self) -> str:
        return self.actor.role


class Refusal(Exception):
    """A page answered instead of the route's: the sign-in redirect, or a 403 or 429 page
    (HTTPException would answer JSON). web/app.py turns it into its response."""

    def __init__(self, response: Response):
        super().__init__(response.status_code)
        self.response = response


async def refusal_response(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return exc.response


# ---------------------------------------------------------------- settings


def bootstrap_of(settings) -> Bootstrap | None:
    secret = settings.admin_password
    password = secret.get_secret_value() if secret is not None else ""
    if not password:
        return None
    return Bootstrap(settings.admin_user, password, settings.secret_key.get_secret_value().encode())


def lifetimes_of(settings) -> Lifetimes:
    return Lifetimes(
        idle=timedelta(minutes=settings.staff_session_idle_minutes),
        absolute=timedelta(hours=settings.staff_session_max_hours),
    )


def secure_cookies(settings) -> bool:
    return settings.public_base_url.startswith("https://")


def cookie_name(settings) -> str:
    # __Host-: the browser keeps it only if Secure, for this host alone and path /, so no
    # sibling subdomain can set or shadow it.
    return "__Host-drip_staff" if secure_cookies(settings) else "drip_staff"


def set_session_cookie(response: Response, settings, token: str) -> None:
    response.set_cookie(
        cookie_name(settings),
        token,
        max_age=settings.staff_session_max_hours * 3600,
        path="/",
        secure=secure_cookies(settings),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings) -> None:
    response.delete_cookie(
        cookie_name(settings),
        path="/",
        secure=secure_cookies(settings),
        httponly=True,
        samesite="lax",
    )


# ---------------------------------------------------------------- requests


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization") or ""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        text = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")  # credentials that cannot be read are wrong ones, not none
    user, _, password = text.partition(":")
    return user, password


def _wants_page(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of the workspace on this site, else HOME. An
    absolute URL, a scheme-relative `//host`, a backslash (which browsers read as a slash)
    or a control character could send a freshly signed-in person to another site."""
    if not value or len(value) > 2000 or "\\" in value or not value.isprintable():
        return HOME
    if value.startswith("//") or " " in value:
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    if parts.path != HOME and not parts.path.startswith(HOME + "/"):
        return HOME
    if parts.path in (LOGIN_PATH, "/admin/logout"):
        return HOME
    return value


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"{LOGIN_PATH}?next={quote(here, safe='')}", status_code=303)
    response.headers["Cache-Control"] = "no-store"
    clear_session_cookie(response, request.app.state.settings)  # a stale one, if any
    return response


def _any_account(request: Request) -> bool:
    with request.app.state.factory() as session:
        return accounts.any_enabled(session)


# ---------------------------------------------------------------- sign-in limits


def login_wait(request: Request, name: str) -> float | None:
    """Seconds until sign-in is allowed again for this name or this client, or None."""
    limits = request.app.state.runtime.request_limits
    client = client_of(request) or "unknown"
    waits = [
        limits.blocked("login_name", accounts.normal_name(name) or "?"),
        limits.blocked("login_client", client),
    ]
    waits = [w for w in waits if w is not None]
    return max(waits) if waits else None


def count_login(request: Request, name: str, ok: bool) -> None:
    limits = request.app.state.runtime.request_limits
    key = accounts.normal_name(name) or "?"
    if ok:
        limits.clear("login_name", key)  # not one typo from a lock after a good sign-in
        return
    limits.hit("login_name", key)
    limits.hit("login_client", client_of(request) or "unknown")


def too_many(wait: float, staff: Staff | None = None) -> Response:
    log.warning("staff sign-in refused: too many failures (retry in %.0f s)", wait)
    minutes = max(1, math.ceil(wait / 60))
    response = admin_page(
        "admin_notice.html",
        staff,
        429,
        title="Too many attempts",
        message=(
            "Too many failed sign-ins for this name or from this address. "
            f"Try again in about {minutes} minute(s), or ask an admin to reset the password."
        ),
        detail=None,
        back=LOGIN_PATH,
    )
    response.headers["Retry-After"] = str(math.ceil(wait))
    return response


# ---------------------------------------------------------------- the dependencies


def _check_basic(request: Request, name: str, password: str, boot: Bootstrap | None) -> Who:
    state = request.app.state
    wait = login_wait(request, name)
    if wait is not None:
        raise Refusal(too_many(wait))
    with transaction(state.factory) as session:
        who = sessions.authenticate(
            session,
            state.clock,
            name,
            password,
            bootstrap=boot,
            origin=client_of(request),
            method="basic",
        )
    count_login(request, name, who is not None)
    if who is None:
        raise HTTPException(401, "wrong name or password", headers={"WWW-Authenticate": REALM})
    return who


def basic_staff(request: Request) -> Staff:
    """Basic credentials only (for /metrics, scraped by a machine): a 401 without them."""
    credentials = basic_credentials(request)
    if credentials is None:
        raise HTTPException(401, "basic credentials required", headers={"WWW-Authenticate": REALM})
    who = _check_basic(request, *credentials, bootstrap_of(request.app.state.settings))
    return Staff(Actor(who.name, who.role, client_of(request)))


def current_staff(request: Request) -> Staff:
    """The signed-in staff member, by session cookie or basic credentials (see above)."""
    state = request.app.state
    settings = state.settings
    boot = bootstrap_of(settings)
    origin = client_of(request)
    token = request.cookies.get(cookie_name(settings))
    if token:
        with transaction(state.factory) as session:
            signed = sessions.find(
                session, state.clock, token, bootstrap=boot, lifetimes=lifetimes_of(settings)
            )
        if signed is not None:
            return Staff(Actor(signed.who.name, signed.who.role, origin), signed.csrf)
    if boot is None and not _any_account(request):
        raise HTTPException(
            503, "admin pages are off: set ADMIN_PASSWORD or add a staff account (drip users add)"
        )
    credentials = basic_credentials(request)
    if credentials is None:
        if _wants_page(request):
            raise Refusal(_to_login(request))
        raise HTTPException(
            401,
            f"sign in at {LOGIN_PATH}, or send basic credentials",
            headers={"WWW-Authenticate": REALM},
        )
    who = _check_basic(request, *credentials, boot)
    return Staff(Actor(who.name, who.role, origin))


def refused(staff: Staff | None, title: str, message: str, back: str = HOME) -> Refusal:
    return Refusal(
        admin_page(
            "admin_notice.html", staff, 403, title=title, message=message, detail=None, back=back
        )
    )


async def check_form(request: Request, staff: Staff) -> None:
    """A post must come from our own origin and, from a browser session, carry its token."""
    require_same_origin(request)
    if not staff.csrf:
        return  # basic auth: no cookie, so no token to echo (and nothing to ride on)
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not secrets.compare_digest(sent.encode(), staff.csrf.encode()):
        raise refused(
            staff,
            "Form refused",
            "This form did not carry this session's token: it is from an older sign-in, "
            "or from another site. Go back, reload the page and try again.",
        )


def need(area: str) -> Callable[..., Awaitable[Staff]]:
    may(ADMIN, area)  # an unknown area fails at import, not on a request

    async def dependency(
        request: Request, staff: Annotated[Staff, Depends(current_staff)]
    ) -> Staff:
        if not may(staff.role, area):
            raise refused(
                staff,
                "Not for your role",
                f"The {staff.role} role does not open this part of the workspace ({area}).",
            )
        if request.method not in SAFE_METHODS:
            await check_form(request, staff)
        return staff

    return dependency
