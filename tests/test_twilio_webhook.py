"""Twilio's webhook module on its own: the form, the signature and the parsing with plain
bytes and dicts, no HTTP and no database. Signatures are made with the SDK's own
RequestValidator, as Twilio makes them."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from campaigns.states import EventType
from workers.providers import twilio_webhook as tw
from workers.providers.webhook_base import NotConfigured, Rejected

TOKEN = "twilio-auth-token-for-tests"
URL = "https://care.example/webhooks/twilio/status?ref=abc"
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SID = "SM" + "1" * 32


def status_form(status="delivered", **extra) -> dict[str, str]:
    return {
        "MessageSid": SID,
        "SmsSid": SID,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC" + "0" * 32,
        "From": "+12025550100",
        "To": "+12025550143",
        **extra,
    }


def sign(params, url=URL, token=TOKEN) -> dict[str, str]:
    return {tw.SIGNATURE_HEADER: RequestValidator(token).compute_signature(url, params)}


# ---------------------------------------------------------------- the form


def test_the_form_reads_as_frameworks_do():
    form = tw.parse_form(b"Body=Stop+now%21&From=%2B12025550143&Empty=&NumMedia=0")
    assert dict(form) == {"Body": "Stop now!", "From": "+12025550143", "Empty": "", "NumMedia": "0"}


def test_a_repeated_field_reads_as_its_last_value_and_is_signed_in_full():
    body = urlencode(
        [("MediaUrl", "https://a.example/1"), ("MediaUrl", "https://a.example/2"), ("Body", "hi")]
    ).encode()
    form = tw.parse_form(body)
    assert form["MediaUrl"] == "https://a.example/2"
    assert form.getlist("MediaUrl") == ["https://a.example/1", "https://a.example/2"]
    tw.verify(sign(form), URL, form, auth_token=TOKEN)
    only_last = {"MediaUrl": "https://a.example/2", "Body": "hi"}
    with pytest.raises(Rejected):  # a signature over fewer values does not cover this form
        tw.verify(sign(only_last), URL, form, auth_token=TOKEN)


def test_utf8_text_survives_the_form():
    form = tw.parse_form(urlencode({"Body": "¿Ayuda? Sí"}).encode())
    assert form["Body"] == "¿Ayuda? Sí"


# ---------------------------------------------------------------- verify


def test_a_signed_form_passes_from_a_form_or_a_plain_dict():
    params = status_form()
    tw.verify(sign(params), URL, params, auth_token=TOKEN)
    form = tw.parse_form(urlencode(params).encode())
    tw.verify(
        {"x-twilio-signature": sign(params)[tw.SIGNATURE_HEADER]}, URL, form, auth_token=TOKEN
    )


@pytest.mark.parametrize("forgery", ["token", "param", "url", "host", "garbage"])
def test_a_forged_signature_is_refused(forgery):
    params = status_form()
    headers, url, sent = sign(params), URL, params
    if forgery == "token":
        headers = sign(params, token="not-the-auth-token")
    elif forgery == "param":  # signed "delivered", says "failed" with 21610
        sent = status_form("failed", ErrorCode="21610")
    elif forgery == "url":  # signed for one message's ref, aimed at another
        url = URL.replace("ref=abc", "ref=xyz")
    elif forgery == "host":  # signed for the URL the proxy forwarded, not the public one
        headers = sign(params, url="http://testserver/webhooks/twilio/status?ref=abc")
    else:
        headers = {tw.SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"}
    with pytest.raises(Rejected, match="bad signature"):
        tw.verify(headers, url, sent, auth_token=TOKEN)


def test_a_missing_signature_is_refused():
    with pytest.raises(Rejected, match="missing signature"):
        tw.verify({}, URL, status_form(), auth_token=TOKEN)


@pytest.mark.parametrize("token", [None, ""])
def test_no_auth_token_is_not_configured_never_accept_unsigned(token):
    params = status_form()
    with pytest.raises(NotConfigured, match="TWILIO_AUTH_TOKEN"):
        tw.verify(sign(params), URL, params, auth_token=token)


# ---------------------------------------------------------------- status callbacks


def test_a_status_callback_becomes_one_neutral_event():
    (ev,) = tw.parse_status(status_form("delivered"), "ref-1", NOW)
    assert (ev.provider, ev.channel, ev.type) == ("twilio", "sms", EventType.DELIVERED)
    assert ev.provider_event_id == f"{SID}:delivered"  # one report per status per message
    assert (ev.reference, ev.provider_message_id, ev.occurred_at) == ("ref-1", SID, NOW)
    assert ev.raw == status_form("delivered")
    assert not ev.recipient_opted_out and not ev.address_at_fault


@pytest.mark.parametrize(
    "status,kind",
    [
        ("queued", EventType.QUEUED),
        ("sending", EventType.QUEUED),
        ("sent", EventType.SENT),
        ("undelivered", EventType.FAILED),
        ("canceled", EventType.FAILED),
        ("read", EventType.OPENED),
        ("DELIVERED", EventType.DELIVERED),
    ],
)
def test_statuses_map_onto_event_types(status, kind):
    (ev,) = tw.parse_status(status_form(status), None, NOW)
    assert ev.type == kind and ev.reference is None


def test_old_sms_field_names_still_read():
    (ev,) = tw.parse_status({"SmsSid": SID, "SmsStatus": "sent"}, "", NOW)
    assert (ev.type, ev.provider_message_id, ev.reference) == (EventType.SENT, SID, None)


@pytest.mark.parametrize(
    "form", [status_form("receiving"), status_form("made_up"), {"MessageStatus": "delivered"}, {}]
)
def test_an_unknown_status_or_no_sid_is_ignored(form):
    assert tw.parse_status(form, "ref-1", NOW) == []


def test_21610_means_the_recipient_opted_out():
    (ev,) = tw.parse_status(status_form("failed", ErrorCode="21610"), None, NOW)
    assert ev.type == EventType.FAILED and ev.error_code == "21610"
    assert ev.recipient_opted_out


@pytest.mark.parametrize("code", ["30003", "30007", "21211", ""])
def test_other_error_codes_are_not_an_opt_out(code):
    (ev,) = tw.parse_status(status_form("undelivered", ErrorCode=code), None, NOW)
    assert not ev.recipient_opted_out
    assert ev.error_code == (code or None)


# ---------------------------------------------------------------- inbound texts


def test_an_inbound_text_is_parsed_for_the_domain():
    form = {"MessageSid": "SMin1", "From": "+12025550143", "To": "+12025550100", "Body": "STOP"}
    text = tw.parse_inbound(form)
    assert (text.provider, text.from_number, text.body, text.message_id) == (
        "twilio",
        "+12025550143",
        "STOP",
        "SMin1",
    )
    assert text.raw == form


def test_an_inbound_text_with_missing_fields_still_parses():
    text = tw.parse_inbound({"SmsSid": "SMold"})
    assert (text.from_number, text.body, text.message_id) == ("", "", "SMold")
    assert tw.parse_inbound({}).message_id is None


def test_the_webhook_modules_load_without_a_web_framework():
    """Plain bytes and mappings in: importing them (and all they import) pulls in neither
    FastAPI nor Starlette. A fresh interpreter, since this one has the web app loaded."""
    import subprocess
    import sys

    code = (
        "import sys; import workers.providers.sendgrid_webhook, workers.providers.twilio_webhook; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
