"""SendGrid's Signed Event Webhook: verify a request, then parse its batch into the
domain's neutral events. The sending half is workers/providers/sendgrid.py.

    verify(headers, body, public_key=..., now=..., max_age_seconds=...)
        ECDSA P-256 over timestamp + raw body, by the key from SendGrid's settings page;
        the timestamp is signed, so a fresh one proves the request is not an old replay
    parse(body, now) -> [NormalizedEvent]
        a JSON array of events; `event` (refined by `type`) mapped onto EventType; our
        reference from the `drip_ref` custom arg; drops about the address flagged

Plain bytes and mappings in, neutral events out: no web framework, so tests call it
directly. Refusals are the errors drawn in workers/providers/webhook_base.py.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from campaigns.states import EventType as E
from campaigns.tracking.events import NormalizedEvent
from workers.providers.webhook_base import BadPayload, NotConfigured, Rejected, header

log = logging.getLogger(__name__)

PROVIDER = "sendgrid"
CHANNEL = "email"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# Clocks drift; a signature from further ahead than this is as suspect as a stale one.
FUTURE_SKEW_SECONDS = 60
MAX_TIMESTAMP_DIGITS = 12  # Unix seconds stay under 12 digits until the year 33658
# SendGrid's events are flat objects (custom args one level down); an item nested deeper
# than this is not theirs, and is skipped rather than stored.
MAX_ITEM_DEPTH = 8

# The custom arg that carries Message.public_token (the sending module sets it on each
# personalization; SendGrid puts custom_args at the top level of each event). Opaque and
# random: nothing about the person (invariant 8).
REF_ARG = "drip_ref"

# SendGrid's event names onto ours. "event/type" keys refine an event by its `type`
# field and are tried first. Names missing here are logged and ignored.
EVENT_TYPES: dict[str, E] = {
    "processed": E.QUEUED,
    "deferred": E.DEFERRED,  # SendGrid keeps retrying for up to 72 hours
    "delivered": E.DELIVERED,
    "bounce": E.BOUNCED,
    # A block is the receiving server refusing *us* (IP reputation, content), not the
    # address. SendGrid does not retry it, so "deferred" would leave the message
    # pending forever: it failed; and the address is not suppressed.
    "bounce/blocked": E.FAILED,
    "dropped": E.DROPPED,
    "open": E.OPENED,
    "click": E.CLICKED,
    "spamreport": E.COMPLAINED,
    "unsubscribe": E.UNSUBSCRIBED,
    "group_unsubscribe": E.UNSUBSCRIBED,
}

# Drop reasons that say the address itself must not be mailed. Any other drop ("Invalid
# SMTPAPI header", content) is our own fault, and the address stays usable.
ADDRESS_DROP_REASONS = (
    "bounced address",
    "unsubscribed address",
    "spam reporting address",
    "invalid",
)


# ---------------------------------------------------------------- verifying


@functools.lru_cache(maxsize=4)  # parsed once per configured key, not per request
def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """SendGrid shows the key as base64 DER (SubjectPublicKeyInfo); a PEM paste works too.
    Raises ValueError (or cryptography's UnsupportedAlgorithm) for anything else."""
    if "BEGIN PUBLIC KEY" in value:
        key = serialization.load_pem_public_key(value.encode())
    else:
        key = serialization.load_der_public_key(base64.b64decode("".join(value.split())))
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 public key")
    return key


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    public_key: str | None,
    now: datetime,
    max_age_seconds: int,
) -> None:
    """Return if SendGrid signed this body recently; raise NotConfigured or Rejected."""
    key = _configured_key(public_key)
    signature = header(headers, SIGNATURE_HEADER)
    timestamp = header(headers, TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise Rejected("missing signature")
    # ASCII digits of a plausible length: str.isdigit() also accepts "²" and "١", which
    # int() refuses, and int() refuses more than 4,300 digits.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= MAX_TIMESTAMP_DIGITS):
        raise Rejected("bad timestamp")
    age = now.timestamp() - int(timestamp)
    if age > max_age_seconds or age < -FUTURE_SKEW_SECONDS:
        raise Rejected(f"stale timestamp ({int(age)}s old)")
    # Over the raw bytes: re-encoding parsed JSON would not reproduce what was signed.
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode() + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise Rejected("bad signature") from None


def _configured_key(value: str | None) -> ec.EllipticCurvePublicKey:
    if not value:
        raise NotConfigured("SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
    try:
        return load_public_key(value)
    except (ValueError, UnsupportedAlgorithm, binascii.Error):
        # settings.py refuses such a key at start-up; this guards an app built around it.
        raise NotConfigured("SENDGRID_WEBHOOK_PUBLIC_KEY is not a P-256 key") from None


# ---------------------------------------------------------------- parsing


def parse(body: bytes, now: datetime) -> list[NormalizedEvent]:
    """The events of one verified batch that we map, in order; BadPayload if the body
    is not a JSON array. `now` stands in for a missing or unreadable timestamp."""
    try:
        batch = json.loads(body)
    except ValueError:
        raise BadPayload("body is not JSON") from None
    except RecursionError:  # the C decoder's own depth guard, not a crash
        raise BadPayload("body is nested too deeply") from None
    if not isinstance(batch, list):
        raise BadPayload("expected a JSON array of events")
    events = []
    for position, item in enumerate(batch):
        if not isinstance(item, dict):
            continue
        try:
            ev = event_from(item, now)
        except ValueError as exc:  # UncleanText or nesting: this item only, never the batch
            log.warning("sendgrid event %d of the batch skipped: %s", position, exc)
            continue
        if ev is not None:
            events.append(ev)
    return events


def event_from(item: Mapping, now: datetime) -> NormalizedEvent | None:
    """One object of a batch; None for events we do not map."""
    if _deeper_than(item, MAX_ITEM_DEPTH):
        raise ValueError(f"nested deeper than {MAX_ITEM_DEPTH} levels")
    name = str(item.get("event") or "").lower()
    kind = EVENT_TYPES.get(f"{name}/{item.get('type')}") or EVENT_TYPES.get(name)
    if kind is None:
        log.info("sendgrid event %r ignored: not mapped", name)
        return None
    event_id = item.get("sg_event_id")
    if not isinstance(event_id, str) or not event_id:
        # Always present in practice; a content hash still makes redeliveries no-ops.
        canonical = json.dumps(item, sort_keys=True, default=str).encode()
        event_id = "sha256:" + hashlib.sha256(canonical).hexdigest()[:48]
    ref = item.get(REF_ARG)
    # A drop's cause is in `reason`; a bounce's or block's SMTP code in `status`.
    error = item.get("reason") if kind == E.DROPPED else item.get("status")
    return NormalizedEvent(
        provider=PROVIDER,
        channel=CHANNEL,
        provider_event_id=event_id,  # an over-long one is not SendGrid's: skipped
        type=kind,
        reference=ref if isinstance(ref, str) else None,
        provider_message_id=_str_or_none(item.get("sg_message_id")),
        occurred_at=_from_unix(item.get("timestamp"), now),
        error_code=_str_or_none(error),
        address_at_fault=kind == E.DROPPED and _drop_is_about_the_address(item.get("reason")),
        # SendGrid's own verdict that an open came from a machine (Apple's privacy proxy).
        automated=item.get("sg_machine_open") in (True, "true", 1, "1"),
        raw=dict(item),
    )


def _deeper_than(value, limit: int) -> bool:
    """Whether lists and objects in `value` nest more than `limit` levels (iteratively,
    so the check itself cannot recurse too deep)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in node)
    return False


def _drop_is_about_the_address(reason) -> bool:
    return str(reason or "").strip().lower() in ADDRESS_DROP_REASONS


def _str_or_none(value) -> str | None:
    return str(value)[:100] if value not in (None, "") else None


def _from_unix(value, default: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return default
