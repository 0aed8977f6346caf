"""Staff accounts: made, listed, given a role, disabled, given a new password, and checked
at sign-in.

Passwords are hashed with argon2id (argon2-cffi's `PasswordHasher`, its RFC 9106 default
parameters); only the hash is kept. A hash made with other parameters (older defaults, or
a cheaper setting) is replaced at the next successful sign-in, when the password is at
hand. An unknown name still costs one verification against a dummy hash, so how long a
refusal takes does not say which names exist.

Besides the accounts, one bootstrap admin may come from the environment (ADMIN_USER /
ADMIN_PASSWORD, like Grafana's): it keeps existing deployments signing in and is checked
without the database. Its name cannot also be an account's.

Every change is recorded in the audit log (campaigns.staff.audit) here, in the caller's
transaction (the CLI's and the staff page's alike); no password or hash is ever written
there. Nobody may disable their own account or change its role, so the admin acting always
remains an admin who can sign in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import StaffAccount, StaffSession
from campaigns.staff import audit
from campaigns.staff.audit import Actor
from campaigns.staff.roles import ADMIN, ROLES

MIN_PASSWORD = 12
# argon2 takes any length, but a megabyte "password" is only a way to make us work.
MAX_PASSWORD = 1024
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
TARGET = "staff_account"

hasher = PasswordHasher()
# Verified against when the name is unknown, so that refusal costs what a wrong password does.
_DUMMY_HASH = hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A user command that cannot be done; the message says why."""


class NoAccount(AccountError):
    """The name is no staff account's."""


@dataclass(frozen=True)
class Who:
    """Someone the credentials proved: an account, or the bootstrap admin (no id)."""

    name: str
    role: str
    account_id: int | None = None


@dataclass(frozen=True)
class Bootstrap:
    """The admin of ADMIN_USER / ADMIN_PASSWORD. `key` (SECRET_KEY) keys the tag its
    sessions carry: a fast hash of the password must not sit in the database."""

    name: str
    password: str
    key: bytes

    def matches(self, name: str, password: str) -> bool:
        # Both compared every time (& not `and`): the timing says nothing about which was wrong.
        return secrets.compare_digest(name.encode(), self.name.encode()) & secrets.compare_digest(
            password.encode(), self.password.encode()
        )

    @property
    def tag(self) -> str:
        message = f"{self.name}\0{self.password}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AccountInfo:
    name: str
    display_name: str | None
    role: str
    created_at: datetime
    last_login_at: datetime | None
    disabled_at: datetime | None


def normal_name(name: str) -> str:
    return (name or "").strip().lower()


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")
    try:  # a lone surrogate cannot be hashed
        password.encode()
    except UnicodeEncodeError:
        raise AccountError("a password must be plain text") from None
    if password != password.strip():
        raise AccountError("a password must not start or end with a space (a paste slip?)")


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def _get(session: Session, name: str, *, lock: bool = False) -> StaffAccount:
    wanted = normal_name(name)
    query = select(StaffAccount).where(StaffAccount.name == wanted)
    # A name no account could have (a NUL, a slash) is not sent to the database at all.
    row = None
    if NAME.match(wanted):
        row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NoAccount(f"no staff account {wanted!r} (drip users list)")
    return row


def _not_self(actor: Actor, row: StaffAccount, what: str) -> None:
    # So an admin always leaves at least one admin who can sign in: themself. The CLI's
    # actor (cli:<os user>) is never an account's name, and the CLI is the way back in.
    if actor.name == row.name:
        raise AccountError(f"you cannot {what} your own account; another admin can")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def end_sessions(session: Session, account_id: int) -> int:
    rows = session.scalars(select(StaffSession).where(StaffSession.account_id == account_id)).all()
    for row in rows:
        session.delete(row)
    session.flush()
    return len(rows)


def add(
    session: Session,
    clock: Clock,
    actor: Actor,
    name: str,
    role: str,
    password: str,
    display_name: str | None = None,
    bootstrap_name: str | None = None,
) -> StaffAccount:
    name = normal_name(name)
    if not NAME.match(name):
        raise AccountError(
            f"{name!r} is not a name: 1 to 40 of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    if bootstrap_name is not None and name == normal_name(bootstrap_name):
        raise AccountError(f"{name!r} is the bootstrap admin's name (ADMIN_USER); choose another")
    _check_role(role)
    check_password_rules(password)
    display_name = (display_name or "").strip() or None
    if display_name and (len(display_name) > 120 or not display_name.isprintable()):
        raise AccountError("a display name is at most 120 printable characters")
    if session.scalars(select(StaffAccount.id).where(StaffAccount.name == name)).first():
        raise AccountError(f"there is already a staff account {name!r}")
    now = clock.now()
    row = StaffAccount(
        name=name,
        display_name=display_name,
        role=role,
        password_hash=hasher.hash(password),
        created_at=now,
        password_changed_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        clock,
        actor,
        "staff.add",
        TARGET,
        name,
        before=None,
        after={"role": role, "display_name": display_name},
    )
    return row


def _info(r: StaffAccount) -> AccountInfo:
    return AccountInfo(r.name, r.display_name, r.role, r.created_at, r.last_login_at, r.disabled_at)


def listing(session: Session) -> list[AccountInfo]:
    return [_info(r) for r in session.scalars(select(StaffAccount).order_by(StaffAccount.name))]


def info(session: Session, name: str) -> AccountInfo:
    return _info(_get(session, name))


def any_enabled(session: Session) -> bool:
    query = select(StaffAccount.id).where(StaffAccount.disabled_at.is_(None)).limit(1)
    return session.scalars(query).first() is not None


def set_role(session: Session, clock: Clock, actor: Actor, name: str, role: str) -> bool:
    """True when the role changed. Signed-in sessions take the new role at their next
    request (the role is read from the account each time)."""
    _check_role(role)
    row = _get(session, name, lock=True)
    if row.role == role:
        return False
    _not_self(actor, row, "change the role of")
    before = row.role
    row.role = role
    audit.record(
        session, clock, actor, "staff.set_role", TARGET, row.name, {"role": before}, {"role": role}
    )
    return True


def disable(session: Session, clock: Clock, actor: Actor, name: str) -> bool:
    """True when it was enabled; its sessions end at once."""
    row = _get(session, name, lock=True)
    if row.disabled_at is not None:
        return False
    _not_self(actor, row, "disable")
    row.disabled_at = clock.now()
    ended = end_sessions(session, row.id)
    audit.record(
        session,
        clock,
        actor,
        "staff.disable",
        TARGET,
        row.name,
        {"disabled_at": None},
        {"disabled_at": _iso(row.disabled_at), "sessions_ended": ended},
    )
    return True


def enable(session: Session, clock: Clock, actor: Actor, name: str) -> bool:
    row = _get(session, name, lock=True)
    if row.disabled_at is None:
        return False
    before = _iso(row.disabled_at)
    row.disabled_at = None
    audit.record(
        session,
        clock,
        actor,
        "staff.enable",
        TARGET,
        row.name,
        {"disabled_at": before},
        {"disabled_at": None},
    )
    return True


def reset_password(session: Session, clock: Clock, actor: Actor, name: str, password: str) -> int:
    """Set a new password; every session of the account ends. Returns how many did."""
    check_password_rules(password)
    row = _get(session, name, lock=True)
    before = _iso(row.password_changed_at)
    row.password_hash = hasher.hash(password)
    row.password_changed_at = clock.now()
    ended = end_sessions(session, row.id)
    audit.record(
        session,
        clock,
        actor,
        "staff.reset_password",
        TARGET,
        row.name,
        {"password_changed_at": before},
        {"password_changed_at": _iso(row.password_changed_at), "sessions_ended": ended},
    )
    return ended


def check(
    session: Session, name: str, password: str, bootstrap: Bootstrap | None = None
) -> Who | None:
    """Who these credentials prove, or None. The bootstrap name is answered without the
    database; a hash with outdated parameters is replaced (the caller commits)."""
    try:  # text that is not UTF-8 (a lone surrogate) proves nothing, and must not crash
        name.encode(), password.encode()
    except UnicodeEncodeError:
        return None
    if bootstrap is not None and name == bootstrap.name:
        return Who(bootstrap.name, ADMIN) if bootstrap.matches(name, password) else None
    if len(password) > MAX_PASSWORD:
        return None
    row = None
    if NAME.match(normal_name(name)):  # else no account has it (and NUL never reaches SQL)
        row = session.scalars(
            select(StaffAccount).where(
                StaffAccount.name == normal_name(name), StaffAccount.disabled_at.is_(None)
            )
        ).first()
    try:
        hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:  # the dummy's password is random: never reached
        return None
    if hasher.check_needs_rehash(row.password_hash):
        row.password_hash = hasher.hash(password)
    return Who(row.name, row.role, row.id)


def signed_in(session: Session, clock: Clock, account_id: int) -> None:
    row = session.get(StaffAccount, account_id)
    if row is not None:
        row.last_login_at = clock.now()
