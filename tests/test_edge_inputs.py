"""Bad input at the public edge gets a clear 4xx, never a 5xx, and loses nothing (issue 8,
item 5; invariant 12). Each case here was a 500 before: on SQLite and PostgreSQL (which
refuses NUL in text and out-of-range integers where SQLite stores them), through the
real app, with real signatures."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select

from campaigns.models import ChannelPause, ContactRequest, Event, Subscriber
from tests.edge import (
    ADMIN,
    BASE,
    SG_SIG,
    SG_TS,
    _public_key_b64,
    edge_client,
    sendgrid_post,
    sent_email,
    twilio_post,
)
from web.body_limits import FORM_MAX_BODY
from workers.providers import sendgrid_webhook
from workers.providers.webhook_base import Rejected


@pytest.fixture
def client(factory, clock, tmp_path):
    return edge_client(factory, clock, tmp_path)


@pytest.fixture
def sent(factory, clock, registry, policy):
    return sent_email(factory, clock, registry, policy)


def count(factory, column, *where):
    with factory() as s:
        return s.scalar(select(func.count(column)).where(*where))


# ---------------------------------------------------------------- signed tokens


TOKEN_ROUTES = [("GET", s) for s in ("m", "c", "p", "u", "o", "confirm")] + [
    ("POST", s) for s in ("c", "p", "u", "confirm")
]


@pytest.mark.parametrize(("method", "short"), TOKEN_ROUTES)
def test_a_token_with_a_non_ascii_signature_is_not_found(client, sent, short, method):
    token = sent.path("read_online").rsplit("/", 1)[1]
    forged = token[:-1] + "é"  # one character of the signature made non-ASCII
    response = client.request(method, f"/{short}/{forged}", data={"scope": "all"})
    assert response.status_code == (200 if short == "o" else 404)  # the pixel never errs


def test_a_twilio_ref_with_a_non_ascii_signature_falls_back_to_the_sid(client, factory):
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered"}
    response = twilio_post(client, "/webhooks/twilio/status", params, "?ref=abc.%C3%A9")
    assert response.status_code == 200
    assert count(factory, Event.id) == 1  # stored, matched (or not) by MessageSid


# ---------------------------------------------------------------- SendGrid


@pytest.mark.parametrize("timestamp", ["¹²³", "١٧٧٢٤٦٣٦٠٠", "9" * 5000])
def test_a_sendgrid_timestamp_that_is_not_a_plain_unix_time_is_refused(timestamp):
    with pytest.raises(Rejected, match="bad timestamp"):
        sendgrid_webhook.verify(
            {SG_SIG: "AAAA", SG_TS: timestamp},
            b"[]",
            public_key=_public_key_b64(),
            now=datetime(2026, 3, 2, 15, tzinfo=UTC),
            max_age_seconds=600,
        )


def test_a_sendgrid_timestamp_of_5000_digits_is_a_403(client, factory):
    headers = {SG_SIG: "AAAA", SG_TS: "9" * 5000}
    response = client.post("/webhooks/sendgrid/events", content=b"[]", headers=headers)
    assert response.status_code == 403


def test_a_signed_sendgrid_body_nested_too_deep_is_a_400(client, factory):
    body = b"[" * 100_000 + b"]" * 100_000
    assert sendgrid_post(client, body).status_code == 400
    assert count(factory, Event.id) == 0


def _sg_item(event_id: str, **extra) -> dict:
    return {"event": "delivered", "sg_event_id": event_id, "timestamp": 1772463600, **extra}


@pytest.mark.parametrize(
    "bad",
    [
        {"sg_event_id": "nul\x00id"},
        {"sg_message_id": "m\x00"},
        {"drip_ref": "r\x00"},
        {"event": "bounce", "status": "5.0.0\x00"},
        {"sg_event_id": "x" * 200},
        {"sg_event_id": "\ud800"},  # a lone surrogate: no UTF-8 for it
        {
            "nested": [
                [
                    [
                        [
                            [
                                [
                                    [
                                        [
                                            [
                                                [
                                                    [
                                                        [
                                                            [
                                                                [
                                                                    [
                                                                        [
                                                                            [
                                                                                [
                                                                                    [
                                                                                        [
                                                                                            [
                                                                                                [
                                                                                                    [
                                                                                                        [
                                                                                                            [
                                                                                                                [
                                                                                                                    [
                                                                                                                        [
                                                                                                                            [
                                                                                                                                [
                                                                                                                                    [
                                                                                                                                        [
                                                                                                                                            [
                                                                                                                                                [
                                                                                                                                                    [
                                                                                                                                                        [
                                                                                                                                                            [
                                                                                                                                                                [
                                                                                                                                                                    [
                                                                                                                                                                        [
                                                                                                                                                                            [
                                                                                                                                                                                [
                                                                                                                                                                                    [
                                                                                                                                                                                        [
                                                                                                                                                                                            [
                                                                                                                                                                                                [
                                                                                                                                                                                                    [
                                                                                                                                                                                                        [
                                                                                                                                                                                                            [
                                                                                                                                                                                                                [
                                                                                                                                                                                                                    [
                                                                                                                                                                                                                        [
                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                        []
                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                ]
                                                                                                                                                                                                            ]
                                                                                                                                                                                                        ]
                                                                                                                                                                                                    ]
                                                                                                                                                                                                ]
                                                                                                                                                                                            ]
                                                                                                                                                                                        ]
                                                                                                                                                                                    ]
                                                                                                                                                                                ]
                                                                                                                                                                            ]
                                                                                                                                                                        ]
                                                                                                                                                                    ]
                                                                                                                                                                ]
                                                                                                                                                            ]
                                                                                                                                                        ]
                                                                                                                                                    ]
                                                                                                                                                ]
                                                                                                                                            ]
                                                                                                                                        ]
                                                                                                                                    ]
                                                                                                                                ]
                                                                                                                            ]
                                                                                                                        ]
                                                                                                                    ]
                                                                                                                ]
                                                                                                            ]
                                                                                                        ]
                                                                                                    ]
                                                                                                ]
                                                                                            ]
                                                                                        ]
                                                                                    ]
                                                                                ]
                                                                            ]
                                                                        ]
                                                                    ]
                                                                ]
                                                            ]
                                                        ]
                                                    ]
                                                ]
                                            ]
                                        ]
                                    ]
                                ]
                            ]
                        ]
                    ]
                ]
            ]
        },
    ],
    ids=["nul-event-id", "nul-message-id", "nul-ref", "nul-status", "long-id", "surrogate", "deep"],
)
def test_a_malformed_sendgrid_item_is_skipped_and_the_rest_of_the_batch_recorded(
    client, factory, bad
):
    batch = [_sg_item("good-1"), _sg_item("bad", **bad), _sg_item("good-2")]
    response = sendgrid_post(client, json.dumps(batch).encode())
    assert response.status_code == 200  # no retry of the whole batch
    with factory() as s:
        stored = s.scalars(select(Event.provider_event_id).order_by(Event.id)).all()
    assert stored == ["good-1", "good-2"]


# ---------------------------------------------------------------- Twilio


@pytest.mark.parametrize("path", ["/webhooks/twilio/status", "/webhooks/twilio/inbound"])
@pytest.mark.parametrize("sid", ["S" * 200, "SM\x001", "SMé1"], ids=["long", "nul", "non-ascii"])
def test_a_signed_twilio_request_with_a_malformed_sid_is_a_400(client, factory, path, sid):
    params = {"MessageSid": sid, "MessageStatus": "delivered", "From": "+12025550143", "Body": "hi"}
    response = twilio_post(client, path, params)
    assert response.status_code == 400
    assert count(factory, Event.id) == 0


def test_a_signed_twilio_status_with_nul_in_its_error_code_is_a_400(client, factory):
    params = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "failed", "ErrorCode": "300\x00"}
    assert twilio_post(client, "/webhooks/twilio/status", params).status_code == 400
    assert count(factory, Event.id) == 0


# ---------------------------------------------------------------- forms


SIGNUP = {
    "first_name": "Ana",
    "email": "ana@example.com",
    "channel_email": "1",
    "timezone": "America/New_York",
    "locale": "en",
    "form_locale": "en",
}


@pytest.mark.parametrize("field", ["first_name", "email", "phone", "timezone", "locale"])
def test_a_nul_byte_in_a_signup_field_is_a_400_naming_the_field(client, factory, field):
    form = {**SIGNUP, "phone": "+12025550143", "channel_sms": "1"}
    form[field] = form[field][:2] + "\x00" + form[field][2:]
    response = client.post("/signup", data=form, headers={"Origin": BASE})
    assert response.status_code == 400
    assert 'aria-invalid="true"' in response.text or field == "locale"
    assert count(factory, Subscriber.id) == 0


def test_a_control_character_in_a_call_request_note_is_a_400(client, factory, sent):
    for note in ("call me\x00", "call\x1bme"):
        response = client.post(
            sent.path("contact"), data={"preferred_channel": "email", "note": note}
        )
        assert response.status_code == 400
    assert count(factory, ContactRequest.id) == 0
    ok = client.post(
        sent.path("contact"), data={"preferred_channel": "email", "note": "Tuesday\r\nafter 5"}
    )
    assert ok.status_code == 200  # line breaks are text, not control characters


# ---------------------------------------------------------------- admin


def test_admin_until_the_last_representable_day_shows_the_funnel(client):
    response = client.get("/admin/campaigns/tiny?since=0001-01-01&until=9999-12-31", headers=ADMIN)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        f"/admin/outbox/{2**63}/settle",
        f"/admin/outbox/{2**31}/settle",
        f"/admin/contact-requests/{2**63}",
        f"/admin/contact-requests/{2**31}",
        "/admin/outbox/0/settle",
        "/admin/contact-requests/-1",
        f"/admin/contact-requests/{'9' * 5000}",
    ],
)
def test_an_admin_id_outside_the_id_column_is_a_4xx(client, path):
    response = client.post(path, data={"outcome": "sent", "status": "closed"}, headers=ADMIN)
    assert 400 <= response.status_code < 500


def test_a_nul_byte_in_a_pause_reason_is_a_400_and_nothing_paused(client, factory):
    response = client.post(
        "/admin/channels/sms/pause", data={"reason": "carrier\x00"}, headers=ADMIN
    )
    assert response.status_code == 400
    assert count(factory, ChannelPause.channel) == 0


# ---------------------------------------------------------------- body caps


FORM_ROUTES = [
    "/signup",
    "/c/abc.def",
    "/p/abc.def",
    "/u/abc.def",
    "/a/abc.def",
    "/admin/channels/sms/pause",
    "/admin/contact-requests/1",
    "/admin/outbox/1/settle",
]


@pytest.mark.parametrize("path", FORM_ROUTES)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_form_body_over_the_cap_is_413(client, factory, path, declared):
    body = b"note=" + b"x" * FORM_MAX_BODY
    headers = {**ADMIN, "Content-Type": "application/x-www-form-urlencoded"}
    if declared:
        response = client.post(path, content=body, headers=headers)
    else:  # no Content-Length to go by: the count as the bytes arrive stops it
        response = client.post(path, content=iter([body[:1000], body[1000:]]), headers=headers)
        assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert count(factory, Subscriber.id) == 0


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_unsigned_huge_sendgrid_body_is_413_without_being_read(client, declared):
    """300 MB offered in 1 MiB chunks: refused after at most the cap's worth is read.
    httpx's ASGI transport hands the app one chunk per receive(), as a server does (the
    test client reads the whole body first)."""
    pulled = []

    async def body():
        for _ in range(300):
            pulled.append(1)
            yield b"x" * (1024 * 1024)

    async def post():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            headers = {"Content-Length": str(300 * 1024 * 1024)} if declared else {}
            return await c.post("/webhooks/sendgrid/events", content=body(), headers=headers)

    response = asyncio.run(post())
    assert response.status_code == 413
    assert len(pulled) <= (0 if declared else 3)


def test_a_form_within_the_cap_is_read(client, sent):
    note = "x" * 1500
    response = client.post(sent.path("contact"), data={"preferred_channel": "email", "note": note})
    assert response.status_code == 200
