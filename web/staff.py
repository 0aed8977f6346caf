"""The staff accounts page (campaigns.staff.accounts), for admins only (area "staff").

    GET  /admin/staff                  every account: name, display name, role, created,
                                       last sign-in, disabled or not, live sessions; the
                                       bootstrap admin (ADMIN_USER), read-only; the add form
    POST /admin/staff                  name, display_name, role, password, password_again:
                                       303 to the new account's page
    GET  /admin/staff/{name}           one account and its actions (?done=... says which
                                       one just happened)
    POST /admin/staff/{name}/role      role
    POST /admin/staff/{name}/disable   its sessions end at once
    POST /admin/staff/{name}/enable
    POST /admin/staff/{name}/password  password, password_again: every session it has ends

The work, its rules and its audit entries are campaigns.staff.accounts', the same calls as
`drip users`, each in one transaction here. Nobody may disable their own account or change
its role, so the admin acting always remains an admin who can sign in.

An admin types the first password twice (the form says autocomplete=new-password, so a
browser's password manager may propose a strong one) rather than getting one generated and
shown once: nothing makes staff change a password at first sign-in, so a generated one
would not be one-time, only a secret printed in a page; typed, it follows the CLI's rules.
Bad input shows the page again with the reason (400) and what was typed, but passwords.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from campaigns.db import transaction
from campaigns.staff import accounts, audit, sessions
from campaigns.staff.accounts import AccountError, NoAccount
from campaigns.staff.roles import ROLES, areas_for
from web.access import LOGIN_PATH, Staff, bootstrap_of, clear_session_cookie, lifetimes_of, need
from web.render import NAV, admin_page

router = APIRouter(prefix="/admin")
Admin = Annotated[Staff, Depends(need("staff"))]
HOME = "/admin/staff"
# What the account page says after an action (a fixed text: nothing from the URL is shown).
DONE = {
    "added": "Account added. Give its name and password to its holder by another channel.",
    "role": "Role changed; it applies from the account's next page.",
    "disabled": "Account disabled; its sessions have ended.",
    "enabled": "Account enabled; it signs in with the password it had.",
    "password": "New password set; every session of the account has ended.",
    "unchanged": "Nothing to change: it already was so.",
}
DIFFER = "The two passwords differ; type them again."
_LABELS = {area: label for area, _href, label in NAV}


def _roles() -> list[tuple[str, str]]:
    """Each role with the pages it opens, in the words of the navigation."""
    return [
        (role, ", ".join(_LABELS.get(a, a.capitalize()) for a in areas_for(role))) for role in ROLES
    ]


def _url(name: str) -> str:
    return f"{HOME}/{quote(accounts.normal_name(name), safe='')}"


def _list_page(
    request: Request, staff: Staff, status: int = 200, error: str = "", typed: dict | None = None
) -> HTMLResponse:
    state = request.app.state
    boot = bootstrap_of(state.settings)
    with state.factory() as session:
        rows = accounts.listing(session)
        live = sessions.live_counts(session, state.clock, lifetimes_of(state.settings), boot)
        last = audit.entries(session, limit=1, actor=boot.name, action="login") if boot else []
    return admin_page(
        "admin_staff.html",
        staff,
        status,
        title="Staff accounts",
        accounts=rows,
        live=live,
        bootstrap=boot and boot.name,
        bootstrap_user=state.settings.admin_user,
        bootstrap_last=last[0].at if last else None,
        roles=_roles(),
        error=error,
        typed=typed or {"name": "", "display_name": "", "role": ""},
    )


def _missing(staff: Staff, name: str) -> HTMLResponse:
    return admin_page(
        "admin_notice.html",
        staff,
        404,
        title="No such account",
        message=f"There is no staff account {accounts.normal_name(name)!r}.",
        detail=None,
        back=HOME,
    )


def _account_page(
    request: Request, staff: Staff, name: str, status: int = 200, error: str = "", done: str = ""
) -> HTMLResponse:
    state = request.app.state
    with state.factory() as session:
        try:
            account = accounts.info(session, name)
        except NoAccount:
            return _missing(staff, name)
        live = sessions.live_counts(session, state.clock, lifetimes_of(state.settings), None)
    return admin_page(
        "admin_staff_account.html",
        staff,
        status,
        title=f"Staff account {account.name}",
        account=account,
        sessions=live.get(account.name, 0),
        is_self=account.name == staff.name,
        roles=_roles(),
        error=error,
        done=DONE.get(done, ""),
        url=_url(account.name),
    )


Work = Callable[..., object]


def _change(request: Request, staff: Staff, name: str, work: Work, done: str) -> Response:
    """Do `work(session, clock, actor)` in one transaction, then show the account again."""
    state = request.app.state
    try:
        with transaction(state.factory) as session:
            changed = work(session, state.clock, staff.actor)
    except NoAccount:
        return _missing(staff, name)
    except AccountError as exc:
        return _account_page(request, staff, name, 400, error=str(exc))
    done = done if changed is not False else "unchanged"
    return RedirectResponse(f"{_url(name)}?done={done}", status_code=303)


Text = Annotated[str, Form()]


@router.get("/staff", response_class=HTMLResponse)
def staff_list(request: Request, staff: Admin) -> HTMLResponse:
    return _list_page(request, staff)


@router.post("/staff", response_class=HTMLResponse)
def staff_add(
    request: Request,
    staff: Admin,
    name: Text = "",
    display_name: Text = "",
    role: Text = "",
    password: Text = "",
    password_again: Text = "",
) -> Response:
    typed = {"name": name[:80], "display_name": display_name[:200], "role": role[:20]}
    if password != password_again:
        return _list_page(request, staff, 400, DIFFER, typed)
    state = request.app.state
    try:
        with transaction(state.factory) as session:
            row = accounts.add(
                session,
                state.clock,
                staff.actor,
                name,
                role,
                password,
                display_name,
                bootstrap_name=state.settings.admin_user,
            )
            added = row.name
    except AccountError as exc:
        return _list_page(request, staff, 400, str(exc), typed)
    return RedirectResponse(f"{_url(added)}?done=added", status_code=303)


@router.get("/staff/{name}", response_class=HTMLResponse)
def staff_account(request: Request, staff: Admin, name: str, done: str = "") -> HTMLResponse:
    return _account_page(request, staff, name, done=done)


@router.post("/staff/{name}/role", response_class=HTMLResponse)
def staff_set_role(request: Request, staff: Admin, name: str, role: Text = "") -> Response:
    return _change(
        request, staff, name, lambda s, c, a: accounts.set_role(s, c, a, name, role), "role"
    )


@router.post("/staff/{name}/disable", response_class=HTMLResponse)
def staff_disable(request: Request, staff: Admin, name: str) -> Response:
    return _change(
        request, staff, name, lambda s, c, a: accounts.disable(s, c, a, name), "disabled"
    )


@router.post("/staff/{name}/enable", response_class=HTMLResponse)
def staff_enable(request: Request, staff: Admin, name: str) -> Response:
    return _change(request, staff, name, lambda s, c, a: accounts.enable(s, c, a, name), "enabled")


@router.post("/staff/{name}/password", response_class=HTMLResponse)
def staff_reset_password(
    request: Request, staff: Admin, name: str, password: Text = "", password_again: Text = ""
) -> Response:
    if password != password_again:
        return _account_page(
            request, staff, name, 400, "The two passwords differ; type them again."
        )
    answer = _change(
        request,
        staff,
        name,
        lambda s, c, a: accounts.reset_password(s, c, a, name, password),
        "password",
    )
    if answer.status_code != 303 or accounts.normal_name(name) != staff.name:
        return answer
    # Their own: this session has ended with the others, so the next step is signing in.
    response = admin_page(
        "admin_notice.html",
        None,
        title="Password changed",
        message="Your password is changed and every session of yours has ended, this one too.",
        detail="Sign in with the new password.",
        back=LOGIN_PATH,
    )
    clear_session_cookie(response, request.app.state.settings)
    return response
