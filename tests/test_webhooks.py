"""Provider webhooks end to end: real signatures (Twilio's RequestValidator, an ECDSA
P-256 key pair made here for SendGrid), the FastAPI app, a real database (SQLite and
PostgreSQL through the `factory` fixture)."""

from __future__ import annotations

import base64
import json
import logging
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from campaigns.audience.consent import has_consent
from campaigns.audience.suppression import suppress
from campaigns.content.sms_text import is_gsm7, segments
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.sending import send_batch
from campaigns.models import ConsentRecord, Enrollment, Event, Message, Subscriber, Suppression
from campaigns.states import EventType, MessageStatus
from settings import load_settings
from tests.helpers import add_and_enroll
from web.app import create_app

TOKEN = "twilio-auth-token-for-tests"
BASE = "https://care.example"  # the public URL; the test client itself is http://testserver
PHONE = "+12025550143"
EMAIL = "ana@example.com"
SG_SIG = "X-Twilio-Email-Event-Webhook-Signature"
SG_TS = "X-Twilio-Email-Event-Webhook-Timestamp"


# ---------------------------------------------------------------- set-up


def public_key_b64(private_key) -> str:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()  # as SendGrid's settings page shows it


@pytest.fixture
def sg_key():
    return ec.generate_private_key(ec.SECP256R1())


def make_client(factory, clock, **overrides) -> TestClient:
    settings = load_settings(
        environment="test",
        secret_key="k" * 40,
        public_base_url=BASE,
        brand_name="Lunara",
        email_from="care@lunara.example",
        **overrides,
    )
    return TestClient(create_app(settings, factory=factory, clock=clock))


@pytest.fixture
def client(factory, clock, sg_key):
    return make_client(
        factory, clock, twilio_auth_token=TOKEN, sendgrid_webhook_public_key=public_key_b64(sg_key)
    )


def twilio_post(client, path, params, *, token=TOKEN, signed_url=None, sent_params=None):
    signature = RequestValidator(token).compute_signature(signed_url or BASE + path, params)
    return client.post(path, data=sent_params or params, headers={"X-Twilio-Signature": signature})


def status_params(sid, status, **extra):
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC" + "0" * 32,
        "From": "+12025550100",
        "To": PHONE,
        **extra,
    }


def sg_sign(key, timestamp: str, body: bytes) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def sendgrid_post(client, key, batch, *, timestamp=None, body=None, signed_body=None, headers=None):
    body = body if body is not None else json.dumps(batch).encode()
    timestamp = timestamp or str(int(client.app.state.clock.now().timestamp()))
    sent = {
        SG_SIG: sg_sign(key, timestamp, signed_body or body),
        SG_TS: timestamp,
        "Content-Type": "application/json",
    }
    sent.update(headers or {})
    return client.post(
        "/webhooks/sendgrid/events",
        content=body,
        headers={k: v for k, v in sent.items() if v is not None},
    )


def status_ref(public_token: str) -> str:
    """What the send path puts in Twilio's status callback: a signed token."""
    from campaigns.delivery.composing import STATUS_REF_PURPOSE
    from campaigns.links import Signer

    return Signer(("k" * 40).encode()).sign(STATUS_REF_PURPOSE, public_token)


def sg_event(ref, event, **extra):
    return {
        "email": EMAIL,
        "timestamp": 1772463600,
        "event": event,
        "sg_event_id": uuid.uuid4().hex,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001",
        "drip_ref": ref,
        **extra,
    }


def claim(factory, clock, registry, policy):
    with transaction(factory) as s:
        return claim_due(s, clock, registry, policy)


def sent_message(
    factory, clock, registry, policy, channel, *, status=MessageStatus.SENT, campaign="tiny", **who
):
    """A message as the send path leaves it: provider, provider id, status."""
    if not who:
        who = {"email": EMAIL} if channel == "email" else {"phone": PHONE}
    add_and_enroll(factory, clock, registry, policy, campaign=campaign, **who)
    message_id = getattr(claim(factory, clock, registry, policy), channel)[0]
    with transaction(factory) as s:
        msg = s.get(Message, message_id)
        msg.status = status
        msg.provider = "sendgrid" if channel == "email" else "twilio"
        # SendGrid's X-Message-Id names a whole batch request; Twilio's SID one message.
        msg.provider_message_id = (
            "14c5d75ce93.dfd" if channel == "email" else f"SM{message_id:032d}"
        )
        msg.sent_at = clock.now() if status == MessageStatus.SENT else None
        return msg.id, msg.public_token, msg.provider_message_id


def message(factory, message_id) -> Message:
    with factory() as s:
        return s.get(Message, message_id)


def count(factory, model, *where) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def suppression(factory, channel, address) -> Suppression | None:
    with factory() as s:
        return s.scalar(
            select(Suppression).where(
                Suppression.channel == channel, Suppression.address == address
            )
        )


# ---------------------------------------------------------------- Twilio status


def test_twilio_status_moves_sent_to_delivered(client, factory, clock, registry, policy):
    mid, ref, sid = sent_message(factory, clock, registry, policy, "sms")
    path = f"/webhooks/twilio/status?ref={status_ref(ref)}"
    assert twilio_post(client, path, status_params(sid, "sent")).status_code == 200
    response = twilio_post(client, path, status_params(sid, "delivered"))
    assert response.status_code == 200 and response.content == b""
    moved = message(factory, mid)
    assert (moved.status, moved.reason_code, moved.reason) == (
        MessageStatus.DELIVERED,
        "webhook",
        "twilio webhook: delivered",
    )
    with factory() as s:
        rows = s.scalars(select(Event).where(Event.provider == "twilio").order_by(Event.id)).all()
    assert [(e.type, e.message_id, e.provider_event_id) for e in rows] == [
        ("sent", mid, f"{sid}:sent"),
        ("delivered", mid, f"{sid}:delivered"),
    ]
    assert rows[1].payload["MessageStatus"] == "delivered"  # the raw payload is kept


def test_twilio_status_found_by_sid_without_ref(client, factory, clock, registry, policy):
    mid, _, sid = sent_message(factory, clock, registry, policy, "sms")
    assert (
        twilio_post(client, "/webhooks/twilio/status", status_params(sid, "delivered")).status_code
        == 200
    )
    assert message(factory, mid).status == MessageStatus.DELIVERED


@pytest.mark.parametrize("tamper", ["param", "ref", "token", "missing", "host_url"])
def test_twilio_forged_requests_refused(tamper, client, factory, clock, registry, policy):
    mid, ref, sid = sent_message(factory, clock, registry, policy, "sms")
    path = f"/webhooks/twilio/status?ref={status_ref(ref)}"
    params = status_params(sid, "delivered")
    if tamper == "param":  # signed "delivered", says "failed"
        response = twilio_post(
            client, path, params, sent_params=status_params(sid, "failed", ErrorCode="21610")
        )
    elif tamper == "ref":  # signed for one message, aimed at another
        response = twilio_post(
            client,
            f"/webhooks/twilio/status?ref=other{status_ref(ref)}",
            params,
            signed_url=BASE + path,
        )
    elif tamper == "token":
        response = twilio_post(client, path, params, token="not-the-auth-token")
    elif tamper == "missing":
        response = client.post(path, data=params)
    else:  # signed for the URL the request arrived at, not the public one
        response = twilio_post(client, path, params, signed_url="http://testserver" + path)
    assert response.status_code == 403
    assert message(factory, mid).status == MessageStatus.SENT
    assert count(factory, Event, Event.provider == "twilio") == 0
    assert count(factory, Suppression) == 0


def test_twilio_signature_checked_against_public_url_behind_proxy(
    client, factory, clock, registry, policy
):
    """The request reaches the app as http://testserver (the proxy's side, with the Host
    header it chose); Twilio signed https://care.example/..., which is what validates."""
    mid, ref, sid = sent_message(factory, clock, registry, policy, "sms")
    path = f"/webhooks/twilio/status?ref={status_ref(ref)}"
    response = twilio_post(
        client, path, status_params(sid, "delivered"), signed_url=f"{BASE}{path}"
    )
    assert response.status_code == 200
    assert message(factory, mid).status == MessageStatus.DELIVERED
    forged_host = client.post(
        path,
        data=status_params(sid, "failed"),
        headers={
            "Host": "care.example",
            "X-Forwarded-Proto": "https",
            "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(
                "http://care.example" + path, status_params(sid, "failed")
            ),
        },
    )
    assert forged_host.status_code == 403


@pytest.mark.parametrize(
    "first,second,expected",
    [
        ("delivered", "sent", MessageStatus.DELIVERED),
        ("failed", "delivered", MessageStatus.FAILED),
        ("undelivered", "sent", MessageStatus.FAILED),
    ],
)
def test_twilio_out_of_order_never_moves_backwards(
    first, second, expected, client, factory, clock, registry, policy
):
    mid, ref, sid = sent_message(factory, clock, registry, policy, "sms")
    path = f"/webhooks/twilio/status?ref={status_ref(ref)}"
    assert twilio_post(client, path, status_params(sid, first)).status_code == 200
    assert twilio_post(client, path, status_params(sid, second)).status_code == 200
    assert message(factory, mid).status == expected
    assert count(factory, Event, Event.message_id == mid, Event.provider == "twilio") == 2


def test_twilio_duplicate_callback_is_a_no_op(client, factory, clock, registry, policy):
    _, ref, sid = sent_message(factory, clock, registry, policy, "sms")
    path = f"/webhooks/twilio/status?ref={status_ref(ref)}"
    for _ in range(2):
        assert twilio_post(client, path, status_params(sid, "delivered")).status_code == 200
    assert count(factory, Event, Event.provider == "twilio") == 1


def test_twilio_21610_fails_the_message_and_suppresses_the_number(
    client, factory, clock, registry, policy
):
    mid, ref, sid = sent_message(factory, clock, registry, policy, "sms")
    response = twilio_post(
        client,
        f"/webhooks/twilio/status?ref={status_ref(ref)}",
        status_params(sid, "failed", ErrorCode="21610"),
    )
    assert response.status_code == 200
    msg = message(factory, mid)
    assert msg.status == MessageStatus.FAILED and "21610" in msg.reason
    assert suppression(factory, "sms", PHONE).reason == "stop"


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_unconfirmed_message_is_settled_by_its_webhook(
    channel, client, sg_key, factory, clock, registry, policy
):
    mid, ref, sid = sent_message(
        factory, clock, registry, policy, channel, status=MessageStatus.UNCONFIRMED
    )
    if channel == "sms":
        response = twilio_post(
            client, f"/webhooks/twilio/status?ref={status_ref(ref)}", status_params(sid, "sent")
        )
        expected = MessageStatus.SENT
    else:
        response = sendgrid_post(client, sg_key, [sg_event(ref, "delivered")])
        expected = MessageStatus.DELIVERED
    assert response.status_code == 200
    msg = message(factory, mid)
    assert msg.status == expected and msg.sent_at is not None


def test_twilio_unconfigured_refuses_with_503(factory, clock, registry, policy):
    client = make_client(factory, clock)  # no TWILIO_AUTH_TOKEN, no SendGrid key
    mid, ref, sid = sent_message(factory, clock, registry, policy, "sms")
    response = twilio_post(
        client, f"/webhooks/twilio/status?ref={status_ref(ref)}", status_params(sid, "delivered")
    )
    assert response.status_code == 503
    assert sendgrid_post(client, ec.generate_private_key(ec.SECP256R1()), []).status_code == 503
    assert message(factory, mid).status == MessageStatus.SENT


# ---------------------------------------------------------------- SendGrid events


def test_sendgrid_batch_moves_sent_to_delivered(client, sg_key, factory, clock, registry, policy):
    mid, ref, _ = sent_message(factory, clock, registry, policy, "email")
    batch = [sg_event(ref, "processed"), sg_event(ref, "delivered"), sg_event(ref, "open")]
    assert sendgrid_post(client, sg_key, batch).status_code == 200
    assert message(factory, mid).status == MessageStatus.DELIVERED
    with factory() as s:
        rows = s.scalars(select(Event).where(Event.provider == "sendgrid").order_by(Event.id)).all()
    assert [e.type for e in rows] == ["queued", "delivered", "opened"]
    assert all(e.message_id == mid for e in rows)
    assert rows[1].provider_event_id == batch[1]["sg_event_id"] and rows[1].payload == batch[1]


@pytest.mark.parametrize(
    "forgery",
    [
        "tampered_body",
        "wrong_key",
        "stale",
        "future",
        "no_signature",
        "no_timestamp",
        "garbage_signature",
    ],
)
def test_sendgrid_forged_requests_refused(
    forgery, client, sg_key, factory, clock, registry, policy
):
    mid, ref, _ = sent_message(factory, clock, registry, policy, "email")
    batch = [sg_event(ref, "bounce", type="bounce", status="5.1.1")]
    now = int(clock.now().timestamp())
    if forgery == "tampered_body":
        signed = json.dumps([sg_event(ref, "delivered")]).encode()
        response = sendgrid_post(client, sg_key, batch, signed_body=signed)
    elif forgery == "wrong_key":
        response = sendgrid_post(client, ec.generate_private_key(ec.SECP256R1()), batch)
    elif forgery == "stale":  # correctly signed, but older than WEBHOOK_MAX_AGE_SECONDS (600)
        response = sendgrid_post(client, sg_key, batch, timestamp=str(now - 601))
    elif forgery == "future":
        response = sendgrid_post(client, sg_key, batch, timestamp=str(now + 3600))
    elif forgery == "no_signature":
        response = sendgrid_post(client, sg_key, batch, headers={SG_SIG: None})
    elif forgery == "no_timestamp":
        response = sendgrid_post(client, sg_key, batch, headers={SG_TS: None})
    else:
        response = sendgrid_post(client, sg_key, batch, headers={SG_SIG: "bm90IGEgc2lnbmF0dXJl"})
    assert response.status_code == 403
    assert message(factory, mid).status == MessageStatus.SENT
    assert count(factory, Event, Event.provider == "sendgrid") == 0
    assert suppression(factory, "email", EMAIL) is None


def test_sendgrid_recent_timestamp_within_max_age_accepted(
    client, sg_key, factory, clock, registry, policy
):
    mid, ref, _ = sent_message(factory, clock, registry, policy, "email")
    timestamp = str(int(clock.now().timestamp()) - 590)
    assert (
        sendgrid_post(client, sg_key, [sg_event(ref, "delivered")], timestamp=timestamp).status_code
        == 200
    )
    assert message(factory, mid).status == MessageStatus.DELIVERED


def test_sendgrid_bad_json_after_valid_signature_is_400(client, sg_key, factory):
    assert sendgrid_post(client, sg_key, None, body=b"[{not json").status_code == 400
    assert sendgrid_post(client, sg_key, {"event": "delivered"}).status_code == 400  # not a batch
    assert count(factory, Event) == 0


def test_sendgrid_duplicate_event_is_a_no_op(client, sg_key, factory, clock, registry, policy):
    _, ref, _ = sent_message(factory, clock, registry, policy, "email")
    event = sg_event(ref, "delivered")
    assert sendgrid_post(client, sg_key, [event, event]).status_code == 200  # within a batch
    assert sendgrid_post(client, sg_key, [event]).status_code == 200  # and redelivered
    assert count(factory, Event, Event.provider == "sendgrid") == 1


@pytest.mark.parametrize(
    "first,second,expected",
    [
        ("delivered", "processed", MessageStatus.DELIVERED),
        ("delivered", "deferred", MessageStatus.DELIVERED),
        ("bounce", "delivered", MessageStatus.BOUNCED),
        ("dropped", "delivered", MessageStatus.FAILED),
    ],
)
def test_sendgrid_out_of_order_never_moves_backwards(
    first, second, expected, client, sg_key, factory, clock, registry, policy
):
    mid, ref, _ = sent_message(factory, clock, registry, policy, "email")
    extra = {"type": "bounce"} if first == "bounce" else {}
    assert sendgrid_post(client, sg_key, [sg_event(ref, first, **extra)]).status_code == 200
    assert sendgrid_post(client, sg_key, [sg_event(ref, second)]).status_code == 200
    assert message(factory, mid).status == expected


@pytest.mark.parametrize(
    "event,extra,status,reason",
    [
        ("bounce", {"type": "bounce", "status": "5.1.1"}, MessageStatus.BOUNCED, "bounce"),
        ("dropped", {"reason": "Bounced Address"}, MessageStatus.FAILED, "dropped"),
        ("spamreport", {}, MessageStatus.DELIVERED, "complaint"),
    ],
)
def test_bounce_drop_complaint_suppress_the_next_send(
    event, extra, status, reason, client, sg_key, send_ctx, factory, clock, registry, policy
):
    # "quick" has two email steps due at once: one was sent, the next is already queued.
    first, ref, _ = sent_message(
        factory, clock, registry, policy, "email", campaign="quick", email="Ana@Example.com"
    )
    queued = claim(factory, clock, registry, policy).email
    assert len(queued) == 1 and message(factory, queued[0]).status == MessageStatus.QUEUED
    assert sendgrid_post(client, sg_key, [sg_event(ref, event, **extra)]).status_code == 200
    assert message(factory, first).status == status
    assert suppression(factory, "email", "ana@example.com").reason == reason
    report = send_batch(send_ctx, "email", queued)
    assert report.suppressed == 1 and report.sent == 0
    assert message(factory, queued[0]).status == MessageStatus.SUPPRESSED


def test_drop_for_our_own_fault_does_not_suppress_the_address(
    client, sg_key, factory, clock, registry, policy
):
    mid, ref, _ = sent_message(factory, clock, registry, policy, "email")
    dropped = sg_event(ref, "dropped", reason="Invalid SMTPAPI header")
    assert sendgrid_post(client, sg_key, [dropped]).status_code == 200
    assert message(factory, mid).status == MessageStatus.FAILED
    assert suppression(factory, "email", EMAIL) is None


def test_sendgrid_blocked_fails_the_message_without_suppressing(
    client, sg_key, factory, clock, registry, policy
):
    mid, ref, _ = sent_message(factory, clock, registry, policy, "email")
    blocked = sg_event(ref, "bounce", type="blocked", status="4.0.0", reason="IP reputation")
    assert sendgrid_post(client, sg_key, [blocked]).status_code == 200
    msg = message(factory, mid)
    assert msg.status == MessageStatus.FAILED and "4.0.0" in msg.last_error
    assert suppression(factory, "email", EMAIL) is None


@pytest.mark.parametrize("event", ["unsubscribe", "group_unsubscribe"])
def test_sendgrid_unsubscribe_stops_email_only(
    event, client, sg_key, factory, clock, registry, policy
):
    mid, ref, _ = sent_message(factory, clock, registry, policy, "email", email=EMAIL, phone=PHONE)
    assert sendgrid_post(client, sg_key, [sg_event(ref, event, asm_group_id=1)]).status_code == 200
    msg = message(factory, mid)
    assert suppression(factory, "email", EMAIL).reason == "unsubscribed"
    with factory() as s:
        assert not has_consent(s, msg.subscriber_id, "email")
        assert has_consent(s, msg.subscriber_id, "sms")
        assert s.get(Subscriber, msg.subscriber_id).status == "active"


def test_sendgrid_event_for_unknown_message_is_200_and_logged(client, sg_key, factory, caplog):
    caplog.set_level(logging.WARNING, logger="campaigns.tracking.events")
    batch = [
        sg_event("no-such-reference", "bounce", type="bounce"),
        {**sg_event(None, "delivered"), "drip_ref": None},
        sg_event("x", "group_resubscribe"),
    ]  # not mapped: ignored
    assert sendgrid_post(client, sg_key, batch).status_code == 200
    assert count(factory, Event, Event.message_id.is_(None)) == 2
    assert count(factory, Suppression) == 0
    assert caplog.text.count("unknown message") == 2
    assert EMAIL not in caplog.text  # logs mask addresses (invariant 8)


def test_sendgrid_event_cannot_touch_a_text_message(
    client, sg_key, factory, clock, registry, policy
):
    mid, ref, _ = sent_message(factory, clock, registry, policy, "sms")
    assert (
        sendgrid_post(client, sg_key, [sg_event(ref, "bounce", type="bounce")]).status_code == 200
    )
    assert message(factory, mid).status == MessageStatus.SENT
    assert count(factory, Suppression) == 0


# ---------------------------------------------------------------- inbound texts


def inbound(client, body, sender=PHONE, sid=None):
    params = {
        "MessageSid": sid or "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": "+12025550100",
        "Body": body,
        "NumMedia": "0",
    }
    return twilio_post(client, "/webhooks/twilio/inbound", params)


def test_inbound_stop_suppresses_the_next_text(send_ctx, factory, clock, registry, policy):
    client = make_client(factory, clock, twilio_auth_token=TOKEN, sms_opt_out_replies="service")
    sid, _ = add_and_enroll(factory, clock, registry, policy, email=EMAIL, phone=PHONE)
    work = claim(factory, clock, registry, policy)
    response = inbound(client, "  stop ")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.endswith("<Response />")  # the messaging service confirms it
    assert suppression(factory, "sms", PHONE) is not None
    with factory() as s:
        assert not has_consent(s, sid, "sms") and has_consent(s, sid, "email")
    assert send_batch(send_ctx, "sms", work.sms).suppressed == 1
    assert send_batch(send_ctx, "email", work.email).sent == 1  # email was not stopped


def test_inbound_help_replies_with_brand_stop_and_contact(client, factory):
    response = inbound(client, "Help")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    assert "<Response><Message>Lunara: " in response.text
    assert "Reply STOP to opt out" in response.text and "+1 800-555-0199" in response.text
    assert "Emergency? Call 911 now." in response.text  # the texter's phone is American
    assert count(factory, Suppression) == 0
    # AYUDA answers in Spanish, through the same webhook.
    assert "Para hablar con nuestro equipo" in inbound(client, "AYUDA").text


def test_inbound_start_resubscribes(client, send_ctx, factory, clock, registry, policy):
    sid, eid = add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    assert inbound(client, "STOP").status_code == 200
    with factory() as s:
        assert s.get(Subscriber, sid).status == "unsubscribed"
        assert s.get(Enrollment, eid).status == "exited"
    assert inbound(client, "START").status_code == 200
    assert suppression(factory, "sms", PHONE) is None
    with factory() as s:
        assert has_consent(s, sid, "sms")
        assert s.get(Subscriber, sid).status == "active"
        assert s.get(Enrollment, eid).status == "active"
    work = claim(factory, clock, registry, policy)
    assert send_batch(send_ctx, "sms", work.sms).sent == 1


@pytest.mark.parametrize(
    "reason,lifted",
    [
        ("stop", True),
        ("unsubscribed", True),
        ("unsubscribed at carrier (21610)", True),  # as the Twilio provider records it
        ("invalid number (21211)", False),
        ("complaint", False),
    ],
)
def test_inbound_start_lifts_opt_outs_only(reason, lifted, client, factory, clock):
    with transaction(factory) as s:
        suppress(s, clock, "sms", PHONE, reason, "twilio")
    inbound(client, "START")
    assert (suppression(factory, "sms", PHONE) is None) is lifted


def test_inbound_stop_from_an_unknown_number_still_suppresses_it(client, factory):
    assert inbound(client, "Quit.").status_code == 200
    assert suppression(factory, "sms", PHONE).reason == "stop"


def test_inbound_other_text_is_stored_and_a_retry_acts_once(
    client, factory, clock, registry, policy
):
    sid, _ = add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    response = inbound(client, "Is there a video for the stretches?", sid="SMinbound1")
    assert response.status_code == 200 and response.text.endswith("<Response />")
    with factory() as s:
        row = s.scalar(select(Event).where(Event.type == "inbound"))
        assert row.subscriber_id == sid and row.payload["Body"].startswith("Is there a video")
    inbound(client, "STOP", sid="SMstop1")
    inbound(client, "STOP", sid="SMstop1")  # Twilio retried the request
    assert count(factory, Event, Event.type == "inbound") == 2
    assert count(factory, ConsentRecord, ConsentRecord.action == "revoked") == 1


def test_inbound_forged_stop_refused(client, factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    params = {"MessageSid": "SM1", "From": PHONE, "Body": "STOP"}
    response = twilio_post(client, "/webhooks/twilio/inbound", params, token="wrong")
    assert response.status_code == 403
    assert suppression(factory, "sms", PHONE) is None


def test_app_builds_its_own_database_from_settings(tmp_path):
    from campaigns.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'own.sqlite3'}"
    upgrade(url)
    settings = load_settings(
        environment="test",
        secret_key="k" * 40,
        public_base_url=BASE,
        database_url=url,
        twilio_auth_token=TOKEN,
    )
    with TestClient(create_app(settings)) as own:
        assert "Reply STOP to opt out" in inbound(own, "INFO").text
    with own.app.state.factory() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 1


def test_concurrent_webhooks_for_one_message_settle_on_the_furthest_status(
    factory, clock, registry, policy
):
    """Twilio reports delivered and failed for one message at the same moment: whichever commits
    last must not write its status over the other's if that would move backwards."""
    import threading

    from campaigns.tracking.events import record_event
    from workers.providers.twilio_webhook import parse_status

    ids = []
    for n in range(8):
        mid, ref, sid = sent_message(
            factory, clock, registry, policy, "sms", phone=f"+1202555{n:04d}"
        )
        ids.append((mid, ref, sid))

    def deliver(ref, sid, status, barrier):
        barrier.wait()
        with transaction(factory) as s:
            (ev,) = parse_status(status_params(sid, status), ref, clock.now())
            record_event(s, clock, ev)

    for mid, ref, sid in ids:
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=deliver, args=(ref, sid, st, barrier))
            for st in ("delivered", "failed")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert message(factory, mid).status == MessageStatus.FAILED


def test_join_by_text_signs_up_and_enrolls(factory, clock, sg_key):
    from campaigns.models import Enrollment
    from tests.conftest import FIXTURES

    settings_dir = FIXTURES / "definitions"
    client = make_client(
        factory,
        clock,
        twilio_auth_token=TOKEN,
        definitions_dir=settings_dir,
        templates_dir=FIXTURES / "templates",
        signup_campaign="tiny",
    )
    reply = inbound(client, "join")
    assert reply.status_code == 200 and "<Message>" in reply.text and "STOP" in reply.text
    with factory() as s:
        (enrollment,) = s.scalars(select(Enrollment)).all()
        assert enrollment.campaign_key == "tiny"
    assert (
        "<Message>" not in inbound(client, "hello there").text
    )  # any other text: stored, no reply


def test_twilio_status_with_an_unverifiable_ref_falls_back_to_the_sid(
    client, factory, clock, registry, policy
):
    mid, ref, sid = sent_message(factory, clock, registry, policy, "sms")
    path = f"/webhooks/twilio/status?ref={ref}"  # the bare token, not signed by us
    assert twilio_post(client, path, status_params(sid, "delivered")).status_code == 200
    assert message(factory, mid).status == MessageStatus.DELIVERED  # found by its MessageSid


@pytest.mark.parametrize(
    "path", ["/webhooks/sendgrid/events", "/webhooks/twilio/status", "/webhooks/twilio/inbound"]
)
@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_cap_is_413_and_never_read_further(path, declared, client, factory):
    from web.webhooks import SENDGRID_MAX_BODY, TWILIO_MAX_BODY

    limit = SENDGRID_MAX_BODY if "sendgrid" in path else TWILIO_MAX_BODY
    body = b"x" * (limit + 1)
    if declared:
        response = client.post(path, content=body)
    else:  # chunked: no Content-Length to go by, the count stops it
        response = client.post(path, content=iter([body[:limit], body[limit:]]))
        assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert count(factory, Event) == 0


def test_the_domain_acts_on_neutral_flags_whoever_the_provider(factory, clock, registry, policy):
    """record_event names no provider: a third one setting the same flags gets the same
    suppressions as SendGrid's address drops and Twilio's 21610."""
    from campaigns.tracking.events import NormalizedEvent, record_event

    email_id, email_ref, _ = sent_message(factory, clock, registry, policy, "email")
    sms_id, sms_ref, _ = sent_message(factory, clock, registry, policy, "sms")
    kept_id, kept_ref, _ = sent_message(
        factory, clock, registry, policy, "email", email="kept@example.com"
    )

    def ev(provider, channel, ref, kind, **flags):
        return NormalizedEvent(
            provider=provider,
            channel=channel,
            provider_event_id=uuid.uuid4().hex,
            type=kind,
            reference=ref,
            provider_message_id=None,
            occurred_at=clock.now(),
            **flags,
        )

    E = EventType
    with transaction(factory) as s:
        record_event(s, clock, ev("postmark", "email", email_ref, E.DROPPED, address_at_fault=True))
        record_event(s, clock, ev("vonage", "sms", sms_ref, E.FAILED, recipient_opted_out=True))
        record_event(s, clock, ev("postmark", "email", kept_ref, E.DROPPED))  # our own fault
        # the wrong channel for the message: unknown, nothing done
        record_event(s, clock, ev("vonage", "sms", kept_ref, E.FAILED, recipient_opted_out=True))
    assert suppression(factory, "email", EMAIL).reason == "dropped"
    assert suppression(factory, "sms", PHONE).reason == "stop"
    assert suppression(factory, "email", "kept@example.com") is None
    assert [message(factory, i).status for i in (email_id, sms_id, kept_id)] == [
        MessageStatus.FAILED,
        MessageStatus.FAILED,
        MessageStatus.FAILED,
    ]


@pytest.mark.parametrize(
    "body",
    [
        "STOP ALL",
        "\uff33\uff34\uff2f\uff30",  # full-width STOP
        "Opt-Out",
        "stop texting",
        "please stop texting me",
        "Unsubscribe me",
        "no more texts",
        "Don't text me again",
        "No me envien mas mensajes",
        "Quiero darme de baja",
        "Don\u2019t text me",  # the curly apostrophe phones type
        "Stop please",
        "STOP STOP",
        "Stop sending me these",
        "No más mensajes",
        "remove me from your list",
    ],
)
def test_every_reasonable_way_of_saying_stop_is_honoured(
    body, client, factory, clock, registry, policy
):
    sid, _ = add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    response = inbound(client, body)
    assert response.status_code == 200
    assert suppression(factory, "sms", PHONE) is not None
    with factory() as s:
        assert not has_consent(s, sid, "sms")
    assert "You are unsubscribed" in response.text  # confirmed by us, in English


@pytest.mark.parametrize(
    "body",
    [
        "I can't stop the pain in my hip",
        "Does the pain stop after exercise?",
        "thanks!",
        "Can my doctor take me off ibuprofen?",
        "Can the surgeon remove me from the waitlist?",
        "No more pain, your texts really helped!",
        "Should I stop the exercise your text described?",
    ],
)
def test_a_sentence_that_only_mentions_stopping_is_not_an_opt_out(
    body, client, factory, clock, registry, policy
):
    sid, _ = add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    assert inbound(client, body).text.endswith("<Response />")
    assert suppression(factory, "sms", PHONE) is None
    with factory() as s:
        assert has_consent(s, sid, "sms")


def test_stop_and_start_are_confirmed_in_the_person_s_language(
    client, factory, clock, registry, policy
):
    add_and_enroll(factory, clock, registry, policy, phone=PHONE, locale="es")
    stopped = inbound(client, "PARAR").text
    assert "Lunara: Cancelaste tu suscripcion" in stopped and "START" in stopped
    started = inbound(client, "START").text
    assert "Lunara: Volveras a recibir nuestros mensajes" in started
    for reply in (stopped, started):
        text = reply.split("<Message>")[1].split("</Message>")[0]
        assert is_gsm7(text) and segments(text)[1] == 1


def test_yes_from_a_phone_given_on_the_form_grants_sms_consent_with_its_sid(factory, clock):
    from tests.conftest import FIXTURES

    client = make_client(
        factory,
        clock,
        twilio_auth_token=TOKEN,
        definitions_dir=FIXTURES / "definitions",
        templates_dir=FIXTURES / "templates",
        signup_campaign="tiny",
    )
    page = client.post(
        "/signup",
        data={
            "form_locale": "es",
            "phone": PHONE,
            "locale": "es",
            "channel_sms": "1",
            "timezone": "America/New_York",
        },
        headers={"Origin": BASE},  # posted from our own sign-up page
    )
    assert page.status_code == 200 and "responde SI" in page.text
    assert "<Message>" not in inbound(client, "yes", sender="+12025550199").text  # not asked
    reply = inbound(client, "Sí", sid="SMyes1")
    assert "<Message>" in reply.text and "STOP" in reply.text and "Te inscribiste" in reply.text
    with factory() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.phone == PHONE))
        grant = s.scalar(select(ConsentRecord).where(ConsentRecord.subscriber_id == sub.id))
        (enrollment,) = s.scalars(select(Enrollment)).all()
    assert (grant.channel, grant.source, grant.evidence["message_sid"]) == (
        "sms",
        "sms_double_opt_in",
        "SMyes1",
    )
    assert enrollment.subscriber_id == sub.id and sub.status == "active"
    inbound(client, "YES", sid="SMyes2")  # a second yes changes nothing
    assert (
        count(factory, ConsentRecord) == 1 and count(factory, Event, Event.type == "inbound") == 3
    )
