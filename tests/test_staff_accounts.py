"""Staff accounts and sessions in the domain (campaigns.staff.accounts, .sessions) and the
`drip users` and `drip audit` commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import json
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from sqlalchemy import select

from campaigns.db import transaction
from campaigns.models import AuditEntry, StaffAccount, StaffSession
from campaigns.staff import accounts, sessions
from campaigns.staff.accounts import AccountError, Bootstrap
from campaigns.staff.audit import Actor
from campaigns.staff.sessions import Lifetimes
from tests.helpers import drip_context
from workers.cli import main

ACTOR = Actor("setup", "admin", "test")
SECRET = "a long enough password"
LIFETIMES = Lifetimes(idle=timedelta(minutes=30), absolute=timedelta(hours=12))
BOOT = Bootstrap("admin", "the bootstrap password", b"k" * 32)


def add(factory, clock, name="nina", role="care", password=SECRET):
    with transaction(factory) as s:
        return accounts.add(s, clock, ACTOR, name, role, password)


def check(factory, name, password, bootstrap=None):
    with transaction(factory) as s:
        return accounts.check(s, name, password, bootstrap)


def stored_hash(factory, name="nina") -> str:
    with factory() as s:
        return s.scalars(select(StaffAccount.password_hash).where(StaffAccount.name == name)).one()


def audit_rows(factory):
    with factory() as s:
        return s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()


# ---------------------------------------------------------------- accounts


def test_passwords_are_kept_as_argon2id_hashes_and_checked(factory, clock):
    add(factory, clock)
    kept = stored_hash(factory)
    assert kept.startswith("$argon2id$") and SECRET not in kept
    who = check(factory, "nina", SECRET)
    assert (who.name, who.role, who.account_id is not None) == ("nina", "care", True)
    assert check(factory, " Nina ", SECRET).name == "nina"  # the name, typed another way
    for name, password in (("nina", SECRET + "x"), ("nina", ""), ("nobody", SECRET), ("", "")):
        assert check(factory, name, password) is None
    assert check(factory, "nina", "x" * 5000) is None  # not even hashed


def test_a_hash_with_old_parameters_is_replaced_at_the_next_sign_in(factory, clock):
    add(factory, clock)
    cheap = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(SECRET)
    with transaction(factory) as s:
        s.scalars(select(StaffAccount)).one().password_hash = cheap
    assert accounts.hasher.check_needs_rehash(cheap)
    assert check(factory, "nina", "wrong password!!") is None
    assert stored_hash(factory) == cheap  # no password at hand, nothing to rehash with
    assert check(factory, "nina", SECRET) is not None
    renewed = stored_hash(factory)
    assert renewed != cheap and not accounts.hasher.check_needs_rehash(renewed)
    assert check(factory, "nina", SECRET) is not None
    assert stored_hash(factory) == renewed  # current parameters: left alone


def test_bad_accounts_are_refused_with_a_reason(factory, clock):
    add(factory, clock)
    for kwargs, says in (
        ({"name": "nina"}, "already"),
        ({"name": "NINA"}, "already"),
        ({"name": "bob", "role": "boss"}, "unknown role 'boss'"),
        ({"name": "bob", "password": "short"}, "at least 12"),
        ({"name": "bob", "password": " padded password "}, "space"),
        ({"name": "bo b"}, "is not a name"),
        ({"name": "-bob"}, "is not a name"),
        ({"name": "x" * 41}, "is not a name"),
        ({"name": ""}, "is not a name"),
    ):
        with pytest.raises(AccountError, match=says), transaction(factory) as s:
            accounts.add(
                s,
                clock,
                ACTOR,
                kwargs["name"],
                kwargs.get("role", "ops"),
                kwargs.get("password", SECRET),
            )
    with pytest.raises(AccountError, match="bootstrap"), transaction(factory) as s:
        accounts.add(s, clock, ACTOR, "Admin", "ops", SECRET, bootstrap_name="admin")
    assert [a.name for a in accounts.listing(factory())] == ["nina"]


def test_the_bootstrap_is_checked_without_the_database_and_shadows_its_name(factory, clock):
    assert accounts.check(None, "admin", BOOT.password, BOOT).role == "admin"  # no session used
    assert accounts.check(None, "admin", "wrong", BOOT) is None
    assert check(factory, "admin", BOOT.password) is None  # only while it is configured


def test_every_change_is_audited_with_before_and_after_and_never_a_password(factory, clock):
    add(factory, clock)
    with transaction(factory) as s:
        assert accounts.set_role(s, clock, ACTOR, "nina", "ops")
        assert not accounts.set_role(s, clock, ACTOR, "nina", "ops")  # no change, no entry
        accounts.reset_password(s, clock, ACTOR, "nina", "another password!")
        assert accounts.disable(s, clock, ACTOR, "nina")
        assert not accounts.disable(s, clock, ACTOR, "nina")
        assert accounts.enable(s, clock, ACTOR, "nina")
    with pytest.raises(AccountError, match="no staff account 'ghost'"), transaction(factory) as s:
        accounts.disable(s, clock, ACTOR, "ghost")
    rows = audit_rows(factory)
    assert [(e.action, e.actor, e.target_id) for e in rows] == [
        ("staff.add", "setup", "nina"),
        ("staff.set_role", "setup", "nina"),
        ("staff.reset_password", "setup", "nina"),
        ("staff.disable", "setup", "nina"),
        ("staff.enable", "setup", "nina"),
    ]
    assert rows[0].after == {"role": "care", "display_name": None} and rows[0].before is None
    assert (rows[1].before, rows[1].after) == ({"role": "care"}, {"role": "ops"})
    assert rows[3].before == {"disabled_at": None} and rows[3].after["disabled_at"]
    dumped = json.dumps([[e.before, e.after] for e in rows])
    assert SECRET not in dumped and "another password" not in dumped and "argon2" not in dumped


# ---------------------------------------------------------------- sessions


def start(factory, clock, name="nina", password=SECRET, bootstrap=None):
    with transaction(factory) as s:
        return sessions.sign_in(
            s, clock, name, password, bootstrap=bootstrap, lifetimes=LIFETIMES, origin="1.2.3.4"
        )


def find(factory, clock, token, bootstrap=None):
    with transaction(factory) as s:
        return sessions.find(s, clock, token, bootstrap=bootstrap, lifetimes=LIFETIMES)


def test_a_session_lives_while_used_and_ends_idle_or_at_the_absolute_limit(factory, clock):
    add(factory, clock)
    started = start(factory, clock)
    assert started.token != started.csrf and len(started.token) >= 43
    with factory() as s:
        row = s.scalars(select(StaffSession)).one()
        assert row.token_hash != started.token and row.csrf == started.csrf
        assert s.scalars(select(StaffAccount)).one().last_login_at == clock.now()
    assert find(factory, clock, started.token).who.name == "nina"
    assert find(factory, clock, started.token + "x") is None
    assert find(factory, clock, "") is None
    clock.advance(minutes=29)
    assert find(factory, clock, started.token).csrf == started.csrf
    clock.advance(minutes=30)
    assert find(factory, clock, started.token) is None
    with factory() as s:
        assert s.scalars(select(StaffSession)).all() == []  # an expired one is removed

    started = start(factory, clock)
    for _ in range(47):  # used every quarter hour: alive until 12 hours after sign-in
        clock.advance(minutes=15)
        assert find(factory, clock, started.token) is not None
    clock.advance(minutes=15)
    assert find(factory, clock, started.token) is None


def test_sign_out_and_account_changes_end_sessions(factory, clock):
    add(factory, clock)
    first, second = start(factory, clock), start(factory, clock)
    with transaction(factory) as s:
        who = sessions.sign_out(
            s, clock, first.token, bootstrap=None, lifetimes=LIFETIMES, origin="1.2.3.4"
        )
    assert who.name == "nina" and find(factory, clock, first.token) is None
    assert find(factory, clock, second.token) is not None
    with transaction(factory) as s:
        accounts.set_role(s, clock, ACTOR, "nina", "marketer")
    assert find(factory, clock, second.token).who.role == "marketer"
    with transaction(factory) as s:
        accounts.reset_password(s, clock, ACTOR, "nina", "a newer password")
    assert find(factory, clock, second.token) is None
    third = start(factory, clock, password="a newer password")
    with transaction(factory) as s:
        accounts.disable(s, clock, ACTOR, "nina")
    assert find(factory, clock, third.token) is None
    assert start(factory, clock, password="a newer password") is None


def test_failed_and_good_sign_ins_are_audited_by_the_name_tried(factory, clock):
    add(factory, clock)
    assert start(factory, clock, name="nina\x1b[31m", password="x") is None
    assert start(factory, clock, password="wrong password!") is None
    assert start(factory, clock) is not None
    failed, wrong, good = [e for e in audit_rows(factory) if e.action.startswith("login")]
    assert (failed.action, failed.actor, failed.role) == ("login.failed", "nina?[31m", "none")
    assert (wrong.actor, wrong.origin, wrong.after) == ("nina", "1.2.3.4", {"method": "form"})
    assert (good.action, good.actor, good.role) == ("login", "nina", "care")


def test_bootstrap_sessions_end_when_its_password_changes(factory, clock):
    started = start(factory, clock, "admin", BOOT.password, BOOT)
    assert find(factory, clock, started.token, BOOT).who.role == "admin"
    changed = Bootstrap("admin", "a changed bootstrap password", BOOT.key)
    assert find(factory, clock, started.token, changed) is None
    again = start(factory, clock, "admin", BOOT.password, BOOT)
    assert find(factory, clock, again.token, None) is None  # ADMIN_PASSWORD unset
    with factory() as s:
        tags = s.scalars(select(StaffSession.bootstrap_tag)).all()
    assert all(BOOT.password not in (t or "") for t in tags)


# ---------------------------------------------------------------- the commands


def drip(obj, *args, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), obj=obj, input=stdin)


def test_drip_users_add_list_set_role_disable_reset_and_audit(factory, clock):
    obj = drip_context(factory, clock)
    assert drip(obj, "users", "list").output.strip() == (
        "no staff accounts (drip users add NAME --role ROLE)"
    )
    assert drip(obj, "audit").output.strip() == "no audit entries"
    made = drip(obj, "users", "add", "Nina", "--role", "care", "--password-stdin", stdin=SECRET)
    assert made.exit_code == 0, made.output
    assert "staff account nina (care) added" in made.output and SECRET not in made.output
    prompted = drip(obj, "users", "add", "omar", "--role", "ops", stdin=f"{SECRET}\n{SECRET}\n")
    assert prompted.exit_code == 0, prompted.output
    assert check(factory, "omar", SECRET).role == "ops"

    unknown = drip(obj, "users", "add", "zed", "--role", "boss", "--password-stdin", stdin=SECRET)
    assert unknown.exit_code == 2 and "'boss' is not one of" in unknown.output
    short = drip(obj, "users", "add", "zed", "--role", "ops", "--password-stdin", stdin="short\n")
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    empty = drip(obj, "users", "add", "zed", "--role", "ops", "--password-stdin", stdin="")
    assert empty.exit_code == 1 and "nothing on stdin" in empty.output
    twice = drip(obj, "users", "add", "nina", "--role", "ops", "--password-stdin", stdin=SECRET)
    assert twice.exit_code == 1 and "already" in twice.output
    boot = drip(obj, "users", "add", "admin", "--role", "ops", "--password-stdin", stdin=SECRET)
    assert boot.exit_code == 1 and "ADMIN_USER" in boot.output

    listed = drip(obj, "users", "list").output.splitlines()
    assert listed[0].split() == ["name", "display", "name", "role", "created", "(UTC)", "last"] + [
        "sign-in",
        "disabled",
    ]
    assert [line.split()[0] for line in listed[2:]] == ["nina", "omar"]

    assert drip(obj, "users", "set-role", "nina", "marketer").output.strip() == "nina: now marketer"
    assert drip(obj, "users", "set-role", "nina", "boss").exit_code == 2
    assert drip(obj, "users", "set-role", "ghost", "ops").exit_code == 1
    assert drip(obj, "users", "disable", "omar").output.strip() == "omar: disabled"
    assert drip(obj, "users", "disable", "omar").output.strip() == "omar: already disabled"
    assert check(factory, "omar", SECRET) is None
    reset = drip(
        obj, "users", "reset-password", "nina", "--password-stdin", stdin="a fresh password!\n"
    )
    assert reset.exit_code == 0 and "0 session(s) ended" in reset.output
    assert check(factory, "nina", "a fresh password!") is not None
    assert drip(obj, "users", "enable", "omar").output.strip() == "omar: enabled"

    me = f"cli:{getpass.getuser()}"
    rows = [e for e in audit_rows(factory) if e.actor == me]
    assert [e.action for e in rows] == [
        "staff.add",
        "staff.add",
        "staff.set_role",
        "staff.disable",
        "staff.reset_password",
        "staff.enable",
    ]
    assert all(e.origin == "cli" for e in rows)
    log = drip(obj, "audit", "--action", "staff.set_role")
    assert log.exit_code == 0
    assert (
        me in log.output
        and '{"role": "care"}' in log.output
        and '{"role": "marketer"}' in log.output
    )
    as_json = drip(obj, "audit", "--target", "staff_account:omar", "--json").output.splitlines()
    assert [json.loads(line)["action"] for line in as_json] == [
        "staff.enable",
        "staff.disable",
        "staff.add",
    ]
    assert drip(obj, "audit", "--actor", "nobody").output.strip() == "no audit entries match"
    assert drip(obj, "audit", "--since", "yesterday").exit_code == 2
    dumped = drip(obj, "audit", "--limit", "100").output
    assert SECRET not in dumped and "a fresh password" not in dumped
