"""Staff sign-in, sessions, CSRF, the sign-in limit, roles and the audit log through the
real FastAPI app, on SQLite and PostgreSQL (web/access.py, web/login.py, web/audit.py)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from campaigns.db import transaction
from campaigns.delivery.pauses import pause, paused
from campaigns.models import AuditEntry, InboxItem, Message, StaffSession
from campaigns.staff import accounts, audit
from campaigns.staff.audit import Actor
from campaigns.staff.roles import ROLES, may
from campaigns.states import InboxStatus, MessageStatus
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from tests.test_admin import AUTH, BASE, PASSWORD, basic, make_app
from tests.test_inbox import PHONE, text
from tests.test_reports import script_history

SECRET = "a long enough password"
COOKIE = "__Host-drip_staff"
ORIGIN = {"Origin": BASE}
BROWSER = {"Accept": "text/html,application/xhtml+xml"}
SETUP = Actor("test", "admin", "test")


def add_staff(factory, clock, name, role, password=SECRET):
    with transaction(factory) as s:
        accounts.add(s, clock, SETUP, name, role, password)


@pytest.fixture
def app(factory, clock, tmp_path):
    return make_app(factory, clock, tmp_path)


@pytest.fixture
def staff(factory, clock):
    """One account per role, named for it."""
    for role in ROLES:
        add_staff(factory, clock, f"{role}1", role)


def browser(app) -> TestClient:
    # https, like PUBLIC_BASE_URL: a Secure cookie only goes back over https.
    return TestClient(app, base_url="https://care.example", follow_redirects=False)


def sign_in(client, name, password=SECRET, next_path=""):
    return client.post(
        "/admin/login",
        data={"name": name, "password": password, "next": next_path},
        headers=ORIGIN,
    )


def csrf_of(page_text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page_text).group(1)


def signed_in(app, name) -> tuple[TestClient, str]:
    client = browser(app)
    done = sign_in(client, name)
    assert done.status_code == 303, done.text
    token = csrf_of(client.get("/admin").text)
    return client, token


def audit_rows(factory, action=None):
    with factory() as s:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            query = query.where(AuditEntry.action == action)
        return s.scalars(query).all()


# ---------------------------------------------------------------- sign-in and cookies


def test_sign_in_sets_a_host_only_secure_http_only_lax_cookie(app, staff, factory):
    client = browser(app)
    form = client.get("/admin/login")
    assert form.status_code == 200 and form.headers["cache-control"] == "no-store"
    assert '<label for="name">' in form.text and 'autocomplete="current-password"' in form.text
    assert "<script" not in form.text
    done = sign_in(client, "care1", next_path="/admin/inbox")
    assert done.status_code == 303 and done.headers["location"] == "/admin/inbox"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "path=/", "samesite=lax"} <= flags
    assert not any(f.startswith("domain") for f in flags)
    page = client.get("/admin/inbox")
    assert page.status_code == 200 and "care1" in page.text and "(care)" in page.text
    with factory() as s:
        row = s.scalars(select(StaffSession)).one()
        token = cookie.split(";")[0].split("=", 1)[1]
        assert row.token_hash != token and token not in row.token_hash  # only a hash kept
    (entry,) = audit_rows(factory, "login")
    assert (entry.actor, entry.role, entry.after) == ("care1", "care", {"method": "form"})


def test_over_http_the_cookie_is_not_secure_and_has_no_host_prefix(factory, clock, tmp_path):
    add_staff(factory, clock, "ops1", "ops")
    app = make_app(factory, clock, tmp_path, public_base_url="http://care.example")
    client = TestClient(app, base_url="http://care.example", follow_redirects=False)
    done = client.post(
        "/admin/login",
        data={"name": "ops1", "password": SECRET},
        headers={"Origin": "http://care.example"},
    )
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("drip_staff=") and "secure" not in cookie.lower()
    assert "httponly" in cookie.lower()
    assert client.get("/admin/outbox").status_code == 200


def test_a_wrong_password_shows_the_form_again_and_is_audited_without_it(app, staff, factory):
    client = browser(app)
    for name, password in (("care1", "not the password"), ("nobody", SECRET)):
        wrong = sign_in(client, name, password)
        assert wrong.status_code == 401 and "do not match" in wrong.text
        assert "set-cookie" not in wrong.headers
        assert f'value="{name}"' in wrong.text
    failed = audit_rows(factory, "login.failed")
    assert [(e.actor, e.role) for e in failed][:2] == [("care1", "none"), ("nobody", "none")]
    dumped = json.dumps([[e.before, e.after, e.actor, e.target_id] for e in audit_rows(factory)])
    assert "not the password" not in dumped and SECRET not in dumped
    for odd in ("nu\x00ll", "x" * 300, "é" * 50, "<script>"):  # never a 5xx, never echoed raw
        answer = sign_in(client, odd, SECRET)
        assert answer.status_code == 401 and "<script>" not in answer.text.split("<main>")[1]
        assert client.get("/admin", headers=basic(odd, SECRET)).status_code == 401
    empty = sign_in(client, "", "")
    assert empty.status_code == 400 and "Give your name" in empty.text
    assert (
        client.post("/admin/login", data={"name": "care1", "password": SECRET}).status_code == 403
    )
    assert client.get("/admin", headers=BROWSER).status_code == 303  # nobody signed in


def test_the_bootstrap_admin_signs_in_and_a_changed_password_ends_its_sessions(
    factory, clock, tmp_path
):
    app = make_app(factory, clock, tmp_path)
    client = browser(app)
    assert sign_in(client, "admin", PASSWORD).status_code == 303
    assert client.get("/admin/audit").status_code == 200
    with factory() as s:
        assert s.scalars(select(StaffSession)).one().account_id is None
    moved = make_app(factory, clock, tmp_path, admin_password="another long password")
    again = browser(moved)
    again.cookies = client.cookies
    assert again.get("/admin", headers=BROWSER).status_code == 303


def test_an_unauthenticated_browser_is_sent_to_the_form_and_back(app, staff):
    client = browser(app)
    answer = client.get("/admin/outbox?status=unconfirmed", headers=BROWSER)
    assert answer.status_code == 303
    assert (
        answer.headers["location"] == "/admin/login?next=%2Fadmin%2Foutbox%3Fstatus%3Dunconfirmed"
    )
    form = client.get(answer.headers["location"])
    assert 'name="next" value="/admin/outbox?status=unconfirmed"' in form.text
    done = sign_in(client, "ops1", next_path="/admin/outbox?status=unconfirmed")
    assert done.headers["location"] == "/admin/outbox?status=unconfirmed"
    assert client.get("/admin/outbox?status=unconfirmed").status_code == 200
    # A script (no text/html) is asked for basic credentials instead.
    script = browser(app).get("/admin/outbox")
    assert script.status_code == 401 and script.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/admin",
        "//evil.example/admin",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/elsewhere",
        "/admin\r\nLocation: https://evil.example",
        " /admin",
        "/admin/login",
        "https:/evil.example",
        "/administrator",
    ],
)
def test_sign_in_never_sends_anyone_off_the_workspace(app, staff, next_path):
    client = browser(app)
    form = client.get("/admin/login", params={"next": next_path})
    assert form.status_code == 200 and 'name="next" value="/admin"' in form.text
    done = sign_in(client, "admin1", next_path=next_path)
    assert done.status_code == 303 and done.headers["location"] == "/admin"


def test_sign_out_ends_the_session_at_once(app, staff, factory):
    client, token = signed_in(app, "marketer1")
    assert 'action="/admin/logout"' in client.get("/admin").text
    refused = client.post("/admin/logout", data={"csrf_token": "forged"}, headers=ORIGIN)
    assert refused.status_code == 403
    assert client.get("/admin").status_code == 200
    cookies = dict(client.cookies)
    done = client.post("/admin/logout", data={"csrf_token": token}, headers=ORIGIN)
    assert done.status_code == 303 and done.headers["location"] == "/admin/login"
    assert f'{COOKIE}=""' in done.headers["set-cookie"] or "max-age=0" in (
        done.headers["set-cookie"].lower()
    )
    replay = browser(app)
    replay.cookies.update(cookies)  # a copy of the cookie kept from before
    assert replay.get("/admin", headers=BROWSER).status_code == 303
    with factory() as s:
        assert s.scalars(select(StaffSession)).all() == []
    (entry,) = audit_rows(factory, "logout")
    assert (entry.actor, entry.role, entry.after) == ("marketer1", "marketer", {"ended": True})


def test_sessions_end_when_idle_and_after_the_absolute_limit(app, staff, clock):
    client, _ = signed_in(app, "care1")
    clock.advance(minutes=29)
    assert client.get("/admin", headers=BROWSER).status_code == 200
    clock.advance(minutes=31)  # 31 minutes since the last page: idle too long
    assert client.get("/admin", headers=BROWSER).status_code == 303

    client, _ = signed_in(app, "care1")
    for _ in range(35):  # busy all day: every 20 minutes for almost 12 hours
        clock.advance(minutes=20)
        assert client.get("/admin", headers=BROWSER).status_code == 200
    clock.advance(minutes=20)
    assert client.get("/admin", headers=BROWSER).status_code == 303


def test_disabling_or_a_new_password_ends_sessions_and_a_new_role_applies_at_once(
    app, staff, factory, clock
):
    client, _ = signed_in(app, "ops1")
    assert client.get("/admin/outbox").status_code == 200
    with transaction(factory) as s:
        accounts.set_role(s, clock, SETUP, "ops1", "marketer")
    assert client.get("/admin/outbox").status_code == 403
    with transaction(factory) as s:
        accounts.disable(s, clock, SETUP, "ops1")
    assert client.get("/admin", headers=BROWSER).status_code == 303
    assert sign_in(browser(app), "ops1").status_code == 401

    client, _ = signed_in(app, "care1")
    with transaction(factory) as s:
        accounts.reset_password(s, clock, SETUP, "care1", "a brand new password")
    assert client.get("/admin", headers=BROWSER).status_code == 303
    assert sign_in(browser(app), "care1", "a brand new password").status_code == 303


def test_without_a_password_or_any_account_the_pages_are_off(factory, clock, tmp_path):
    app = make_app(factory, clock, tmp_path, admin_password=None)
    client = browser(app)
    assert client.get("/admin/login").status_code == 503
    assert client.get("/admin", headers=BROWSER).status_code == 503
    add_staff(factory, clock, "care1", "care")
    assert client.get("/admin/login").status_code == 200
    assert sign_in(client, "care1").status_code == 303
    assert client.get("/admin/inbox").status_code == 200
    # The bootstrap is gone with its password; its name and basic auth no longer work.
    assert TestClient(app).get("/admin", headers=AUTH).status_code == 401


# ---------------------------------------------------------------- CSRF


def test_a_session_post_without_the_token_or_with_another_is_refused(app, staff, factory):
    client, token = signed_in(app, "ops1")
    assert 'name="csrf_token" value="' + token in client.get("/admin/channels").text
    other, other_token = signed_in(app, "admin1")
    url = "/admin/channels/email/pause"
    for data in (
        {"reason": "incident"},
        {"reason": "incident", "csrf_token": ""},
        {"reason": "incident", "csrf_token": other_token},  # another session's
        {"reason": "incident", "csrf_token": token[:-1]},
    ):
        refused = client.post(url, data=data, headers=ORIGIN)
        assert refused.status_code == 403 and "token" in refused.text, data
        assert "<html" in refused.text  # a page, not JSON
    # A post with no form body at all (the resume button has no fields but the token).
    assert client.post("/admin/channels/email/resume", headers=ORIGIN).status_code == 403
    with factory() as s:
        assert paused(s, "email") is None
    # The right token, but from another site: the origin rule still holds.
    evil = {"Origin": "https://evil.example"}
    assert (
        client.post(url, data={"reason": "x", "csrf_token": token}, headers=evil).status_code == 403
    )
    ok = client.post(url, data={"reason": "incident", "csrf_token": token}, headers=ORIGIN)
    assert ok.status_code == 200
    with factory() as s:
        assert paused(s, "email").paused_by == "ops:ops1"


def test_every_post_form_on_the_pages_carries_the_token(
    app, staff, factory, clock, registry, policy
):
    script_history(factory, clock, registry, policy)
    with transaction(factory) as s:
        pause(s, clock, "sms", "test", by="test")
        for m in s.scalars(select(Message)).all()[:2]:
            m.status = MessageStatus.UNCONFIRMED
    client, token = signed_in(app, "admin1")
    for page in ("/admin", "/admin/inbox", "/admin/outbox?status=unconfirmed", "/admin/channels"):
        html = client.get(page).text
        forms = re.findall(r'<form method="post"[^>]*>(.*?)</form>', html, re.S)
        assert forms, page
        for body in forms:
            assert f'name="csrf_token" value="{token}"' in body, (page, body[:80])


# ---------------------------------------------------------------- sign-in limits


def test_five_failures_lock_the_name_even_for_the_right_password(app, staff, factory):
    client = browser(app)
    for _ in range(5):
        assert sign_in(client, "care1", "wrong password!").status_code == 401
    locked = sign_in(client, "care1")
    assert locked.status_code == 429 and "Too many" in locked.text and "<html" in locked.text
    assert int(locked.headers["retry-after"]) > 0
    assert "set-cookie" not in locked.headers
    # The name, typed another way, is the same name; basic auth is counted the same.
    assert sign_in(client, " CARE1 ").status_code == 429
    assert client.get("/admin", headers=basic("care1", SECRET)).status_code == 429
    # Another account from the same address is not locked by it.
    assert sign_in(client, "ops1").status_code == 303
    assert len(audit_rows(factory, "login.failed")) == 5  # refused tries are not guesses


def test_twenty_failures_from_one_address_lock_it_for_every_name(app, staff):
    client = browser(app)
    for n in range(20):
        assert sign_in(client, f"guess{n}", "wrong password!").status_code == 401
    assert sign_in(client, "ops1").status_code == 429
    other = TestClient(
        app, base_url="https://care.example", follow_redirects=False, client=("10.0.0.9", 5000)
    )
    assert sign_in(other, "ops1").status_code == 303


def test_basic_auth_failures_count_too(app, staff):
    client = TestClient(app)
    for _ in range(5):
        assert client.get("/admin", headers=basic("ops1", "wrong password!")).status_code == 401
    assert client.get("/admin", headers=basic("ops1", SECRET)).status_code == 429


def test_a_good_sign_in_forgets_the_name_s_earlier_failures(app, staff):
    client = browser(app)
    for _ in range(4):
        sign_in(client, "care1", "wrong password!")
    assert sign_in(client, "care1").status_code == 303
    for _ in range(4):
        assert sign_in(browser(app), "care1", "wrong password!").status_code == 401
    assert sign_in(browser(app), "care1").status_code == 303


def test_sign_in_works_and_is_still_limited_when_redis_is_unreachable(factory, clock, tmp_path):
    add_staff(factory, clock, "ops1", "ops")
    app = make_app(factory, clock, tmp_path, redis_url="redis://127.0.0.1:1/0")
    client = browser(app)
    assert sign_in(client, "ops1").status_code == 303
    assert client.get("/admin/outbox").status_code == 200
    for _ in range(5):
        assert sign_in(browser(app), "ops1", "wrong password!").status_code == 401
    assert sign_in(browser(app), "ops1").status_code == 429


def test_sign_in_limits_are_shared_through_redis(factory, clock, tmp_path, redis_url):
    import uuid

    add_staff(factory, clock, "ops1", "ops")
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    one = make_app(factory, clock, tmp_path, redis_url=redis_url, redis_key_prefix=prefix)
    two = make_app(factory, clock, tmp_path, redis_url=redis_url, redis_key_prefix=prefix)
    for _ in range(3):
        assert sign_in(browser(one), "ops1", "wrong password!").status_code == 401
    for _ in range(2):
        assert sign_in(browser(two), "ops1", "wrong password!").status_code == 401
    assert sign_in(browser(one), "ops1").status_code == 429


# ---------------------------------------------------------------- roles


PAGES = {
    "/admin": "dashboard",
    "/admin/campaigns/quick": "campaigns",
    "/admin/contact-requests": "contacts",
    "/admin/inbox": "inbox",
    "/admin/outbox": "outbox",
    "/admin/channels": "channels",
    "/admin/audit": "audit",
    "/admin/people?q=ana": "people",
    "/admin/staff": "staff",
}
# Pages about a row that does not exist: a role allowed in gets the 404 page, not a 403.
ROW_PAGES = {
    "/admin/people/999": "people",
    "/admin/people/999/export.json": "people",
    "/admin/people/999/export.zip": "people",
    "/admin/people/999/erase": "people",
    "/admin/contact-requests/999": "contacts",
    "/admin/staff/nobody": "staff",
}
POSTS = {
    "/admin/people/999/suppress": ("people", {"channel": "email", "reason": "matrix"}),
    "/admin/people/999/courses/1/pause": ("people", {}),
    "/admin/people/999/erase": ("people", {"confirm": "999"}),
    "/admin/contact-requests/999/assign": ("contacts", {"assignee": "me"}),
    "/admin/contact-requests/999/unassign": ("contacts", {}),
    "/admin/contact-requests/999/notes": ("contacts", {"body": "matrix"}),
    "/admin/campaigns/quick/promote": ("campaigns", {"step": "one", "variant": "x"}),
    "/admin/contact-requests/999": ("contacts", {"status": "closed"}),
    "/admin/inbox/999": ("inbox", {"action": "done"}),
    "/admin/outbox/999/settle": ("outbox", {"outcome": "sent"}),
    "/admin/outbox/settle-all": ("outbox", {"outcome": "sent"}),
    "/admin/channels/email/pause": ("channels", {"reason": "matrix"}),
    "/admin/channels/email/resume": ("channels", {}),
    # Passwords that differ, and a name no account has: refused (400, 404), not done.
    "/admin/staff": ("staff", {"name": "matrix", "role": "care", "password": "x" * 12}),
    "/admin/staff/nobody/role": ("staff", {"role": "care"}),
    "/admin/staff/nobody/disable": ("staff", {}),
    "/admin/staff/nobody/enable": ("staff", {}),
    "/admin/staff/nobody/password": ("staff", {"password": "x" * 12, "password_again": "x" * 12}),
}
NAV = {
    "dashboard": 'href="/admin">Overview',
    "people": 'href="/admin/people"',
    "contacts": 'href="/admin/contact-requests">Contact requests',
    "inbox": 'href="/admin/inbox"',
    "outbox": 'href="/admin/outbox"',
    "channels": 'href="/admin/channels"',
    "staff": 'href="/admin/staff">Staff',
    "audit": 'href="/admin/audit"',
}


def test_every_role_opens_its_areas_and_no_other(app, staff, factory):
    for role in ROLES:
        client, token = signed_in(app, f"{role}1")
        for page, area in PAGES.items():
            got = client.get(page)
            expected = 200 if may(role, area) else 403
            assert got.status_code == expected, (role, page)
            if expected == 403:
                assert "does not open" in got.text and "<html" in got.text
        for page, area in ROW_PAGES.items():
            got = client.get(page)
            assert got.status_code == (404 if may(role, area) else 403), (role, page)
        for url, (area, data) in POSTS.items():
            got = client.post(url, data={**data, "csrf_token": token}, headers=ORIGIN)
            assert (got.status_code == 403) == (not may(role, area)), (role, url, got.text)
            assert got.status_code < 500
        nav = client.get("/admin").text.split("</header>")[0]
        for area, link in NAV.items():
            assert (link in nav) == may(role, area), (role, area)
        assert f"{role}1" in nav and f"({role})" in nav
    with factory() as s:
        assert paused(s, "email") is None  # paused and resumed by those allowed, in turn


def test_basic_auth_of_an_account_gets_its_role_too(app, staff):
    client = TestClient(app)
    care = basic("care1", SECRET)
    assert client.get("/admin/inbox", headers=care).status_code == 200
    assert client.get("/admin/outbox", headers=care).status_code == 403
    # Basic auth carries no cookie, so no token: the origin rule is what guards its posts.
    post = client.post("/admin/inbox/999", data={"action": "done"}, headers={**care, **ORIGIN})
    assert post.status_code == 400
    assert client.post("/admin/inbox/999", data={"action": "done"}, headers=care).status_code == 403


def test_the_dashboard_shows_each_role_only_its_parts(app, staff, factory, clock, registry, policy):
    script_history(factory, clock, registry, policy)
    with transaction(factory) as s:
        pause(s, clock, "sms", "test", by="test")
    parts = {
        "campaigns": 'href="/admin/campaigns/quick"',
        "outbox": "Due now:",
        "contacts": "Open contact requests:",
        "inbox": "Texts waiting in the inbox:",
        "channels": "Paused channels:",
    }
    for role in ROLES:
        client, _ = signed_in(app, f"{role}1")
        main = client.get("/admin").text.split("<main>")[1]
        for area, marker in parts.items():
            assert (marker in main) == may(role, area), (role, area)
    marketer, _ = signed_in(app, "marketer1")
    assert "@example.com" not in marketer.get("/admin/campaigns/quick").text


def test_metrics_take_an_ops_or_admin_account_or_the_bootstrap(app, staff):
    client = TestClient(app)
    for name, code in (("ops1", 200), ("admin1", 200), ("care1", 403), ("marketer1", 403)):
        assert client.get("/metrics", headers=basic(name, SECRET)).status_code == code, name
    assert client.get("/metrics", headers=AUTH).status_code == 200
    assert client.get("/metrics").status_code == 401


# ---------------------------------------------------------------- the audit log


def test_every_admin_action_leaves_an_entry_with_before_and_after(
    app, staff, factory, clock, registry, policy, tmp_path
):
    history = script_history(factory, clock, registry, policy)
    add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    text(factory, clock, "Can I do these with a bad knee?")
    with factory() as s:
        item_id = s.scalars(select(InboxItem.id)).one()
    one, bulk = history.msg[("ana", "three", "sms")], history.msg[("ben", "three", "sms")]
    with transaction(factory) as s:
        for message_id in (one, bulk):
            s.get(Message, message_id).status = MessageStatus.UNCONFIRMED
    client, token = signed_in(app, "admin1")

    def post(url, **data):
        answer = client.post(url, data={**data, "csrf_token": token}, headers=ORIGIN)
        assert answer.status_code == 200, (url, answer.text)

    post(f"/admin/inbox/{item_id}", action="done")
    post(f"/admin/inbox/{item_id}", action="done")  # twice: nothing changes the second time
    post(f"/admin/outbox/{one}/settle", outcome="failed")
    post("/admin/outbox/settle-all", outcome="sent", channel="sms", confirm="yes")
    post("/admin/channels/email/pause", reason="SendGrid incident")
    post("/admin/channels/email/resume")
    post("/admin/channels/email/resume")  # not paused: nothing to record

    entries = {e.action: e for e in audit_rows(factory) if e.actor == "admin1"}
    assert sorted(entries) == [
        "channel.pause",
        "channel.resume",
        "inbox.handle",
        "login",
        "message.settle",
        "message.settle_all",
    ]
    assert len([e for e in audit_rows(factory) if e.action == "inbox.handle"]) == 1
    for e in entries.values():
        assert (e.role, e.origin) == ("admin", "testclient")
    handled = entries["inbox.handle"]
    assert (handled.target_type, handled.target_id) == ("inbox_item", str(item_id))
    assert handled.before == {"status": InboxStatus.OPEN.value, "handled_by": None}
    assert handled.after == {"status": "done", "handled_by": "admin:admin1", "action": "done"}
    settled = entries["message.settle"]
    assert settled.target_id == str(one)
    assert settled.before == {"status": "unconfirmed", "reason_code": None} or (
        settled.before["status"] == "unconfirmed"
    )
    assert settled.after["status"] == "failed" and settled.after["outcome"] == "failed"
    bulk_entry = entries["message.settle_all"]
    assert (bulk_entry.target_type, bulk_entry.target_id) == ("outbox", "sms")
    assert bulk_entry.before["count"] == bulk_entry.after["count"] >= 1
    assert bulk_entry.after["outcome"] == "sent"
    assert entries["channel.pause"].before == {"paused": False}
    assert entries["channel.pause"].after == {
        "paused": True,
        "reason": "SendGrid incident",
        "paused_by": "admin:admin1",
    }
    assert entries["channel.resume"].before["paused"] is True
    assert entries["channel.resume"].after["paused"] is False

    # promote edits a campaign file; the entry says which arms it had and which won
    folder = tmp_path / "defs"
    folder.mkdir()
    shutil.copy(FIXTURES / "experiments" / "trial.yaml", folder / "trial.yaml")
    trial = make_app(factory, clock, tmp_path, definitions_dir=folder)
    client, token = signed_in(trial, "marketer1")
    answer = client.post(
        "/admin/campaigns/trial/promote",
        data={"step": "lesson", "variant": "story", "csrf_token": token},
        headers=ORIGIN,
    )
    assert answer.status_code == 200, answer.text
    (promoted,) = audit_rows(factory, "campaign.promote")
    assert (promoted.actor, promoted.role, promoted.target_id) == (
        "marketer1",
        "marketer",
        "trial/lesson",
    )
    assert "story" in promoted.before["variants"] and promoted.after["promoted"] == "story"
    assert promoted.after["variants"] == []


def test_the_audit_page_filters_and_pages_newest_first(app, staff, factory, clock):
    with transaction(factory) as s:
        for n in range(60):
            clock.advance(minutes=1)
            audit.record(s, clock, SETUP, "test.step", "thing", n, {"n": n}, {"n": n + 1})
    client, _ = signed_in(app, "admin1")
    first = client.get("/admin/audit?action=test.step")
    assert first.status_code == 200
    shown = re.findall(r"<td>thing:(\d+)</td>", first.text)
    assert shown[:2] == ["59", "58"] and len(shown) == 50
    assert 'href="/admin/audit?action=test.step&amp;page=2"' in first.text
    second = client.get("/admin/audit?action=test.step&page=2")
    assert re.findall(r"<td>thing:(\d+)</td>", second.text) == [str(n) for n in range(9, -1, -1)]
    assert "Older" not in second.text and "Newer" in second.text
    one = client.get("/admin/audit?target=thing:7")
    assert re.findall(r"<td>thing:(\d+)</td>", one.text) == ["7"]
    assert "{&#34;n&#34;: 7}" in one.text
    by_actor = client.get("/admin/audit?actor=admin1")
    assert "<td>login</td>" in by_actor.text and "test.step" not in by_actor.text
    assert "Nothing recorded" not in client.get("/admin/audit?day=2026-03-02").text
    assert "No entry matches" in client.get("/admin/audit?day=2020-01-01").text
    for bad in ("day=yesterday", "page=0", "page=abc", "page=99999999999", "actor=" + "x" * 200):
        answer = client.get(f"/admin/audit?{bad}")
        assert answer.status_code == 400 and "<html" in answer.text, bad


def test_the_outbox_links_a_message_to_its_person_only_for_roles_that_open_people(
    app, staff, factory, clock, registry, policy
):
    script_history(factory, clock, registry, policy)
    with factory() as s:
        someone = s.scalars(select(Message.subscriber_id)).first()
    link = f'href="/admin/people/{someone}"'
    ops, _ = signed_in(app, "ops1")
    assert link not in ops.get("/admin/outbox").text
    admin, _ = signed_in(app, "admin1")
    assert link in admin.get("/admin/outbox").text
