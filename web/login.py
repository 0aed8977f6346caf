"""Signing in to the workspace and out of it (campaigns.staff.sessions, web/access.py).

    GET  /admin/login    the form (?next=/admin/... : where to go after; only a path of
                         the workspace is honoured, anything else goes to /admin)
    POST /admin/login    name, password, next: 303 to next with the session cookie; a
                         wrong name or password gets the form again (401, not saying
                         which was wrong); too many failures a 429 page
    POST /admin/logout   csrf_token: ends the session (its row is deleted) and the cookie

The sign-in form posts no CSRF token (there is no session yet); the same-origin rule
(web/origin.py) keeps other sites from posting it.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from campaigns.db import transaction
from campaigns.staff import accounts, sessions
from web.access import (
    LOGIN_PATH,
    bootstrap_of,
    clear_session_cookie,
    client_of,
    cookie_name,
    count_login,
    lifetimes_of,
    login_wait,
    refused,
    safe_next,
    set_session_cookie,
    too_many,
)
from web.origin import require_same_origin
from web.render import admin_page

router = APIRouter(prefix="/admin")
SameOrigin = Depends(require_same_origin)
MAX_NAME = 80


def _form(next_path: str, status_code: int = 200, error: str = "", name: str = "") -> HTMLResponse:
    return admin_page(
        "admin_login.html",
        None,
        status_code,
        title="Sign in",
        error=error,
        name=name,
        next=next_path,
    )


def _closed(request: Request) -> None:
    state = request.app.state
    if bootstrap_of(state.settings) is None:
        with state.factory() as session:
            if not accounts.any_enabled(session):
                raise HTTPException(
                    503,
                    "admin pages are off: set ADMIN_PASSWORD or add a staff account "
                    "(drip users add)",
                )


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "") -> HTMLResponse:
    _closed(request)
    return _form(safe_next(next))


@router.post("/login", dependencies=[SameOrigin])
def login(
    request: Request,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    _closed(request)
    state = request.app.state
    settings = state.settings
    target = safe_next(next)
    name = name.strip()
    shown = name[:MAX_NAME]
    if not name or not password:
        return _form(target, 400, "Give your name and your password.", shown)
    wait = login_wait(request, name)
    if wait is not None:
        return too_many(wait)
    with transaction(state.factory) as session:
        started = sessions.sign_in(
            session,
            state.clock,
            name,
            password,
            bootstrap=bootstrap_of(settings),
            lifetimes=lifetimes_of(settings),
            origin=client_of(request),
        )
    count_login(request, name, started is not None)
    if started is None:
        return _form(target, 401, "That name and password do not match an account.", shown)
    response = RedirectResponse(target, status_code=303)
    response.headers["Cache-Control"] = "no-store"
    set_session_cookie(response, settings, started.token)
    return response


@router.post("/logout", dependencies=[SameOrigin])
def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    state = request.app.state
    settings = state.settings
    token = request.cookies.get(cookie_name(settings), "")
    boot, lifetimes = bootstrap_of(settings), lifetimes_of(settings)
    with transaction(state.factory) as session:
        signed = (
            sessions.find(session, state.clock, token, bootstrap=boot, lifetimes=lifetimes)
            if token
            else None
        )
        if signed is not None:
            if not secrets.compare_digest(csrf_token.encode(), signed.csrf.encode()):
                raise refused(
                    None,
                    "Form refused",
                    "This sign-out did not carry this session's token. Reload the page and "
                    "use its Sign out button.",
                )
            sessions.sign_out(
                session,
                state.clock,
                token,
                bootstrap=boot,
                lifetimes=lifetimes,
                origin=client_of(request),
            )
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.headers["Cache-Control"] = "no-store"
    clear_session_cookie(response, settings)
    return response
