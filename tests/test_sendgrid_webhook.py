"""SendGrid's webhook module on its own: verify and parse with plain bytes and dicts, no
HTTP and no database. The signatures are real ECDSA P-256 ones made with a key pair
generated here, as SendGrid makes them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from campaigns.states import EventType
from workers.providers import sendgrid_webhook as sg
from workers.providers.webhook_base import BadPayload, NotConfigured, Rejected

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
MAX_AGE = 600


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())


def b64_public(private_key) -> str:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def signed(private_key, body: bytes, timestamp: int | str) -> dict[str, str]:
    timestamp = str(timestamp)
    signature = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        sg.SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        sg.TIMESTAMP_HEADER: timestamp,
    }


def verify(headers, body, public_key):
    sg.verify(headers, body, public_key=public_key, now=NOW, max_age_seconds=MAX_AGE)


BODY = json.dumps([{"event": "delivered", "sg_event_id": "e1", "drip_ref": "r1"}]).encode()
T = int(NOW.timestamp())


# ---------------------------------------------------------------- verify


def test_a_fresh_signature_by_the_configured_key_passes(key):
    verify(signed(key, BODY, T), BODY, b64_public(key))


def test_header_names_are_matched_in_any_case(key):
    headers = {name.lower(): value for name, value in signed(key, BODY, T).items()}
    verify(headers, BODY, b64_public(key))


def test_a_pem_key_works_too(key):
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verify(signed(key, BODY, T), BODY, pem)


@pytest.mark.parametrize(
    "forgery", ["other_key", "tampered_body", "garbage", "not_base64", "timestamp_changed"]
)
def test_a_forged_signature_is_refused(forgery, key):
    headers = signed(key, BODY, T)
    body = BODY
    if forgery == "other_key":
        headers = signed(ec.generate_private_key(ec.SECP256R1()), BODY, T)
    elif forgery == "tampered_body":
        body = BODY.replace(b"delivered", b"bounce")
    elif forgery == "garbage":
        headers[sg.SIGNATURE_HEADER] = base64.b64encode(b"not a signature").decode()
    elif forgery == "not_base64":
        headers[sg.SIGNATURE_HEADER] = "%%%"
    else:  # the signature covers the timestamp: a replay cannot freshen it
        headers[sg.TIMESTAMP_HEADER] = str(T + 1)
    with pytest.raises(Rejected, match="bad signature"):
        verify(headers, body, b64_public(key))


@pytest.mark.parametrize("offset", [-(MAX_AGE + 1), -86_400, sg.FUTURE_SKEW_SECONDS + 1, 3600])
def test_a_stale_or_future_timestamp_is_refused_even_when_correctly_signed(offset, key):
    with pytest.raises(Rejected, match="stale timestamp"):
        verify(signed(key, BODY, T + offset), BODY, b64_public(key))


@pytest.mark.parametrize("offset", [-MAX_AGE, -1, 0, sg.FUTURE_SKEW_SECONDS])
def test_timestamps_within_the_window_pass(offset, key):
    verify(signed(key, BODY, T + offset), BODY, b64_public(key))


@pytest.mark.parametrize("missing", [sg.SIGNATURE_HEADER, sg.TIMESTAMP_HEADER])
def test_a_missing_header_is_refused(missing, key):
    headers = signed(key, BODY, T)
    del headers[missing]
    with pytest.raises(Rejected, match="missing signature"):
        verify(headers, BODY, b64_public(key))


def test_a_timestamp_that_is_not_a_number_is_refused(key):
    headers = signed(key, BODY, "1772463600.5")
    with pytest.raises(Rejected, match="bad timestamp"):
        verify(headers, BODY, b64_public(key))


@pytest.mark.parametrize(
    "configured", [None, "", "bm90IGEga2V5", "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"]
)
def test_no_usable_key_is_not_configured_never_accept_unsigned(configured, key):
    with pytest.raises(NotConfigured):
        verify(signed(key, BODY, T), BODY, configured)


def test_a_key_on_another_curve_is_not_configured(key):
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(NotConfigured, match="P-256"):
        verify(signed(key, BODY, T), BODY, b64_public(other))


# ---------------------------------------------------------------- parse


def event(name, **extra):
    return {
        "email": "ana@example.com",
        "timestamp": 1772463600,
        "event": name,
        "sg_event_id": f"id-{name}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001",
        "drip_ref": "ref-1",
        **extra,
    }


def parse(*items):
    return sg.parse(json.dumps(list(items)).encode(), NOW)


def test_a_batch_becomes_neutral_events_in_order():
    evs = parse(event("processed"), event("delivered"), event("open"), event("click"))
    assert [e.type for e in evs] == [
        EventType.QUEUED,
        EventType.DELIVERED,
        EventType.OPENED,
        EventType.CLICKED,
    ]
    first = evs[0]
    assert (first.provider, first.channel) == ("sendgrid", "email")
    assert first.provider_event_id == "id-processed"
    assert first.reference == "ref-1"  # from the drip_ref custom arg
    assert first.provider_message_id == "14c5d75ce93.dfd.64b469.filter0001"
    assert first.occurred_at == datetime.fromtimestamp(1772463600, UTC)
    assert first.raw == event("processed")  # the payload kept as it came


def test_an_unknown_event_name_is_ignored(caplog):
    caplog.set_level("INFO", logger=sg.__name__)
    evs = parse(event("group_resubscribe"), event("made_up"), event("delivered"))
    assert [e.type for e in evs] == [EventType.DELIVERED]
    assert "'group_resubscribe' ignored" in caplog.text


def test_items_that_are_not_objects_are_skipped():
    assert [e.type for e in parse("delivered", 7, None, event("bounce"))] == [EventType.BOUNCED]


@pytest.mark.parametrize(
    "reason",
    [
        "Bounced Address",
        "Unsubscribed Address",
        "Spam Reporting Address",
        "Invalid",
        " bounced address ",
    ],
)
def test_a_drop_about_the_address_is_flagged(reason):
    (ev,) = parse(event("dropped", reason=reason))
    assert ev.type == EventType.DROPPED and ev.address_at_fault
    assert ev.error_code == reason  # the drop's reason, kept for the message's last error


@pytest.mark.parametrize("reason", ["Invalid SMTPAPI header", "Spam Content", None])
def test_a_drop_for_our_own_fault_is_not_flagged(reason):
    (ev,) = parse(event("dropped", reason=reason))
    assert ev.type == EventType.DROPPED and not ev.address_at_fault


def test_only_drops_are_ever_flagged():
    (bounce,) = parse(event("bounce", type="bounce", status="5.1.1", reason="Bounced Address"))
    assert bounce.type == EventType.BOUNCED and not bounce.address_at_fault
    assert bounce.error_code == "5.1.1"  # a bounce's SMTP status, not its prose
    assert not bounce.recipient_opted_out


@pytest.mark.parametrize(("flag", "automated"), [(True, True), ("true", True), (False, False)])
def test_a_machine_open_is_marked_automated(flag, automated):
    (ev,) = parse(event("open", sg_machine_open=flag))
    assert ev.automated is automated
    (human,) = parse(event("open"))
    assert human.automated is False


def test_a_block_is_a_failure_not_a_bounce():
    (ev,) = parse(event("bounce", type="blocked", status="4.0.0"))
    assert ev.type == EventType.FAILED and ev.error_code == "4.0.0"


@pytest.mark.parametrize("name", ["unsubscribe", "group_unsubscribe"])
def test_unsubscribes(name):
    (ev,) = parse(event(name))
    assert ev.type == EventType.UNSUBSCRIBED


def test_a_missing_event_id_gets_a_stable_content_hash():
    item = {k: v for k, v in event("delivered").items() if k != "sg_event_id"}
    (a,) = parse(item)
    (b,) = parse(dict(reversed(list(item.items()))))  # same content, other key order
    (c,) = parse({**item, "timestamp": 1772463601})
    assert a.provider_event_id.startswith("sha256:") and a.provider_event_id == b.provider_event_id
    assert c.provider_event_id != a.provider_event_id


@pytest.mark.parametrize("timestamp", [None, "soon", 10**20])
def test_an_unreadable_timestamp_falls_back_to_now(timestamp):
    (ev,) = parse(event("delivered", timestamp=timestamp))
    assert ev.occurred_at == NOW


@pytest.mark.parametrize("ref", [None, 42, ["r"]])
def test_a_reference_that_is_not_a_string_is_none(ref):
    (ev,) = parse(event("delivered", drip_ref=ref))
    assert ev.reference is None


@pytest.mark.parametrize(
    "body,match",
    [(b"[{not json", "not JSON"), (b'{"event": "delivered"}', "JSON array"), (b"", "not JSON")],
)
def test_a_body_of_the_wrong_shape_is_a_bad_payload(body, match):
    with pytest.raises(BadPayload, match=match):
        sg.parse(body, NOW)
