"""Drive the REAL twilio / sendgrid SDKs against the loopback fakes.

Why: these tests pin down how each SDK surfaces provider behaviour (success,
4xx/5xx, rate limits, timeouts, dropped connections), which is what the
delivery code has to classify as retryable or not.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request

import pytest
import requests
from python_http_client import exceptions as sg_exc
from sendgrid.helpers.mail import Mail, Personalization, To
from twilio.base.exceptions import TwilioRestException

from tests.fakes import (
    FakeSendGrid,
    FakeServer,
    FakeTwilio,
    Response,
    sendgrid_error,
    twilio_error,
)

SID = "AC" + "1" * 32
TOKEN = "secret-token"
TO, FROM = "+15551230001", "+15557650002"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Keep loopback traffic off any proxy configured in the environment."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


@pytest.fixture
def tw():
    with FakeTwilio(account_sid=SID, auth_token=TOKEN) as fake:
        yield fake


@pytest.fixture
def sg_fake():
    with FakeSendGrid(api_key="SG.valid") as fake:
        yield fake


def _send_sms(client, **kw):
    kw = {"to": TO, "from_": FROM, "body": "Hello", **kw}
    return client.messages.create(**kw)


def _mail(*recipients: str) -> Mail:
    mail = Mail(from_email="clinic@example.org", subject="Your care plan", html_content="<p>Hi</p>")
    for addr in recipients:
        p = Personalization()
        p.add_to(To(addr))
        mail.add_personalization(p)
    return mail


# --------------------------------------------------------------- base server


def _post(url: str, body: bytes, ctype: str, timeout: float = 2.0):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def test_server_records_and_follows_script():
    with FakeServer() as fake:
        fake.enqueue(Response(202, {"a": 1}), Response(201, "made"))
        form = "application/x-www-form-urlencoded"
        assert _post(fake.url + "/x?q=1&q=2&z=", b"k=v&m=1&m=2", form) == (202, b'{"a": 1}')
        assert _post(fake.url + "/y", b'{"j": [1]}', "application/json") == (201, b"made")
        assert _post(fake.url + "/z", b"", "text/plain")[0] == 200  # default success
        fake.always(Response(503))
        for _ in range(2):
            with pytest.raises(urllib.error.HTTPError) as ei:
                _post(fake.url + "/w", b"", "text/plain")
            assert ei.value.code == 503
            ei.value.close()
        first, second = fake.wait_for(5)[:2]
        fake.reset()
        assert _post(fake.url + "/z", b"", "text/plain")[0] == 200
    assert first.method == "POST" and first.path == "/x"
    assert first.query == {"q": ["1", "2"], "z": ""}
    assert first.form == {"k": "v", "m": ["1", "2"]}
    assert first.headers["content-type"] == first.headers["Content-Type"]
    assert first.body == b"k=v&m=1&m=2" and first.response.status == 202
    assert second.json == {"j": [1]} and second.received >= first.received
    assert abs(second.wall_time - time.time()) < 5


def test_delay_does_not_block_other_requests_and_stop_is_prompt():
    fake = FakeServer().start()
    fake.enqueue(Response(200, "slow", delay=5))
    outcome: list[object] = []

    def call_slow():
        try:
            outcome.append(_post(fake.url, b"", "text/plain", timeout=5))
        except Exception as exc:  # asserted below
            outcome.append(exc)

    slow = threading.Thread(target=call_slow)
    slow.start()
    fake.wait_for(1)
    t0 = time.monotonic()
    assert _post(fake.url, b"", "text/plain") == (200, b"{}")
    assert time.monotonic() - t0 < 1
    t0 = time.monotonic()
    fake.stop()  # wakes the sleeping handler, which then drops the connection
    slow.join(2)
    assert not slow.is_alive() and time.monotonic() - t0 < 2
    assert isinstance(outcome[0], ConnectionError)  # dropped unanswered on stop


# --------------------------------------------------------------------- twilio


def test_twilio_create_is_recorded_with_form_and_auth(tw):
    client = tw.client()
    msg = _send_sms(client, status_callback="https://app.example.org/sms/status")
    other = _send_sms(client)

    assert re.fullmatch(r"SM[0-9a-f]{32}", msg.sid) and msg.sid != other.sid
    assert (msg.status, msg.to, msg.from_, msg.body) == ("queued", TO, FROM, "Hello")
    assert msg.account_sid == SID and msg.num_segments == "1"
    assert msg.uri == f"/2010-04-01/Accounts/{SID}/Messages/{msg.sid}.json"
    assert tw.sent_messages()[0] == {
        "To": TO,
        "From": FROM,
        "Body": "Hello",
        "StatusCallback": "https://app.example.org/sms/status",
    }
    req = tw.requests[0]
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert req.basic_auth == (SID, TOKEN)
    # fetch round-trips the stored resource; update_message simulates delivery
    tw.update_message(msg.sid, status="delivered")
    assert client.messages(msg.sid).fetch().status == "delivered"


def test_twilio_messaging_service_and_segments(tw):
    msg = tw.client().messages.create(
        to=TO, messaging_service_sid="MG" + "2" * 32, body="ł" * 71
    )  # UCS-2: 70/67 per segment
    assert (msg.status, msg.from_, msg.num_segments) == ("accepted", None, "2")
    assert _send_sms(tw.client(), body="é" * 160).num_segments == "1"  # GSM-7


@pytest.mark.parametrize("status,code", [(400, 21211), (429, 20429), (500, 20500)])
def test_twilio_programmed_errors_surface_as_rest_exception(tw, status, code):
    tw.enqueue(twilio_error(status, code, "scripted failure"))
    with pytest.raises(TwilioRestException) as ei:
        _send_sms(tw.client())
    assert (ei.value.status, ei.value.code) == (status, code)
    assert "scripted failure" in ei.value.msg and ei.value.method == "POST"
    assert tw.sent_messages() == []


def test_twilio_non_json_5xx_uses_status_as_code(tw):
    tw.enqueue(Response(503, "<html>upstream unavailable</html>"))
    with pytest.raises(TwilioRestException) as ei:
        _send_sms(tw.client())
    assert (ei.value.status, ei.value.code) == (503, 503)


def test_twilio_validation_and_404(tw):
    client = tw.client()
    with pytest.raises(TwilioRestException) as ei:
        _send_sms(client, to="555-0100")
    assert (ei.value.status, ei.value.code) == (400, 21211)
    with pytest.raises(TwilioRestException) as ei:
        client.messages("SM" + "0" * 32).fetch()
    assert (ei.value.status, ei.value.code) == (404, 20404)


def test_twilio_bad_or_missing_auth_is_401_20003(tw, monkeypatch):
    with pytest.raises(TwilioRestException) as ei:
        _send_sms(tw.client(auth_token="wrong"))
    assert (ei.value.status, ei.value.code) == (401, 20003)

    raw = urllib.request.Request(
        tw.url + f"/2010-04-01/Accounts/{SID}/Messages.json",
        data=b"To=%2B15551230001",
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(raw, timeout=2)
    with ei.value:
        error_body = json.loads(ei.value.read())
    assert error_body == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


def test_twilio_slow_provider_times_out_and_does_not_block(tw):
    client = tw.client(timeout=0.2)
    tw.enqueue(Response(delay=2.0))  # realistic 201, but too late
    with pytest.raises(requests.exceptions.ReadTimeout):
        _send_sms(client)
    t0 = time.monotonic()
    assert _send_sms(client).status == "queued"  # served while the first still sleeps
    assert time.monotonic() - t0 < 0.5
    # the timed-out request reached the provider: retrying blindly may double-send
    assert len(tw.wait_for(2)) == 2


def test_twilio_dropped_connection_is_connection_error(tw):
    tw.enqueue(Response(drop_connection=True))
    with pytest.raises(requests.exceptions.ConnectionError):
        _send_sms(tw.client())


# ------------------------------------------------------------------- sendgrid


def test_sendgrid_send_with_two_personalizations(sg_fake):
    resp = sg_fake.client().send(_mail("a@example.org", "b@example.org"))
    assert resp.status_code == 202 and resp.body == b""
    assert resp.headers["X-Message-Id"]
    assert sorted(p["to"][0]["email"] for p in sg_fake.personalizations()) == [
        "a@example.org",
        "b@example.org",
    ]
    req = sg_fake.requests[0]
    assert (req.method, req.path, req.bearer_token) == ("POST", "/v3/mail/send", "SG.valid")
    assert req.json["from"] == {"email": "clinic@example.org"}


def test_sendgrid_400_is_bad_requests_error_with_body(sg_fake):
    sg_fake.enqueue(sendgrid_error(400, "Invalid email", field="personalizations.0.to"))
    with pytest.raises(sg_exc.BadRequestsError) as ei:
        sg_fake.client().send(_mail("a@example.org"))
    assert ei.value.status_code == 400
    assert ei.value.to_dict["errors"][0] == {
        "field": "personalizations.0.to",
        "message": "Invalid email",
        "help": None,
    }
    assert sg_fake.personalizations() == []


def test_sendgrid_invalid_payload_is_rejected_by_fake(sg_fake):
    with pytest.raises(sg_exc.BadRequestsError) as ei:
        sg_fake.client().send(_mail())  # no personalizations
    assert ei.value.to_dict["errors"][0]["field"] == "personalizations"


def test_sendgrid_429_exposes_rate_limit_reset(sg_fake):
    sg_fake.enqueue(sendgrid_error(429, "too many requests"))
    with pytest.raises(sg_exc.TooManyRequestsError) as ei:
        sg_fake.client().send(_mail("a@example.org"))
    headers = ei.value.headers  # http.client.HTTPMessage, case-insensitive
    assert headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(headers["X-RateLimit-Reset"]) - time.time() <= 61


def test_sendgrid_500(sg_fake):
    sg_fake.enqueue(sendgrid_error(500, "internal error"))
    with pytest.raises(sg_exc.InternalServerError) as ei:
        sg_fake.client().send(_mail("a@example.org"))
    assert ei.value.status_code == 500


@pytest.mark.parametrize("key", ["SG.revoked", None])
def test_sendgrid_401_without_valid_key(sg_fake, monkeypatch, key):
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(api_key=key, host=sg_fake.url)  # None -> "Bearer None"
    with pytest.raises(sg_exc.UnauthorizedError) as ei:
        client.send(_mail("a@example.org"))
    assert ei.value.to_dict == {
        "errors": [
            {
                "field": None,
                "help": None,
                "message": "The provided authorization grant is invalid, expired, or revoked",
            }
        ]
    }


def test_sendgrid_dropped_connection_and_timeout(sg_fake):
    client = sg_fake.client(timeout=0.2)
    sg_fake.enqueue(Response(drop_connection=True), Response(delay=2.0))
    with pytest.raises(ConnectionError):  # http.client.RemoteDisconnected
        client.send(_mail("a@example.org"))
    with pytest.raises(TimeoutError):  # socket.timeout, not wrapped by the SDK
        client.send(_mail("a@example.org"))
