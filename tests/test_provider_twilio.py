"""TwilioSms driving the real `twilio` SDK against the loopback fake: what Twilio
receives and how each answer is classified, alone and through send_batch."""

from __future__ import annotations

import socket
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.composing import STATUS_REF_PURPOSE
from campaigns.delivery.pauses import paused
from campaigns.delivery.providers import Outcome, OutgoingSms
from campaigns.delivery.sending import send_batch
from campaigns.models import Suppression
from campaigns.states import MessageStatus
from tests.fakes import FakeTwilio, Response, twilio_error
from tests.helpers import add_and_enroll, messages
from workers.providers.twilio import TwilioSms

SID = "AC" + "7" * 32
TOKEN = "twilio-test-token"
FROM = "+15557650002"
SERVICE = "MG" + "3" * 32


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def fake():
    with FakeTwilio(account_sid=SID, auth_token=TOKEN) as server:
        yield server


def provider(url, token=TOKEN, **kw) -> TwilioSms:
    kw = {"from_number": FROM, "timeout": 2.0, **kw}
    return TwilioSms(SID, token, status_base_url="https://care.example", api_base_url=url, **kw)


def text(i: int, to: str | None = None) -> OutgoingSms:
    return OutgoingSms(
        i, to or f"+1202555{i:04d}", f"Lunara: lesson {i} https://care.example/m/x", f"ref{i:05d}"
    )


def test_create_sends_body_sender_and_a_status_callback_with_only_the_reference(fake):
    results = provider(fake.url).send_sms([text(1), text(2)])
    assert [(r.message_id, r.outcome) for r in results] == [
        (1, Outcome.ACCEPTED),
        (2, Outcome.ACCEPTED),
    ]
    # The two calls run concurrently: match requests to texts by recipient, not order.
    by_to = {r.form["To"]: r for r in fake.requests}
    assert [r.provider_message_id for r in results] == [
        by_to["+12025550001"].response.body["sid"],
        by_to["+12025550002"].response.body["sid"],
    ]
    first, second = by_to["+12025550001"].form, by_to["+12025550002"].form
    assert first == {
        "To": "+12025550001",
        "From": FROM,
        "Body": "Lunara: lesson 1 https://care.example/m/x",
        "StatusCallback": "https://care.example/webhooks/twilio/status?ref=ref00001",
    }
    callback = urlsplit(second["StatusCallback"])
    assert parse_qs(callback.query) == {"ref": ["ref00002"]}  # no number, no name, no topic
    assert fake.requests[0].basic_auth == (SID, TOKEN)
    assert fake.requests[0].path == f"/2010-04-01/Accounts/{SID}/Messages.json"


def test_messaging_service_is_used_instead_of_a_from_number(fake):
    provider(fake.url, messaging_service_sid=SERVICE).send_sms([text(1)])
    (form,) = fake.sent_messages()
    assert form["MessagingServiceSid"] == SERVICE and "From" not in form


@pytest.mark.parametrize(
    "status,code,outcome,suppress",
    [
        (400, 21610, Outcome.PERMANENT, "unsubscribed at carrier (21610)"),
        (400, 21211, Outcome.PERMANENT, "invalid number (21211)"),
        (400, 21614, Outcome.PERMANENT, "not a reachable mobile (21614)"),
        (400, 21612, Outcome.PERMANENT, "not a reachable mobile (21612)"),
        (400, 21635, Outcome.PERMANENT, "not a reachable mobile (21635)"),
        (400, 21606, Outcome.CONFIG, None),
        (400, 21608, Outcome.CONFIG, None),
        (403, 20403, Outcome.CONFIG, None),
        (404, 20404, Outcome.CONFIG, None),  # wrong account or base URL: true for every text
        (400, 21617, Outcome.PERMANENT, None),  # body too long: this message, not the person
        (500, 20500, Outcome.UNKNOWN, None),  # may have been created: never resent blindly
        (502, 502, Outcome.UNKNOWN, None),
        (503, 503, Outcome.TRANSIENT, None),
    ],
)
def test_error_codes(fake, status, code, outcome, suppress):
    fake.enqueue(twilio_error(status, code, "scripted"))
    (result,) = provider(fake.url).send_sms([text(1)])
    assert (result.outcome, result.suppress_reason) == (outcome, suppress)
    assert str(code) in result.error


def test_bad_credentials_are_a_configuration_error(fake):
    (result,) = provider(fake.url, token="wrong").send_sms([text(1)])
    assert result.outcome is Outcome.CONFIG and "20003" in result.error


@pytest.mark.parametrize("status,code", [(429, 20429), (429, 429)])
def test_rate_limited_is_transient_and_honours_retry_after(fake, status, code):
    fake.enqueue(twilio_error(status, code, "Too Many Requests", {"Retry-After": "7"}))
    (result,) = provider(fake.url).send_sms([text(1)])
    assert (result.outcome, result.retry_after) == (Outcome.TRANSIENT, 7.0)


def test_each_text_in_a_list_is_classified_on_its_own(fake):
    # The texts of a chunk go out concurrently, so the failure is tied to a recipient (the
    # fake answers 21211 to a number that is not E.164), not to the order of arrival.
    results = provider(fake.url).send_sms([text(1), text(2, to="12345"), text(3)])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.PERMANENT, Outcome.ACCEPTED]
    assert [r.message_id for r in results] == [1, 2, 3]
    assert results[1].suppress_reason == "invalid number (21211)"
    assert len(fake.requests) == 3


def test_a_chunk_goes_out_concurrently(fake):
    fake.always(Response(delay=0.3))  # a slow API: each answer takes 0.3 s
    t0 = time.monotonic()
    results = provider(fake.url).send_sms([text(i) for i in range(1, 9)])
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert time.monotonic() - t0 < 8 * 0.3 / 2  # far less than one after another


def test_read_timeout_after_the_request_arrived_is_unknown(fake):
    fake.enqueue(Response(delay=3.0))  # a real 201, too late
    t0 = time.monotonic()
    (result,) = provider(fake.url, timeout=0.3).send_sms([text(1)])
    assert result.outcome is Outcome.UNKNOWN and time.monotonic() - t0 < 2
    assert len(fake.requests) == 1  # Twilio got it: a resend could text the person twice


def test_connection_dropped_after_the_request_arrived_is_unknown(fake):
    fake.enqueue(Response(drop_connection=True))
    (result,) = provider(fake.url).send_sms([text(1)])
    assert result.outcome is Outcome.UNKNOWN and len(fake.requests) == 1


def test_connection_refused_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (result,) = provider(f"http://127.0.0.1:{port}").send_sms([text(1)])
    assert result.outcome is Outcome.TRANSIENT and "not sent" in result.error


# ------------------------------------------------------- through send_batch, real database


def _claim(factory, clock, registry, policy):
    with transaction(factory) as s:
        return claim_due(s, clock, registry, policy)


def test_21610_suppresses_the_number_and_the_next_text_never_reaches_twilio(
    send_ctx, factory, clock, registry, policy, fake
):
    add_and_enroll(factory, clock, registry, policy, campaign="quick", phone="+12025550143")
    first = _claim(factory, clock, registry, policy).sms  # step one
    assert len(first) == 1
    send_ctx.sms_provider = provider(fake.url)
    fake.enqueue(twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"))

    assert send_batch(send_ctx, "sms", first).failed == 1
    with factory() as s:
        assert s.scalars(select(Suppression.address)).all() == ["+12025550143"]
    # Step two is claimed once step one has failed (invariant 10): e-mail only, skipped (no
    # address); step three's text is stopped by the suppression at its claim.
    _claim(factory, clock, registry, policy)
    assert _claim(factory, clock, registry, policy).sms == []
    assert len(fake.requests) == 1
    rows = {(m.step_key, m.channel): m for m in messages(factory)}
    assert (rows["one", "sms"].status, rows["one", "sms"].reason) == (
        MessageStatus.FAILED,
        "unsubscribed at carrier (21610)",
    )
    assert rows["three", "sms"].status == MessageStatus.SUPPRESSED


def test_send_batch_401_pauses_the_sms_channel(send_ctx, factory, clock, registry, policy, fake):
    add_and_enroll(factory, clock, registry, policy, campaign="quick", phone="+12025550143")
    work = _claim(factory, clock, registry, policy)
    send_ctx.sms_provider = provider(fake.url, token="revoked")

    assert send_batch(send_ctx, "sms", work.sms).paused == 1
    with factory() as s:
        assert "twilio: HTTP 401, code 20003" in paused(s, "sms").reason
    (m,) = [m for m in messages(factory) if m.channel == "sms"]
    assert m.status == MessageStatus.QUEUED
    send_batch(send_ctx, "sms", work.sms)
    assert len(fake.requests) == 1


def test_accepted_text_is_recorded_with_its_sid(send_ctx, factory, clock, registry, policy, fake):
    add_and_enroll(
        factory, clock, registry, policy, campaign="quick", phone="+12025550143", first_name="Ana"
    )
    work = _claim(factory, clock, registry, policy)
    send_ctx.sms_provider = provider(fake.url)
    assert send_batch(send_ctx, "sms", work.sms).sent == 1
    (m,) = [m for m in messages(factory) if m.channel == "sms"]
    (form,) = fake.sent_messages()
    assert m.provider_message_id == fake.requests[0].response.body["sid"] and m.provider == "twilio"
    ref = form["StatusCallback"].rsplit("?ref=", 1)[1]
    assert send_ctx.signer.unsign(STATUS_REF_PURPOSE, ref) == m.public_token  # signed, opaque
    assert "2025550143" not in form["StatusCallback"]


def test_error_text_masks_the_number(fake):
    fake.enqueue(
        twilio_error(400, 21211, "The 'To' number +12025550143 is not a valid phone number.")
    )
    (result,) = provider(fake.url).send_sms([text(1, to="+12025550143")])
    assert "+12025550143" not in result.error and "+***43" in result.error  # logs and rows (inv. 8)
