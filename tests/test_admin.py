"""The /admin pages through the real FastAPI app, on SQLite and PostgreSQL: basic auth,
the same-origin rule for form posts, funnels, the contact queue, settling unconfirmed
messages and resuming a paused channel."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from campaigns.db import transaction
from campaigns.delivery.pauses import pause, paused
from campaigns.models import ChannelPause, ContactRequest, Message
from campaigns.states import MessageStatus
from settings import load_settings
from tests.conftest import FIXTURES
from tests.test_reports import ANA_EMAIL, ANA_PHONE, script_history
from web import admin, ops
from web.app import create_app

BASE = "https://care.example"
PASSWORD = "correct horse battery staple"
PAGES = [
    "/admin",
    "/admin/campaigns/quick",
    "/admin/contact-requests",
    "/admin/inbox",
    "/admin/outbox",
    "/admin/channels",
]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic("admin", PASSWORD)
POST = {**AUTH, "Origin": BASE}


def browser_session(app) -> TestClient:
    """A client signed in through the login form as the bootstrap admin: a session cookie
    and no Authorization header, so its posts must echo the session's CSRF token."""
    client = TestClient(app, base_url=BASE, follow_redirects=False)
    done = client.post(
        "/admin/login", data={"name": "admin", "password": PASSWORD}, headers={"Origin": BASE}
    )
    assert done.status_code == 303, done.text
    return client


def make_app(factory, clock, tmp_path, **overrides):
    settings = load_settings(
        **{
            "environment": "test",
            "secret_key": "s" * 40,
            "public_base_url": BASE,
            "definitions_dir": FIXTURES / "definitions",
            "templates_dir": FIXTURES / "templates",
            "broker_dir": tmp_path / "broker",
            "admin_password": PASSWORD,
            **overrides,
        }
    )
    app = create_app(settings, factory=factory, clock=clock)
    paths = {getattr(r, "path", None) for r in app.routes}
    if "/admin" not in paths:  # until web/app.py includes the routers itself
        app.include_router(admin.router)
    if "/healthz" not in paths:
        app.include_router(ops.router)
    return app


@pytest.fixture
def app(factory, clock, tmp_path):
    return make_app(factory, clock, tmp_path)


@pytest.fixture
def client(app):
    return TestClient(app)


@pytest.fixture
def history(factory, clock, registry, policy):
    return script_history(factory, clock, registry, policy)


# ---------------------------------------------------------------- access


@pytest.mark.parametrize("page", PAGES)
def test_pages_need_the_admin_credentials(client, page):
    for headers in (
        {},
        basic("admin", "wrong"),
        basic("root", PASSWORD),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer " + PASSWORD},
    ):
        refused = client.get(page, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"].startswith('Basic realm="drip admin"')
    ok = client.get(page, headers=AUTH)
    assert ok.status_code == 200
    assert ok.headers["cache-control"] == "no-store" and ok.headers["x-frame-options"] == "DENY"
    assert ok.headers["referrer-policy"] == "same-origin"


@pytest.mark.parametrize("password", [None, ""])
def test_pages_are_off_without_a_password(factory, clock, tmp_path, password):
    client = TestClient(make_app(factory, clock, tmp_path, admin_password=password))
    for page in PAGES:
        answer = client.get(page, headers=AUTH)
        assert answer.status_code == 503 and "set ADMIN_PASSWORD" in answer.text
    assert client.post("/admin/channels/sms/resume", headers=POST).status_code == 503


def test_form_posts_must_come_from_the_public_origin(client, history, factory):
    url = f"/admin/contact-requests/{history.request_id}"
    for headers in (
        {},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/admin/contact-requests"},
        {"Origin": "https://evil.example", "Referer": BASE + "/admin/contact-requests"},
        {"Origin": "http://care.example"},
        {"Origin": "https://care.example:8443"},
    ):
        refused = client.post(url, data={"status": "contacted"}, headers={**AUTH, **headers})
        assert refused.status_code == 403, headers
        assert "PUBLIC_BASE_URL" in refused.text
    with factory() as s:
        assert s.get(ContactRequest, history.request_id).status == "open"
    # Referer is the fallback when a browser sends no Origin; default ports are the same origin.
    for headers in (
        {"Referer": BASE + "/admin/contact-requests"},
        {"Origin": "https://CARE.example:443"},
    ):
        assert (
            client.post(url, data={"status": "contacted"}, headers={**AUTH, **headers}).status_code
            == 200
        )
    # and credentials still come first
    assert client.post(url, data={"status": "closed"}, headers={"Origin": BASE}).status_code == 401


# ---------------------------------------------------------------- funnels


def test_dashboard_lists_campaigns_with_their_enrollment_funnel(client, history):
    page = client.get("/admin", headers=AUTH)
    assert page.status_code == 200
    assert '<a href="/admin/campaigns/quick">Quick test course</a>' in page.text
    row = page.text.split('href="/admin/campaigns/quick"')[1].split("</tr>")[0]
    cells = [c.split("<")[0] for c in row.split('<td class="n">')[1:]]
    assert cells == ["4", "0", "1", "2", "1"]  # enrolled, active, paused, completed, exited
    assert "unsubscribed: 1" in row
    assert 'href="/admin/contact-requests"><strong>1</strong>' in page.text


def test_campaign_page_shows_the_per_step_funnel(client, history):
    page = client.get("/admin/campaigns/quick", headers=AUTH)
    assert page.status_code == 200
    text = page.text
    assert text.index("<td>one</td>") < text.index("<td>two</td>") < text.index("<td>three</td>")
    # The step table is two tables since the results page (web/results.py) fits 1280 px:
    # delivery, then engagement; the same figures as before, each on its step's row.
    delivery = text.split('id="delivery"')[1].split("</table>")[0]
    engagement = text.split('id="engagement"')[1].split("</table>")[0]

    def cells(table: str) -> list[str]:
        row = table.split("<td>one</td>")[1].split("</tr>")[0]
        return [c.split("<")[0] for c in row.split('<td class="n">')[1:]]

    # created sent delivered failed bounced suppressed skipped in-flight delivered/sent
    assert cells(delivery) == ["4", "2", "1", "1", "0", "1", "0", "0", "50.0%"]
    # opens (people, all), clicks (people, all), left out (machines' opens and clicks),
    # asks, unsubs, open and click rates
    assert cells(engagement) == ["1", "2", "1", "1", "3", "1", "1", "100.0%", "100.0%"]
    first_row = engagement.split("<td>one</td>")[1].split("</tr>")[0]
    assert "<td>delivered</td>" in first_row  # the provider reports deliveries
    assert "3 open(s)" not in text and "2 open(s) and 1 click(s) in this report" in text
    assert "<td>read online</td>" in text.split('id="links"')[1]
    assert "Suppressed: address suppressed: bounce (1)" in text
    assert "Skipped: no phone number (1)" in text

    empty = client.get("/admin/campaigns/quick?since=2026-03-03", headers=AUTH)
    assert 'value="2026-03-03"' in empty.text and "50.0%" not in empty.text
    assert client.get("/admin/campaigns/quick?since=yesterday", headers=AUTH).status_code == 400
    assert client.get("/admin/campaigns/nope", headers=AUTH).status_code == 404


# ---------------------------------------------------------------- contact queue


def test_contact_queue_shows_real_details_escaped_and_marks_requests(
    client, history, factory, clock
):
    with transaction(factory) as s:
        s.get(ContactRequest, history.request_id).note = "<script>alert(1)</script> hip"
    page = client.get("/admin/contact-requests", headers=AUTH)
    assert ANA_PHONE in page.text and ANA_EMAIL in page.text and "mornings" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>" not in page.text
    url = f"/admin/contact-requests/{history.request_id}"
    assert f'href="{url}"' in page.text  # the actions are on the request's own page
    page = client.get(url, headers=AUTH)
    assert f'action="{url}"' in page.text and 'value="contacted"' in page.text

    done = client.post(url, data={"status": "contacted", "note": "voicemail"}, headers=POST)
    assert done.status_code == 200 and "now contacted" in done.text
    page = client.get(url, headers=AUTH)
    assert (
        'value="contacted"' not in page.text and 'value="closed"' in page.text
    )  # only Close (and Reopen) are left

    assert client.post(url, data={"status": "reopened"}, headers=POST).status_code == 400
    assert (
        client.post(
            "/admin/contact-requests/99999", data={"status": "closed"}, headers=POST
        ).status_code
        == 404
    )
    assert client.post(url, data={"status": "closed"}, headers=POST).status_code == 200
    with factory() as s:
        req = s.get(ContactRequest, history.request_id)
        assert (req.status, req.handled_at) == ("closed", clock.now())
    assert "Nobody is waiting." in client.get("/admin/contact-requests", headers=AUTH).text
    assert (
        client.post(url, data={"status": "contacted"}, headers=POST).status_code == 400
    )  # closed stays


# ---------------------------------------------------------------- outbox


def _unconfirmed(factory, history, *keys):
    ids = [history.msg[k] for k in keys]
    with transaction(factory) as s:
        for message_id in ids:
            s.get(Message, message_id).status = MessageStatus.UNCONFIRMED
    return ids


def test_outbox_lists_by_status_and_settles_unconfirmed(client, app, history, factory):
    sent_id, failed_id, resend_id, later_id = _unconfirmed(
        factory,
        history,
        ("ana", "three", "sms"),
        ("ben", "three", "sms"),
        ("dee", "three", "sms"),
        ("cy", "two", "email"),
    )
    page = client.get("/admin/outbox?status=unconfirmed", headers=AUTH)
    assert page.status_code == 200
    for message_id in (sent_id, failed_id, resend_id, later_id, history.msg[("ben", "one", "sms")]):
        assert f'action="/admin/outbox/{message_id}/settle"' in page.text
    assert "the reaper enqueues it within 10 s" in page.text
    everything = client.get("/admin/outbox", headers=AUTH).text
    assert "550 no such user" in everything and "rejected by provider" in everything
    assert client.get("/admin/outbox?status=lost", headers=AUTH).status_code == 400

    assert (
        client.post(
            f"/admin/outbox/{sent_id}/settle", data={"outcome": "sent"}, headers=POST
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"/admin/outbox/{failed_id}/settle", data={"outcome": "failed"}, headers=POST
        ).status_code
        == 200
    )
    no_dispatcher = client.post(
        f"/admin/outbox/{later_id}/settle", data={"outcome": "resend"}, headers=POST
    )
    assert "left queued" in no_dispatcher.text and "reaper" in no_dispatcher.text

    handed = []
    app.state.dispatch = handed.append
    resent = client.post(
        f"/admin/outbox/{resend_id}/settle", data={"outcome": "resend"}, headers=POST
    )
    assert resent.status_code == 200 and "handed to the send queues" in resent.text
    assert len(handed) == 1 and handed[0].sms == [resend_id] and handed[0].email == []

    with factory() as s:
        got = {
            i: (s.get(Message, i).status, s.get(Message, i).reason_code)
            for i in (sent_id, failed_id, resend_id, later_id)
        }
    assert got == {
        sent_id: (MessageStatus.SENT, "settled_sent"),
        failed_id: (MessageStatus.FAILED, "settled_failed"),
        resend_id: (MessageStatus.QUEUED, "settled_resend"),
        later_id: (MessageStatus.QUEUED, "settled_resend"),
    }
    again = client.post(f"/admin/outbox/{sent_id}/settle", data={"outcome": "failed"}, headers=POST)
    assert again.status_code == 409 and "not unconfirmed" in again.text
    assert (
        client.post(
            f"/admin/outbox/{failed_id}/settle", data={"outcome": "maybe"}, headers=POST
        ).status_code
        == 409
    )  # not unconfirmed any more: nothing to settle


def test_a_failing_dispatcher_leaves_the_message_for_the_reaper(client, app, history, factory):
    (message_id,) = _unconfirmed(factory, history, ("ana", "three", "sms"))

    def broken(_work):
        raise ConnectionError("broker down")

    app.state.dispatch = broken
    answer = client.post(
        f"/admin/outbox/{message_id}/settle", data={"outcome": "resend"}, headers=POST
    )
    assert answer.status_code == 200 and "broker did not take them" in answer.text
    with factory() as s:
        assert s.get(Message, message_id).status == MessageStatus.QUEUED


# ---------------------------------------------------------------- channels


def test_resume_a_paused_channel_from_the_page(client, app, history, factory, clock):
    with transaction(factory) as s:
        pause(s, clock, "sms", "twilio: 20003 Authenticate", by="provider")
    page = client.get("/admin/channels", headers=AUTH)
    assert "twilio: 20003 Authenticate" in page.text
    assert 'action="/admin/channels/sms/resume"' in page.text
    assert (
        'action="/admin/channels/email/pause"' in page.text
        and 'action="/admin/channels/sms/pause"' not in page.text
    )

    handed = []
    app.state.dispatch = handed.append
    done = client.post("/admin/channels/sms/resume", headers=POST)
    assert done.status_code == 200 and "3 message(s) handed" in done.text
    queued = [history.msg[(p, "three", "sms")] for p in ("ana", "ben", "dee")]
    assert sorted(handed[0].sms) == sorted(queued)
    with factory() as s:
        assert paused(s, "sms") is None
    assert "No channel is paused." in client.get("/admin/channels", headers=AUTH).text
    assert client.post("/admin/channels/fax/resume", headers=POST).status_code == 404


def test_pause_a_channel_from_the_page(client, factory):
    assert (
        client.post("/admin/channels/email/pause", data={"reason": " "}, headers=POST).status_code
        == 400
    )
    done = client.post(
        "/admin/channels/email/pause", data={"reason": "SendGrid incident"}, headers=POST
    )
    assert done.status_code == 200
    with factory() as s:
        row = paused(s, "email")
        assert (row.reason, row.paused_by) == ("SendGrid incident", "admin:admin")
        assert s.scalars(select(ChannelPause)).all() == [row]
