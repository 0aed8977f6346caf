"""The staff accounts page (web/staff.py) through the real FastAPI app, on SQLite and
PostgreSQL: the list, each action and its audit entry, and every refusal."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from campaigns.models import StaffAccount, StaffSession
from campaigns.staff.roles import ROLES
from tests.test_admin import PASSWORD, make_app
from tests.test_staff_web import (
    ORIGIN,
    SECRET,
    add_staff,
    audit_rows,
    browser,
    csrf_of,
    sign_in,
    signed_in,
)
from tests.test_staff_web import app as app_fixture
from tests.test_staff_web import staff as staff_fixture

NEW = "a brand new password"
app = app_fixture  # the same app, and one account per role named for it (admin1, care1, ...)
staff = staff_fixture


def account(factory, name):
    with factory() as s:
        return s.scalars(select(StaffAccount).where(StaffAccount.name == name)).one_or_none()


def live(factory, name):
    with factory() as s:
        return len(s.scalars(select(StaffSession).where(StaffSession.name == name)).all())


def post(client, url, token, **data):
    return client.post(url, data={**data, "csrf_token": token}, headers=ORIGIN)


def add_form(name="nina", role="care", password=SECRET, again=None, display_name="Nina R."):
    return {
        "name": name,
        "display_name": display_name,
        "role": role,
        "password": password,
        "password_again": password if again is None else again,
    }


# ---------------------------------------------------------------- the list


def test_the_list_shows_every_account_the_bootstrap_and_live_sessions(app, staff, factory):
    signed_in(app, "care1")
    signed_in(app, "care1")
    bootstrap = browser(app)
    assert sign_in(bootstrap, "admin", PASSWORD).status_code == 303
    client, token = signed_in(app, "admin1")
    post(client, "/admin/staff/ops1/disable", token)
    page = client.get("/admin/staff")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    rows = {
        row.split("</td>")[0]: row
        for row in page.text.split("<tr>")[2:]  # after the header row
    }
    assert set(rows) == {
        "\n    <td>admin",
        *(f'\n    <td><a href="/admin/staff/{r}1">{r}1</a>' for r in ("marketer", "care", "ops")),
        '\n    <td><a href="/admin/staff/admin1">admin1</a> (you)',
    }
    boot = rows["\n    <td>admin"]
    assert "Bootstrap admin" in boot and "not editable here" in boot and "2026-03-02" in boot
    assert 'href="/admin/staff/admin"' not in page.text  # no link: it has no page
    care = rows['\n    <td><a href="/admin/staff/care1">care1</a>']
    assert '"Role">care</td>' in care and '"Status">Active</td>' in care
    assert '"Live sessions" class="n">2</td>' in care
    ops = rows['\n    <td><a href="/admin/staff/ops1">ops1</a>']
    assert '"Status">Disabled since 2026-03-02 15:00 UTC</td>' in ops
    assert '"Live sessions" class="n">0</td>' in ops
    assert "4 account(s), 3 enabled." in page.text
    nav = page.text.split("</header>")[0]
    assert 'href="/admin/staff">Staff' in nav
    for label in ("Name", "Display name (optional)", "First password", "same password again"):
        assert label in page.text
    assert "<legend>Role</legend>" in page.text and "<script" not in page.text


def test_without_admin_password_the_bootstrap_is_said_to_be_off(factory, clock, tmp_path):
    add_staff(factory, clock, "root", "admin")
    client, _ = signed_in(make_app(factory, clock, tmp_path, admin_password=None), "root")
    page = client.get("/admin/staff").text
    assert "is off" in page and "Bootstrap admin" not in page


# ---------------------------------------------------------------- actions and their entries


def test_add_makes_the_account_and_its_entry_and_it_signs_in(app, staff, factory):
    client, token = signed_in(app, "admin1")
    done = post(client, "/admin/staff", token, **add_form(name=" Nina "))
    assert done.status_code == 303 and done.headers["location"] == "/admin/staff/nina?done=added"
    page = client.get(done.headers["location"])
    assert "Account added." in page.text and "Nina R." in page.text
    row = account(factory, "nina")
    assert (row.role, row.display_name) == ("care", "Nina R.") and SECRET not in row.password_hash
    (entry,) = [e for e in audit_rows(factory, "staff.add") if e.actor == "admin1"]
    assert (entry.actor, entry.role, entry.target_id) == ("admin1", "admin", "nina")
    assert entry.after == {"role": "care", "display_name": "Nina R."}
    assert entry.origin  # the client address, like every workspace action
    assert sign_in(browser(app), "nina").status_code == 303


def test_change_role_disable_enable_each_leave_an_entry(app, staff, factory):
    client, token = signed_in(app, "admin1")
    care, _ = signed_in(app, "care1")
    assert post(client, "/admin/staff/care1/role", token, role="ops").headers["location"] == (
        "/admin/staff/care1?done=role"
    )
    assert care.get("/admin/outbox").status_code == 200  # the new role at its next page
    assert post(client, "/admin/staff/care1/role", token, role="ops").headers["location"] == (
        "/admin/staff/care1?done=unchanged"
    )
    assert post(client, "/admin/staff/care1/disable", token).status_code == 303
    assert account(factory, "care1").disabled_at is not None
    assert care.get("/admin/outbox").status_code == 401  # its session ended at once
    assert live(factory, "care1") == 0
    assert sign_in(browser(app), "care1").status_code == 401
    assert post(client, "/admin/staff/care1/enable", token).status_code == 303
    assert sign_in(browser(app), "care1").status_code == 303
    actions = [
        (e.action, e.target_id, e.actor, e.before, e.after)
        for e in audit_rows(factory)
        if e.action.startswith("staff.") and e.target_id == "care1"
    ]
    assert [a[:3] for a in actions] == [
        ("staff.add", "care1", "test"),  # the fixture's
        ("staff.set_role", "care1", "admin1"),
        ("staff.disable", "care1", "admin1"),
        ("staff.enable", "care1", "admin1"),
    ]
    assert actions[1][3:] == ({"role": "care"}, {"role": "ops"})
    assert actions[2][4]["sessions_ended"] == 1
    page = client.get("/admin/staff/care1?done=enabled").text
    assert "Account enabled" in page and "<dd>ops</dd>" in page and "Active" in page


def test_a_new_password_ends_every_session_and_the_old_one(app, staff, factory):
    client, token = signed_in(app, "admin1")
    ops, _ = signed_in(app, "ops1")
    signed_in(app, "ops1")
    assert live(factory, "ops1") == 2
    page = client.get("/admin/staff/ops1").text
    assert "<dt>Live sessions</dt><dd>2</dd>" in page
    done = post(client, "/admin/staff/ops1/password", token, password=NEW, password_again=NEW)
    assert done.headers["location"] == "/admin/staff/ops1?done=password"
    assert live(factory, "ops1") == 0 and ops.get("/admin/outbox").status_code == 401
    assert sign_in(browser(app), "ops1").status_code == 401
    assert sign_in(browser(app), "ops1", NEW).status_code == 303
    (entry,) = audit_rows(factory, "staff.reset_password")
    assert (entry.actor, entry.target_id, entry.after["sessions_ended"]) == ("admin1", "ops1", 2)
    dumped = repr([(e.before, e.after) for e in audit_rows(factory)])
    assert NEW not in dumped and SECRET not in dumped


def test_an_admin_resetting_their_own_password_is_signed_out(app, staff, factory):
    client, token = signed_in(app, "admin1")
    done = post(client, "/admin/staff/admin1/password", token, password=NEW, password_again=NEW)
    assert done.status_code == 200 and "every session of yours has ended" in done.text
    assert 'href="/admin/login"' in done.text and "drip_staff=" in done.headers["set-cookie"]
    assert client.get("/admin/staff").status_code == 401
    assert sign_in(browser(app), "admin1", NEW).status_code == 303


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
def test_other_roles_are_refused_the_page_and_every_action(app, staff, factory, role):
    client, token = signed_in(app, f"{role}1")
    assert client.get("/admin/staff").status_code == 403
    assert client.get("/admin/staff/care1").status_code == 403
    assert post(client, "/admin/staff", token, **add_form()).status_code == 403
    for action, data in (("role", {"role": "admin"}), ("disable", {}), ("enable", {})):
        assert post(client, f"/admin/staff/{role}1/{action}", token, **data).status_code == 403
    answer = post(client, "/admin/staff/care1/password", token, password=NEW, password_again=NEW)
    assert answer.status_code == 403
    row = account(factory, f"{role}1")
    assert row.role == role and row.disabled_at is None and account(factory, "nina") is None
    assert not [e for e in audit_rows(factory) if e.actor == f"{role}1" and "staff." in e.action]


def test_an_admin_cannot_disable_or_demote_themself(app, staff, factory):
    client, token = signed_in(app, "admin1")
    page = client.get("/admin/staff/admin1").text
    assert "your own account" in page and "/admin1/disable" not in page
    assert "/admin1/role" not in page and "/admin1/password" in page
    for url, data in (("disable", {}), ("role", {"role": "care"})):
        refused = post(client, f"/admin/staff/admin1/{url}", token, **data)
        assert refused.status_code == 400 and "your own account" in refused.text
    row = account(factory, "admin1")
    assert row.role == "admin" and row.disabled_at is None
    assert client.get("/admin/staff").status_code == 200  # still signed in, still admin
    # Another admin may: there is still one who can sign in.
    add_staff(factory, app.state.clock, "root", "admin")
    other, other_token = signed_in(app, "root")
    assert post(other, "/admin/staff/admin1/role", other_token, role="care").status_code == 303


BAD_ADDS = [
    (add_form(role="owner"), "unknown role"),
    (add_form(role=""), "unknown role"),
    (add_form(password="short one"), "at least 12"),
    (add_form(again="a different password"), "passwords differ"),
    (add_form(name="care1"), "already a staff account"),
    (add_form(name="admin"), "bootstrap admin"),
    (add_form(name="bad name!"), "is not a name"),
    (add_form(name="nu\x00ll"), "is not a name"),
    (add_form(display_name="x" * 200), "display name"),
    (add_form(password=" " + SECRET), "start or end with a space"),
    (add_form(password="p" * 2000), "at most 1024"),
]


@pytest.mark.parametrize(("form", "why"), BAD_ADDS)
def test_a_bad_add_is_a_400_that_keeps_what_was_typed(app, staff, factory, form, why):
    client, token = signed_in(app, "admin1")
    before = len(audit_rows(factory))
    answer = post(client, "/admin/staff", token, **form)
    assert answer.status_code == 400 and why in answer.text, answer.text
    assert 'role="alert"' in answer.text and "<html" in answer.text
    if form["name"].isprintable():
        assert f'name="name" value="{form["name"]}"' in answer.text
    assert form["password"] not in answer.text
    assert len(audit_rows(factory)) == before
    assert (account(factory, "care1").display_name, account(factory, "nina")) == (None, None)


def test_bad_actions_are_400_or_404_pages_never_5xx(app, staff, factory):
    client, token = signed_in(app, "admin1")
    cases = [
        ("/admin/staff/care1/role", {"role": "owner"}, 400, "unknown role"),
        ("/admin/staff/care1/role", {}, 400, "unknown role"),
        (
            "/admin/staff/care1/password",
            {"password": "short", "password_again": "short"},
            400,
            "at least 12",
        ),
        (
            "/admin/staff/care1/password",
            {"password": NEW, "password_again": NEW + "!"},
            400,
            "passwords differ",
        ),
        ("/admin/staff/nobody/disable", {}, 404, "no staff account"),
        (
            "/admin/staff/nobody/password",
            {"password": NEW, "password_again": NEW},
            404,
            "no staff account",
        ),
        ("/admin/staff/nu%00ll/enable", {}, 404, "no staff account"),
        ("/admin/staff/admin/disable", {}, 404, "no staff account"),  # the bootstrap
    ]
    for url, data, code, why in cases:
        answer = post(client, url, token, **data)
        assert answer.status_code == code and why in answer.text.lower(), (url, answer.text)
    assert client.get("/admin/staff/nobody").status_code == 404
    assert client.get("/admin/staff/nu%00ll").status_code == 404
    assert client.get("/admin/staff/care1?done=<script>").status_code == 200
    assert "<script>" not in client.get("/admin/staff/care1?done=<script>").text
    row = account(factory, "care1")
    assert row.role == "care" and row.disabled_at is None
    assert not [
        e for e in audit_rows(factory) if e.action.startswith("staff.") and e.actor != "test"
    ]
    bad_bytes = client.post(
        "/admin/staff/care1/password",
        content=f"csrf_token={token}&password=%ED%A0%80{'x' * 12}&password_again=%ED%A0%80"
        + "x" * 12,
        headers={**ORIGIN, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert bad_bytes.status_code < 500  # bytes that are not UTF-8 arrive as U+FFFD


def test_a_post_without_the_token_or_with_a_forged_one_is_refused(app, staff, factory):
    client, token = signed_in(app, "admin1")
    other = csrf_of(signed_in(app, "admin1")[0].get("/admin/staff").text)
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": other}):
        for url, fields in (
            ("/admin/staff", add_form()),
            ("/admin/staff/care1/disable", {}),
            ("/admin/staff/care1/role", {"role": "ops"}),
            ("/admin/staff/care1/password", {"password": NEW, "password_again": NEW}),
        ):
            answer = client.post(url, data={**fields, **data}, headers=ORIGIN)
            assert answer.status_code == 403 and "Form refused" in answer.text, url
    cross = client.post(
        "/admin/staff/care1/disable",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    row = account(factory, "care1")
    assert row.role == "care" and row.disabled_at is None and live(factory, "care1") == 0
    assert account(factory, "nina") is None
