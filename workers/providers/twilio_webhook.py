"""Twilio's webhooks for SMS: verify a request, then parse a status callback into the
domain's neutral events or an incoming text into an InboundText. The sending half is
workers/providers/twilio.py.

    parse_form(body) -> Form          the urlencoded body Twilio posts
    verify(headers, url, form, auth_token=...)
        X-Twilio-Signature: HMAC-SHA1 over the public URL Twilio called plus the sorted
        form fields, by the account's auth token (the SDK's RequestValidator)
    parse_status(form, ref, now) -> [NormalizedEvent]
        MessageStatus mapped onto EventType; an error code that means the recipient
        opted out (21610) flagged
    parse_inbound(form) -> InboundText
        both raise BadPayload for a signed form whose ids or error code are not plain
        text (a 200-character or NUL-bearing MessageSid): the request is refused whole

`url` is the URL Twilio requested, as the public sees it (PUBLIC_BASE_URL + path +
query): behind a proxy the host and scheme a server sees are the proxy's, and a client
can set Host to anything, so the caller rebuilds it.

Plain bytes and mappings in, neutral events out: no web framework, so tests call it
directly. Refusals are the errors drawn in workers/providers/webhook_base.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from campaigns.states import EventType as E
from campaigns.text import UncleanText
from campaigns.tracking.events import NormalizedEvent
from campaigns.tracking.inbound import InboundText
from workers.providers.webhook_base import BadPayload, NotConfigured, Rejected, header

log = logging.getLogger(__name__)

PROVIDER = "twilio"
CHANNEL = "sms"
SIGNATURE_HEADER = "X-Twilio-Signature"

# MessageStatus onto our event types. Statuses missing here are logged and ignored.
STATUS_TYPES: dict[str, E] = {
    "accepted": E.QUEUED,
    "scheduled": E.QUEUED,
    "queued": E.QUEUED,
    "sending": E.QUEUED,  # handed to the carrier, not yet accepted by it
    "sent": E.SENT,  # the carrier accepted it
    "delivered": E.DELIVERED,
    "undelivered": E.FAILED,
    "failed": E.FAILED,
    "canceled": E.FAILED,
    "read": E.OPENED,  # WhatsApp/RCS read receipts
}

# Error codes in a status callback that mean the recipient opted out: they replied STOP
# and Twilio (or the carrier) blocks the number for this sender.
OPTED_OUT_ERRORS = frozenset({"21610"})


class Form(Mapping[str, str]):
    """A urlencoded form: each field's last value, as web frameworks read it, while every
    value stays available to the signature, which covers them all (the validator calls
    `getlist`)."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self._pairs = pairs
        self._last = dict(pairs)

    def __getitem__(self, name: str) -> str:
        return self._last[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]


def parse_form(body: bytes) -> Form:
    # Percent-escapes are UTF-8; raw bytes read as Latin-1 never fail (as Starlette reads forms).
    return Form(parse_qsl(body.decode("latin-1"), keep_blank_values=True))


# ---------------------------------------------------------------- verifying


def verify(
    headers: Mapping[str, str], url: str, form: Mapping[str, str], *, auth_token: str | None
) -> None:
    """Return if Twilio signed this URL and form; raise NotConfigured or Rejected."""
    if not auth_token:
        raise NotConfigured("TWILIO_AUTH_TOKEN is not set")
    signature = header(headers, SIGNATURE_HEADER)
    if not signature:
        raise Rejected("missing signature")
    if not RequestValidator(auth_token).validate(url, form, signature):
        raise Rejected("bad signature")


# ---------------------------------------------------------------- parsing


def parse_status(form: Mapping[str, str], ref: str | None, now: datetime) -> list[NormalizedEvent]:
    """A status callback: one event, or none for a status we do not map.

    Twilio sends no event id, but each status is reported once per message, so
    MessageSid + MessageStatus is a stable one. `ref` is our Message.public_token from
    the callback URL, once the caller has checked our own signature on it."""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    sid = form.get("MessageSid") or form.get("SmsSid")
    kind = STATUS_TYPES.get(status)
    if kind is None or not sid:
        log.info("twilio status %r ignored: not mapped or no MessageSid", status)
        return []
    error = form.get("ErrorCode") or None
    try:
        return [_status_event(form, sid, status, kind, ref, error, now)]
    except UncleanText as exc:
        # One callback is one event: a malformed one is refused whole, never half-stored.
        raise BadPayload(str(exc)) from None


def _status_event(form, sid, status, kind, ref, error, now) -> NormalizedEvent:
    return NormalizedEvent(
        provider=PROVIDER,
        channel=CHANNEL,
        provider_event_id=f"{sid}:{status}",
        type=kind,
        reference=ref or None,
        provider_message_id=sid,
        occurred_at=now,  # status callbacks carry no event time
        error_code=error,
        recipient_opted_out=error in OPTED_OUT_ERRORS,
        raw=dict(form),
    )


def parse_inbound(form: Mapping[str, str]) -> InboundText:
    """A text someone sent to one of our numbers; BadPayload for a malformed MessageSid."""
    try:
        return InboundText(
            provider=PROVIDER,
            from_number=form.get("From", ""),
            body=form.get("Body", ""),
            message_id=form.get("MessageSid") or form.get("SmsSid") or None,
            raw=dict(form),
        )
    except UncleanText as exc:
        raise BadPayload(str(exc)) from None
