"""Sign-in sessions of the workspace, kept server-side.

The browser's cookie holds 256 random bits; the table keeps only their SHA-256, so the
token is found by an indexed look-up and a copy of the table signs nobody in. A session
ends when it goes unused for the idle time, when the absolute time since sign-in passes,
at sign-out, and at once when its account is disabled or given a new password (the rows
are deleted), whatever the cookie says. Each session has its own CSRF token, which every
form of the workspace echoes back.

Every sign-in, failed sign-in and sign-out is written to the audit log, with the name
that was tried as the actor and never the password.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import StaffAccount, StaffSession
from campaigns.staff import accounts, audit
from campaigns.staff.accounts import Bootstrap, Who
from campaigns.staff.audit import Actor
from campaigns.staff.roles import ADMIN

# seen_at is written at most this often per session: not a write on every page.
TOUCH_EVERY = timedelta(minutes=1)
MAX_TOKEN_LEN = 100  # ours are 43 characters; a longer cookie is not worth hashing
TARGET = "staff_session"
NOBODY = "none"  # the role of an actor whose sign-in failed


@dataclass(frozen=True)
class Lifetimes:
    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True)
class Signed:
    who: Who
    csrf: str


@dataclass(frozen=True)
class Started:
    token: str  # for the cookie; never stored
    csrf: str
    who: Who


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tried_name(name: str) -> str:
    """The name as tried, fit for the log and a terminal (no control characters)."""
    return "".join(c if c.isprintable() else "?" for c in (name or "").strip())[:80] or "?"


def authenticate(
    session: Session,
    clock: Clock,
    name: str,
    password: str,
    *,
    bootstrap: Bootstrap | None,
    origin: str | None,
    method: str,
) -> Who | None:
    """Who the credentials prove; a failure is recorded in the audit log."""
    who = accounts.check(session, name, password, bootstrap)
    if who is None:
        actor = Actor(tried_name(name), NOBODY, origin)
        audit.record(
            session,
            clock,
            actor,
            "login.failed",
            "staff_account",
            actor.name,
            None,
            {"method": method},
        )
    return who


def sign_in(
    session: Session,
    clock: Clock,
    name: str,
    password: str,
    *,
    bootstrap: Bootstrap | None,
    lifetimes: Lifetimes,
    origin: str | None,
) -> Started | None:
    who = authenticate(
        session, clock, name, password, bootstrap=bootstrap, origin=origin, method="form"
    )
    if who is None:
        return None
    purge(session, clock, lifetimes)
    now = clock.now()
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    row = StaffSession(
        token_hash=_hash(token),
        account_id=who.account_id,
        name=who.name,
        bootstrap_tag=bootstrap.tag if who.account_id is None and bootstrap else None,
        csrf=csrf,
        created_at=now,
        seen_at=now,
        origin=origin and origin[:64],
    )
    session.add(row)
    session.flush()
    if who.account_id is not None:
        accounts.signed_in(session, clock, who.account_id)
    audit.record(
        session,
        clock,
        Actor(who.name, who.role, origin),
        "login",
        TARGET,
        row.id,
        None,
        {"method": "form"},
    )
    return Started(token, csrf, who)


def find(
    session: Session,
    clock: Clock,
    token: str,
    *,
    bootstrap: Bootstrap | None,
    lifetimes: Lifetimes,
) -> Signed | None:
    """The session the cookie names, if it still holds; an expired one is deleted."""
    if not token or len(token) > MAX_TOKEN_LEN:
        return None
    row = session.scalars(
        select(StaffSession).where(StaffSession.token_hash == _hash(token))
    ).first()
    if row is None:
        return None
    now = clock.now()
    who = _holder(session, row, bootstrap)
    if (
        who is None
        or now >= row.seen_at + lifetimes.idle
        or now >= row.created_at + lifetimes.absolute
    ):
        session.delete(row)
        return None
    if now - row.seen_at >= TOUCH_EVERY:
        row.seen_at = now
    return Signed(who, row.csrf)


def _holder(session: Session, row: StaffSession, bootstrap: Bootstrap | None) -> Who | None:
    if row.account_id is None:
        # The bootstrap's sessions end when ADMIN_USER or ADMIN_PASSWORD change or go.
        if bootstrap is None or not secrets.compare_digest(row.bootstrap_tag or "", bootstrap.tag):
            return None
        return Who(bootstrap.name, ADMIN)
    account = session.get(StaffAccount, row.account_id)
    if account is None or account.disabled_at is not None:
        return None
    return Who(account.name, account.role, account.id)


def sign_out(
    session: Session,
    clock: Clock,
    token: str,
    *,
    bootstrap: Bootstrap | None,
    lifetimes: Lifetimes,
    origin: str | None,
) -> Who | None:
    """End the cookie's session; who it was, or None when it had already ended."""
    signed = find(session, clock, token, bootstrap=bootstrap, lifetimes=lifetimes)
    if signed is None:
        return None
    row = session.scalars(select(StaffSession).where(StaffSession.token_hash == _hash(token))).one()
    audit.record(
        session,
        clock,
        Actor(signed.who.name, signed.who.role, origin),
        "logout",
        TARGET,
        row.id,
        {"signed_in_at": row.created_at.isoformat()},
        {"ended": True},
    )
    session.delete(row)
    session.flush()
    return signed.who


def live_counts(
    session: Session, clock: Clock, lifetimes: Lifetimes, bootstrap: Bootstrap | None
) -> dict[str, int]:
    """Sessions that would still sign someone in, by name. The bootstrap admin's count only
    under its present credentials (older ones ended when ADMIN_PASSWORD changed)."""
    now = clock.now()
    alive = (
        StaffSession.seen_at > now - lifetimes.idle,
        StaffSession.created_at > now - lifetimes.absolute,
    )
    rows = session.execute(
        select(StaffAccount.name, func.count(StaffSession.id))
        .join(StaffSession, StaffSession.account_id == StaffAccount.id)
        .where(StaffAccount.disabled_at.is_(None), *alive)
        .group_by(StaffAccount.name)
    ).all()
    counts = {name: n for name, n in rows}
    if bootstrap is not None:
        counts[bootstrap.name] = session.scalar(
            select(func.count(StaffSession.id)).where(
                StaffSession.account_id.is_(None),
                StaffSession.bootstrap_tag == bootstrap.tag,
                *alive,
            )
        )
    return counts


def purge(session: Session, clock: Clock, lifetimes: Lifetimes) -> int:
    """Delete the sessions that have expired (done at each sign-in: no beat task needed)."""
    now = clock.now()
    result = session.execute(
        delete(StaffSession).where(
            or_(
                StaffSession.seen_at <= now - lifetimes.idle,
                StaffSession.created_at <= now - lifetimes.absolute,
            )
        )
    )
    return result.rowcount or 0
