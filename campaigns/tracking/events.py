"""Provider events: one table from each provider's names onto our EventType, and the one
function that decides what an event does to a message, an address or a subscriber.

    webhook (web/webhooks.py: signature checked) ─► from_sendgrid / from_twilio_status
        ─► NormalizedEvent ─► record_event:
             1. find our message (by our opaque reference, else the provider's id)
             2. store the Event with its raw payload; (provider, provider_event_id) is
                unique, so a redelivered event stops here and changes nothing
             3. move Message.status forward only (states.may_advance)
             4. bounce / drop / complaint / Twilio 21610: suppress the address;
                unsubscribe: consent revoked for that channel
    inbound text ─► handle_inbound_sms: STOP / START / HELP keywords, else stored

No HTTP here: the routes verify signatures and parse bodies, then call these functions.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns import states
from campaigns.clock import Clock
from campaigns.models import Event, Message, Subscriber
from campaigns.redact import mask
from campaigns.audience.subscribers import (
    InvalidSubscriber,
    address_for,
    lift_unsubscribe,
    normalize_phone,
    resubscribe,
    suppress,
    unsubscribe,
)

log = logging.getLogger(__name__)
E = states.EventType

# The custom arg (SendGrid puts custom_args at the top level of each event) that carries
# Message.public_token. Opaque and random: nothing about the person (invariant 8).
SENDGRID_REF_ARG = "drip_ref"

# Provider names onto our event types. "event/type" keys refine an event by its `type`
# field and are tried first. Names missing here are logged and ignored.
EVENT_TYPES: dict[str, dict[str, str]] = {
    "sendgrid": {
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
    },
    "twilio": {  # MessageStatus
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
    },
}

# What each event says about the message. Any event from the provider proves the
# provider has the message, which settles an unconfirmed one (invariant 2); engagement
# implies delivery. Applied only upwards (states.may_advance).
MESSAGE_STATUS = {
    E.QUEUED: states.SENT,
    E.DEFERRED: states.SENT,
    E.SENT: states.SENT,
    E.DELIVERED: states.DELIVERED,
    E.OPENED: states.DELIVERED,
    E.CLICKED: states.DELIVERED,
    E.COMPLAINED: states.DELIVERED,
    E.UNSUBSCRIBED: states.DELIVERED,
    E.BOUNCED: states.BOUNCED,
    E.DROPPED: states.FAILED,
    E.FAILED: states.FAILED,
}

# Events that stop all further sends to the address (Suppression.reason).
SUPPRESS_REASON = {E.BOUNCED: "bounce", E.DROPPED: "dropped", E.COMPLAINED: "complaint"}
# Twilio error codes in a status callback that are about the number itself.
TWILIO_SUPPRESSING_ERRORS = {"21610": "stop"}  # the recipient replied STOP to Twilio

PROVIDER_CHANNEL = {"sendgrid": "email", "twilio": "sms"}


@dataclass
class NormalizedEvent:
    provider: str
    provider_event_id: str
    type: str  # states.EventType
    reference: str | None  # our Message.public_token, when the provider echoes it
    provider_message_id: str | None
    occurred_at: datetime
    error_code: str | None = None
    raw: dict = field(default_factory=dict)


class Recorded(str, enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    UNKNOWN_MESSAGE = "unknown_message"


# ---------------------------------------------------------------- provider payloads


def from_sendgrid(item: Mapping, now: datetime) -> NormalizedEvent | None:
    """One object of a SendGrid Event Webhook batch; None for events we do not map."""
    name = str(item.get("event") or "").lower()
    table = EVENT_TYPES["sendgrid"]
    kind = table.get(f"{name}/{item.get('type')}") or table.get(name)
    if kind is None:
        log.info("sendgrid event %r ignored: not mapped", name)
        return None
    event_id = item.get("sg_event_id")
    if not isinstance(event_id, str) or not event_id:
        # Always present in practice; a content hash still makes redeliveries no-ops.
        canonical = json.dumps(item, sort_keys=True, default=str).encode()
        event_id = "sha256:" + hashlib.sha256(canonical).hexdigest()[:48]
    ref = item.get(SENDGRID_REF_ARG)
    error = item.get("reason") if kind == E.DROPPED else item.get("status")
    return NormalizedEvent(
        provider="sendgrid",
        provider_event_id=event_id[:120],
        type=kind,
        reference=ref if isinstance(ref, str) else None,
        provider_message_id=_str_or_none(item.get("sg_message_id")),
        occurred_at=_from_unix(item.get("timestamp"), now),
        error_code=_str_or_none(error),
        raw=dict(item),
    )


def from_twilio_status(params: Mapping[str, str], ref: str | None,
                       now: datetime) -> NormalizedEvent | None:
    """A Twilio status callback. Twilio sends no event id, but each status is reported
    once per message, so MessageSid + MessageStatus is a stable one."""
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    sid = params.get("MessageSid") or params.get("SmsSid")
    kind = EVENT_TYPES["twilio"].get(status)
    if kind is None or not sid:
        log.info("twilio status %r ignored: not mapped or no MessageSid", status)
        return None
    return NormalizedEvent(
        provider="twilio",
        provider_event_id=f"{sid}:{status}",
        type=kind,
        reference=ref or None,
        provider_message_id=sid,
        occurred_at=now,  # status callbacks carry no event time
        error_code=params.get("ErrorCode") or None,
        raw=dict(params),
    )


def _str_or_none(value) -> str | None:
    return str(value)[:100] if value not in (None, "") else None


def _from_unix(value, default: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return default


# ---------------------------------------------------------------- recording


def record_event(session: Session, clock: Clock, ev: NormalizedEvent) -> Recorded:
    now = clock.now()
    msg = _find_message(session, ev)
    row = Event(
        message_id=msg.id if msg else None,
        subscriber_id=msg.subscriber_id if msg else None,
        type=ev.type,
        provider=ev.provider,
        provider_event_id=ev.provider_event_id,
        occurred_at=ev.occurred_at,
        received_at=now,
        payload=ev.raw,
    )
    # Insert first, act after: the unique (provider, provider_event_id) key makes a
    # redelivered or concurrently delivered event lose here, before it changes anything.
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return Recorded.DUPLICATE
    if msg is None:
        log.warning("%s event %s (%s) for an unknown message; stored, nothing else done",
                    ev.provider, ev.provider_event_id, ev.type)
        return Recorded.UNKNOWN_MESSAGE
    _advance(msg, ev, now)
    _protect_address(session, clock, msg, ev)
    session.flush()
    return Recorded.APPLIED


def _find_message(session: Session, ev: NormalizedEvent) -> Message | None:
    # Locked, so two webhooks for one message cannot both read "sent" and then write
    # delivered and failed in the wrong order. (SQLite serialises writers anyway.)
    query = select(Message).with_for_update()
    if ev.reference:
        found = session.scalars(query.where(Message.public_token == ev.reference)).all()
    elif ev.provider_message_id:
        found = session.scalars(
            query.where(Message.provider == ev.provider,
                        Message.provider_message_id == ev.provider_message_id).limit(2)
        ).all()
    else:
        found = []
    # Ambiguous ids (a batch id shared by many) and the wrong channel count as unknown.
    if len(found) != 1 or found[0].channel != PROVIDER_CHANNEL.get(ev.provider):
        return None
    return found[0]


def _advance(msg: Message, ev: NormalizedEvent, now: datetime) -> None:
    target = MESSAGE_STATUS.get(ev.type)
    if target is None or not states.may_advance(msg.status, target):
        return
    msg.status = target
    detail = f", error {ev.error_code}" if ev.error_code else ""
    msg.reason = f"{ev.provider} webhook: {ev.type}{detail}"[:200]
    if ev.error_code and target in (states.FAILED, states.BOUNCED):
        msg.last_error = f"{ev.provider} {ev.type}: {ev.error_code}"
    # A webhook can beat the send task's own bookkeeping (or replace it after a crash):
    # fill in what the send would have recorded, and drop the lease so a late result
    # from that task is ignored rather than written over this newer state.
    msg.provider = msg.provider or ev.provider
    msg.provider_message_id = msg.provider_message_id or ev.provider_message_id
    if target in (states.SENT, states.DELIVERED) and msg.sent_at is None:
        msg.sent_at = ev.occurred_at
    msg.lease_token = None
    msg.lease_until = None
    msg.updated_at = now


# SendGrid drop reasons that say the address itself must not be mailed.
ADDRESS_DROP_REASONS = ("bounced address", "unsubscribed address", "spam reporting address", "invalid")


def _drop_is_about_the_address(reason: str | None) -> bool:
    text = (reason or "").strip().lower()
    return text in ADDRESS_DROP_REASONS


def _protect_address(session: Session, clock: Clock, msg: Message, ev: NormalizedEvent) -> None:
    """Applied even when the status did not move: a bounce after a drop still counts."""
    reason = SUPPRESS_REASON.get(ev.type)
    if ev.type == E.DROPPED and not _drop_is_about_the_address(ev.error_code):
        reason = None  # dropped for our own fault (a bad header, content): the address is fine
    if ev.provider == "twilio" and ev.error_code in TWILIO_SUPPRESSING_ERRORS:
        reason = TWILIO_SUPPRESSING_ERRORS[ev.error_code]
    if reason is None and ev.type != E.UNSUBSCRIBED:
        return
    subscriber = session.get(Subscriber, msg.subscriber_id)
    # The subscriber's current address is the one the send path checks (invariant 4).
    address = address_for(subscriber, msg.channel)
    if not address:
        return
    if ev.type == E.UNSUBSCRIBED:
        unsubscribe(session, clock, subscriber, channels=(msg.channel,), source=ev.provider,
                    evidence={"provider_event_id": ev.provider_event_id})
    else:
        suppress(session, clock, msg.channel, address, reason, ev.provider)
    log.info("%s %s: %s suppressed (%s)", ev.provider, ev.type, mask(address), reason or "unsubscribed")


# ---------------------------------------------------------------- inbound texts

# Whole-message keywords (CTIA, and the FCC's 2024 revocation words), English and
# Spanish since the courses are sent in both. Punctuation is ignored ("Stop.", "opt-out").
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
              "OPTOUT", "OPT OUT", "PARAR", "ALTO", "CANCELAR"}
START_WORDS = {"START", "UNSTOP"}
HELP_WORDS = {"HELP", "INFO", "AYUDA"}


def help_text(brand: str, contact: str) -> str:
    # GSM-7 only and nothing about health (invariant 8): anyone holding the phone reads it.
    return (f"{brand}: educational messages. Reply STOP to opt out, START to resume. "
            f"Help: {contact}. Msg&data rates may apply.")


DEFAULT_HELP = help_text("Lunara", "care@lunara.example")  # settings' defaults


def keyword(body: str | None) -> str:
    words = re.sub(r"[^\w\s]", "", (body or "")).split()
    return " ".join(words).upper()


def handle_inbound_sms(
    session: Session,
    clock: Clock,
    from_number: str,
    body: str,
    *,
    message_sid: str | None = None,
    payload: dict | None = None,
    help_reply: str | None = None,
    join: Callable[[Session, str, str, str | None], str | None] | None = None,
) -> str | None:
    """Act on a text from a subscriber. Returns the reply to send back, or None.

    STOP and START get no reply from us: Twilio's opt-out handling (and, on toll-free
    numbers, the carrier) already sends the required confirmation, and a reply to a
    number that just opted out would be refused (21610).
    """
    now = clock.now()
    word = keyword(body)
    try:
        phone = normalize_phone(from_number)
    except InvalidSubscriber:
        phone = None  # a short code or alphanumeric sender: nothing to act on
    subscriber = session.scalar(select(Subscriber).where(Subscriber.phone == phone)) if phone else None
    row = Event(
        message_id=None, subscriber_id=subscriber.id if subscriber else None, type=E.INBOUND,
        provider="twilio", provider_event_id=message_sid, occurred_at=now, received_at=now,
        payload=payload if payload is not None else {"From": from_number, "Body": body},
    )
    try:
        with session.begin_nested():
            session.add(row)
        first_delivery = True
    except IntegrityError:
        first_delivery = False  # Twilio retried the request; act once
    if word in HELP_WORDS:
        return help_reply or DEFAULT_HELP
    if not first_delivery or phone is None:
        return None
    evidence = {"keyword": word, "message_sid": message_sid}
    if word in STOP_WORDS:
        if subscriber is not None:
            unsubscribe(session, clock, subscriber, channels=("sms",), source="sms_keyword",
                        evidence=evidence)
        else:
            # Not (yet) a subscriber: still never text this number until it says START.
            suppress(session, clock, "sms", phone, "stop", "sms_keyword")
        log.info("STOP from %s", mask(phone))
    elif word in START_WORDS:
        _start(session, clock, subscriber, phone, evidence)
        log.info("START from %s", mask(phone))
    elif join is not None:
        # Sign-up by text (JOIN / UNIRME) lives in campaigns.audience.signup; the caller passes it in
        # so this module needs no scheduler. It returns the keyword reply, or None.
        reply = join(session, phone, body, message_sid)
        if reply:
            log.info("JOIN from %s", mask(phone))
            return reply
    session.flush()
    return None


def _start(session: Session, clock: Clock, subscriber: Subscriber | None, phone: str,
           evidence: dict) -> None:
    if subscriber is None:
        lift_unsubscribe(session, "sms", phone)  # not a subscriber: only its STOP is lifted
        return
    resubscribe(session, clock, subscriber, "sms", "sms_keyword", evidence)