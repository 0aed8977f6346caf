"""Texts a person sends us: the STOP / START / HELP keywords, sign-up by text, and
everything else kept for a person to read (invariant 12).

    SMS provider's inbound webhook (signature checked, parsed into an InboundText)
        ─► handle_inbound_sms:
             1. store the text as an `inbound` Event; (provider, message id) is unique,
                so a retried request is stored once and acted on once
             2. HELP ─► the help reply (every time: answering twice does no harm)
             3. STOP ─► SMS consent revoked (or the unknown number suppressed)
                START ─► resubscribed (or the number's own STOP lifted)
                JOIN ─► signed up, through the `join` the caller passes in
                anything else ─► stored only, for the care team

No HTTP and no provider here: the provider's webhook module turns its form into an
InboundText, and the route answers in the provider's format.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.audience.opt_outs import resubscribe, unsubscribe
from campaigns.audience.subscribers import InvalidSubscriber, normalize_phone
from campaigns.audience.suppression import Cause, lift_unsubscribe, suppress
from campaigns.clock import Clock
from campaigns.models import Event, Subscriber
from campaigns.redact import mask
from campaigns.states import Channel, EventType
from campaigns.text import plain_id

log = logging.getLogger(__name__)

# Whole-message keywords (CTIA, and the FCC's 2024 revocation words), English and
# Spanish since the courses are sent in both. Punctuation is ignored ("Stop.", "opt-out").
STOP_WORDS = {
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
    "PARAR",
    "ALTO",
    "CANCELAR",
}
START_WORDS = {"START", "UNSTOP"}
HELP_WORDS = {"HELP", "INFO", "AYUDA"}


@dataclass
class InboundText:
    """One text from a phone, as any SMS provider's webhook module reports it."""

    provider: str
    from_number: str
    body: str
    message_id: str | None  # the provider's id for the text: a retried request repeats it
    raw: dict = field(default_factory=dict)  # the provider's payload, stored as it came

    def __post_init__(self) -> None:
        # The id is stored as an event id: short printable ASCII, else UncleanText.
        if self.message_id:
            plain_id(self.message_id, "message_id", max_len=64)


def help_text(brand: str, contact: str) -> str:
    # GSM-7 only and nothing about health (invariant 8): anyone holding the phone reads it.
    return (
        f"{brand}: educational messages. Reply STOP to opt out, START to resume. "
        f"Help: {contact}. Msg&data rates may apply."
    )


DEFAULT_HELP = help_text("Lunara", "care@lunara.example")  # settings' defaults


def keyword(body: str | None) -> str:
    words = re.sub(r"[^\w\s]", "", (body or "")).split()
    return " ".join(words).upper()


def handle_inbound_sms(
    session: Session,
    clock: Clock,
    text: InboundText,
    *,
    help_reply: str | None = None,
    join: Callable[[Session, str, str, str | None], str | None] | None = None,
) -> str | None:
    """Act on a text from a subscriber. Returns the reply to send back, or None.

    STOP and START get no reply from us: the provider's opt-out handling (Twilio's, and on
    toll-free numbers the carrier's) already sends the required confirmation, and a reply
    to a number that just opted out would be refused (Twilio 21610).
    """
    now = clock.now()
    word = keyword(text.body)
    try:
        phone = normalize_phone(text.from_number)
    except InvalidSubscriber:
        phone = None  # a short code or alphanumeric sender: nothing to act on
    subscriber = (
        session.scalar(select(Subscriber).where(Subscriber.phone == phone)) if phone else None
    )
    row = Event(
        message_id=None,
        subscriber_id=subscriber.id if subscriber else None,
        type=EventType.INBOUND,
        provider=text.provider,
        provider_event_id=text.message_id,
        occurred_at=now,
        received_at=now,
        payload=text.raw or {"From": text.from_number, "Body": text.body},
    )
    try:
        with session.begin_nested():
            session.add(row)
        first_delivery = True
    except IntegrityError:
        first_delivery = False  # the provider retried the request; act once
    if word in HELP_WORDS:
        return help_reply or DEFAULT_HELP
    if not first_delivery or phone is None:
        return None
    evidence = {"keyword": word, "message_sid": text.message_id}
    if word in STOP_WORDS:
        if subscriber is not None:
            unsubscribe(
                session,
                clock,
                subscriber,
                channels=(Channel.SMS,),
                source="sms_keyword",
                evidence=evidence,
            )
        else:
            # Not (yet) a subscriber: still never text this number until it says START.
            suppress(session, clock, Channel.SMS, phone, Cause.STOP, "sms_keyword")
        log.info("STOP from %s", mask(phone))
    elif word in START_WORDS:
        _start(session, clock, subscriber, phone, evidence)
        log.info("START from %s", mask(phone))
    elif join is not None:
        # Sign-up by text (JOIN / UNIRME) lives in campaigns.intake.signup; the caller
        # passes it in so this module needs no scheduler. It returns the keyword reply, or None.
        reply = join(session, phone, text.body, text.message_id)
        if reply:
            log.info("JOIN from %s", mask(phone))
            return reply
    session.flush()
    return None


def _start(
    session: Session, clock: Clock, subscriber: Subscriber | None, phone: str, evidence: dict
) -> None:
    if subscriber is None:
        lift_unsubscribe(session, Channel.SMS, phone)  # not a subscriber: only its STOP is lifted
        return
    resubscribe(session, clock, subscriber, Channel.SMS, "sms_keyword", evidence)
