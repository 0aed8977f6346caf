"""SendGridEmail driving the real `sendgrid` SDK against the loopback fake: what SendGrid
receives (batches, headers, metadata, settings) and how each answer is classified."""

from __future__ import annotations

import json
import socket
import time

import pytest
from sqlalchemy import select

from campaigns.content.rendering import RenderedEmail
from campaigns.db import transaction
from campaigns.delivery.batching import (
    PLACEHOLDER_LINKS,
    PLACEHOLDER_NAME,
    SharedEmail,
    fill,
    substitutions,
)
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.pauses import paused
from campaigns.delivery.providers import Outcome, OutgoingEmail
from campaigns.delivery.sending import send_batch
from campaigns.links import Links
from campaigns.models import Suppression
from campaigns.states import MessageStatus
from tests.fakes import FakeSendGrid, Response, sendgrid_error
from tests.helpers import add_and_enroll, messages
from workers.providers.sendgrid import SendGridEmail

KEY = "SG.test-key"
# Words that must never reach provider metadata (invariant 8).
HEALTH_WORDS = ("hip", "back", "pain", "lesson", "quick", "course", "name")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def fake():
    with FakeSendGrid(api_key=KEY) as server:
        yield server


def provider(fake, key=KEY, **kw) -> SendGridEmail:
    kw = {"from_email": "care@lunara.example", "from_name": "Lunara", "timeout": 2.0, **kw}
    return SendGridEmail(api_key=key, host=fake.url, **kw)


SHARED = SharedEmail(
    "quick/1/one/en/True",
    RenderedEmail(
        subject=f"Lesson one for {PLACEHOLDER_NAME}",
        preheader="",
        html=(
            f'<p>Hi {PLACEHOLDER_NAME}</p><a href="{PLACEHOLDER_LINKS.unsubscribe}">Unsubscribe</a>'
        ),
        text=f"Hi {PLACEHOLDER_NAME}\nUnsubscribe: {PLACEHOLDER_LINKS.unsubscribe}",
    ),
)


def email(i: int, shared: bool = True) -> OutgoingEmail:
    links = Links(
        **{f: f"https://care.example/{f[0]}/tok{i}.sig" for f in Links.__dataclass_fields__}
    )
    subs = substitutions(f"Name{i}", links)
    content = RenderedEmail(
        *(fill(getattr(SHARED.content, f), subs) for f in ("subject", "preheader", "html", "text"))
    )
    return OutgoingEmail(
        i,
        f"person{i}@example.com",
        content,
        links.unsubscribe,
        f"ref{i:05d}",
        shared=SHARED if shared else None,
        substitutions=subs if shared else {},
    )


def test_1500_recipients_go_in_two_requests_of_1000_and_500(fake):
    items = [email(i) for i in range(1500)]
    results = provider(fake).send_emails(items)

    reqs = fake.requests
    assert [len(r.json["personalizations"]) for r in reqs] == [1000, 500]
    assert all(r.bearer_token == KEY and r.path == "/v3/mail/send" for r in reqs)
    assert [r.message_id for r in results] == list(range(1500))
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    ids = [r.response.headers["X-Message-Id"] for r in reqs]
    assert {r.provider_message_id for r in results[:1000]} == {ids[0]}
    assert {r.provider_message_id for r in results[1000:]} == {ids[1]}
    body = reqs[0].json
    # The body travels once, with placeholders; each person's values are substitutions.
    assert body["content"] == [
        {"type": "text/plain", "value": SHARED.content.text},
        {"type": "text/html", "value": SHARED.content.html},
    ]
    assert body["from"] == {"email": "care@lunara.example", "name": "Lunara"}
    p = body["personalizations"][7]
    assert p["to"] == [{"email": "person7@example.com"}]
    assert p["subject"] == "Lesson one for Name7"  # the real subject, not the placeholder one
    assert p["substitutions"][PLACEHOLDER_NAME] == "Name7"
    assert p["substitutions"][PLACEHOLDER_LINKS.unsubscribe] == "https://care.example/u/tok7.sig"


def test_unsubscribe_headers_and_only_the_opaque_reference_as_metadata(fake):
    provider(fake).send_emails([email(1), email(2, shared=False)])
    bodies = [r.json for r in fake.requests]
    assert len(bodies) == 2  # one shared-body request, one on its own
    for body in bodies:
        assert "categories" not in body and "custom_args" not in body
        (p,) = body["personalizations"]
        n = p["to"][0]["email"][6]
        assert p["headers"] == {
            # No mailto: nothing reads that inbox, so an opt-out sent there would be lost.
            "List-Unsubscribe": f"<https://care.example/u/tok{n}.sig>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        assert p["custom_args"] == {"drip_ref": f"ref0000{n}"}
        metadata = json.dumps([p["custom_args"], p["headers"], body.get("categories")]).lower()
        assert "@example.com" not in metadata and f"name{n}" not in metadata
        assert not any(word in metadata for word in HEALTH_WORDS)
    single = bodies[1]
    assert "substitutions" not in single["personalizations"][0]
    assert single["content"][1]["value"] == email(2).content.html  # its own rendering


def test_tracking_off_and_sandbox_from_settings(fake):
    provider(fake).send_emails([email(1)])
    provider(fake, sandbox=True, tracking=True).send_emails([email(2)])
    off, on = (r.json for r in fake.requests)
    assert off["mail_settings"] == {"sandbox_mode": {"enable": False}}
    assert off["tracking_settings"]["click_tracking"] == {"enable": False, "enable_text": False}
    assert off["tracking_settings"]["open_tracking"] == {"enable": False}
    assert on["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert on["tracking_settings"]["open_tracking"] == {"enable": True}


def test_400_on_one_personalization_fails_it_and_resends_the_rest(fake):
    fake.enqueue(
        sendgrid_error(
            400, "Does not contain a valid address.", field="personalizations.1.to.0.email"
        )
    )
    results = provider(fake).send_emails([email(i) for i in range(3)])
    first, second = fake.wait_for(2)
    assert len(first.json["personalizations"]) == 3
    assert [p["to"][0]["email"] for p in second.json["personalizations"]] == [
        "person0@example.com",
        "person2@example.com",
    ]
    by_id = {r.message_id: r for r in results}
    assert by_id[1].outcome is Outcome.PERMANENT and by_id[1].suppress_reason == "invalid address"
    assert "valid address" in by_id[1].error
    assert by_id[0].outcome is by_id[2].outcome is Outcome.ACCEPTED
    assert len(fake.requests) == 2


def test_error_text_masks_addresses(fake):
    fake.enqueue(
        sendgrid_error(
            400, "person1@example.com is not a valid address", field="personalizations.0.to"
        )
    )
    (result,) = provider(fake).send_emails([email(1)])
    assert "person1@example.com" not in result.error and "p***@example.com" in result.error


def test_400_about_the_whole_request_fails_every_message_without_suppressing(fake):
    fake.enqueue(
        sendgrid_error(400, "The from email does not contain a valid address.", field="from.email")
    )
    results = provider(fake).send_emails([email(1), email(2)])
    assert {(r.outcome, r.suppress_reason) for r in results} == {(Outcome.PERMANENT, None)}
    assert "from.email" in results[0].error and len(fake.requests) == 1


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_errors_are_configuration_errors(fake, status):
    if status != 401:  # 403: key lacks the mail.send scope; 404: SENDGRID_API_HOST is wrong
        fake.enqueue(sendgrid_error(status, "scripted"))
    results = provider(fake, key="SG.revoked").send_emails([email(1), email(2)])
    assert {r.outcome for r in results} == {Outcome.CONFIG}
    assert f"HTTP {status}" in results[0].error


def test_429_is_transient_with_retry_after_from_the_reset_header(fake):
    fake.enqueue(
        sendgrid_error(
            429, "too many requests", headers={"X-RateLimit-Reset": str(int(time.time()) + 30)}
        )
    )
    (result,) = provider(fake).send_emails([email(1)])
    assert result.outcome is Outcome.TRANSIENT
    assert 27 <= result.retry_after <= 31


@pytest.mark.parametrize(
    "status,outcome",
    [
        # SendGrid documents 500 and 503 as not processed: a retry (sendgrid.py docstring).
        (500, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        # Not SendGrid's own answers: a gateway may have forwarded the request.
        (502, Outcome.UNKNOWN),
        (504, Outcome.UNKNOWN),
    ],
)
def test_server_errors_as_sendgrid_documents_them(fake, status, outcome):
    fake.enqueue(sendgrid_error(status, "server error"))
    (result,) = provider(fake).send_emails([email(1)])
    assert (result.outcome, result.retry_after) == (outcome, None)


def test_slow_answer_after_the_request_arrived_is_unknown(fake):
    fake.enqueue(Response(delay=3.0))  # a real 202, too late
    t0 = time.monotonic()
    (result,) = provider(fake, timeout=0.3).send_emails([email(1)])
    assert result.outcome is Outcome.UNKNOWN and time.monotonic() - t0 < 2
    assert len(fake.requests) == 1  # it did reach SendGrid: resending could double-send


def test_connection_dropped_after_the_request_arrived_is_unknown(fake):
    fake.enqueue(Response(drop_connection=True))  # the fake read the whole request first
    (result,) = provider(fake).send_emails([email(1)])
    assert result.outcome is Outcome.UNKNOWN and len(fake.requests) == 1


def test_connection_refused_is_transient():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sg = SendGridEmail(
        api_key=KEY,
        host=f"http://127.0.0.1:{port}",
        from_email="care@lunara.example",
        from_name="Lunara",
        timeout=1.0,
    )
    (result,) = sg.send_emails([email(1)])
    assert result.outcome is Outcome.TRANSIENT and "not sent" in result.error


# ------------------------------------------------------- through send_batch, real database


def _claim(factory, clock, registry, policy):
    with transaction(factory) as s:
        return claim_due(s, clock, registry, policy)


def test_send_batch_one_request_invalid_address_suppressed_rest_sent(
    send_ctx, factory, clock, registry, policy, fake
):
    for i in range(3):
        add_and_enroll(
            factory,
            clock,
            registry,
            policy,
            campaign="quick",
            email=f"p{i}@example.com",
            first_name=f"Pat{i}",
        )
    work = _claim(factory, clock, registry, policy)
    send_ctx.email_provider = provider(fake)
    fake.enqueue(
        sendgrid_error(400, "Does not contain a valid address.", field="personalizations.2.to")
    )

    report = send_batch(send_ctx, "email", work.email)

    assert (report.sent, report.failed) == (2, 1)
    first, second = fake.requests
    assert len(first.json["personalizations"]) == 3  # the engine's shared body batched them
    assert len(second.json["personalizations"]) == 2
    rows = {m.id: m for m in messages(factory) if m.channel == "email"}
    bad = rows[work.email[2]]
    assert (bad.status, bad.reason, bad.provider) == (
        MessageStatus.FAILED,
        "invalid address",
        "sendgrid",
    )
    assert {rows[i].status for i in work.email[:2]} == {MessageStatus.SENT}
    assert rows[work.email[0]].provider_message_id == second.response.headers["X-Message-Id"]
    with factory() as s:
        assert s.scalars(select(Suppression.address)).all() == ["p2@example.com"]


def test_send_batch_401_pauses_the_email_channel(send_ctx, factory, clock, registry, policy, fake):
    add_and_enroll(factory, clock, registry, policy, campaign="quick", email="p@example.com")
    work = _claim(factory, clock, registry, policy)
    send_ctx.email_provider = provider(fake, key="SG.revoked")

    assert send_batch(send_ctx, "email", work.email).paused == 1
    with factory() as s:
        assert "sendgrid: HTTP 401" in paused(s, "email").reason
    (m,) = [m for m in messages(factory) if m.channel == "email"]
    assert m.status == MessageStatus.QUEUED  # waiting for ops, not failed
    assert send_batch(send_ctx, "email", work.email).paused == 1
    assert len(fake.requests) == 1  # the paused channel made no second call
