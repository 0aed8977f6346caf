"""Texts a person sends us: the STOP / START / HELP keywords, sign-up by text, and
everything else kept for a person to read (invariant 12).

    SMS provider's inbound webhook (signature checked, parsed into an InboundText)
        ─► handle_inbound_sms:
             1. store the text as an `inbound` Event; (provider, message id) is unique,
                so a retried request is stored once and acted on once
             2. HELP ─► the help reply (every time: answering twice does no harm)
             3. STOP, or free words asking to stop ─► SMS consent revoked (or the
                unknown number suppressed), confirmed in the person's language
                START ─► resubscribed (or the number's own STOP lifted), confirmed
                YES / SI to our "reply YES" text ─► SMS consent (evidence: the message
                    sid), through the `confirm` the caller passes in
                JOIN ─► signed up, through the `join` the caller passes in
                a number 0-10 answering the person's latest check-in question ─►
                    recorded (campaigns.tracking.answers), thanked without repeating it
                anything else ─► the inbox, for the care team (campaigns.tracking.inbox),
                    with that question beside it when one went out lately

No HTTP and no provider here: the provider's webhook module turns its form into an
InboundText, and the route answers in the provider's format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.audience.emergency import country_of_phone, emergency_number
from campaigns.audience.opt_outs import resubscribe, unsubscribe
from campaigns.audience.subscribers import InvalidSubscriber, normalize_phone
from campaigns.audience.suppression import Cause, lift_unsubscribe, suppress
from campaigns.clock import Clock
from campaigns.content.care_team import EXAMPLE, CareTeam
from campaigns.content.sms_text import to_gsm7
from campaigns.models import Event, Subscriber
from campaigns.redact import mask
from campaigns.states import Channel, EventType
from campaigns.text import plain_id
from campaigns.tracking import answers, inbox
from campaigns.tracking.keywords import Intent, asks_to_stop, intent, keyword

log = logging.getLogger(__name__)

# The confirmations we send for STOP and START, unless the messaging service sends its
# own: GSM-7 only (no accents), the brand first, nothing about health (invariant 8).
STOP_REPLY = {
    "en": "{brand}: You are unsubscribed and will get no more texts. Reply START to resume.",
    "es": "{brand}: Cancelaste tu suscripcion y no recibiras mas mensajes. "
    "Responde START para volver.",
}
START_REPLY = {
    "en": "{brand}: You will get our texts again. Reply STOP to opt out, HELP for help.",
    "es": "{brand}: Volveras a recibir nuestros mensajes. Responde STOP para cancelar, "
    "AYUDA para ayuda.",
}
SPANISH_WORDS = {"PARAR", "ALTO", "CANCELAR", "BAJA", "DARDEBAJA", "AYUDA"}
# What an inbound text turned out to be: a keyword (help, opt_out, opt_in, confirm, join),
# an answer to a check-in question, a text for a person (inbox), or nothing to act on (a
# provider's retry of a text already handled, a sender that is not a phone number).
KINDS = (
    "help",
    "opt_out",
    "opt_in",
    "confirm",
    "join",
    "answer",
    "inbox",
    "duplicate",
    "no_sender",
)


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


HELP_WORDS = {
    "en": (
        "{brand}: Emergency? Call {emergency} now. These are educational messages. To talk "
        "to our care team, call {phone}, {hours}. Reply STOP to opt out. "
        "Msg&data rates may apply."
    ),
    "es": (
        "{brand}: ¿Emergencia? Llama al {emergency} ahora. Estos son mensajes educativos. Para "
        "hablar con nuestro equipo, llama al {phone}, {hours}. Responde STOP para salir. "
        "Pueden aplicarse tarifas de mensajes y datos."
    ),
}


def help_text(brand: str, care: CareTeam, locale: str, emergency: str) -> str:
    """The reply to HELP or AYUDA: what to do in an emergency first, then who we are, how
    to reach a person (a text asks for no call, so it promises none), how to stop. GSM-7
    only and nothing about health (invariant 8): anyone holding the phone reads it."""
    lang = "es" if locale.startswith("es") else "en"
    words = care.for_locale(lang)
    return to_gsm7(
        HELP_WORDS[lang].format(
            brand=brand,
            phone=words["phone"],
            hours=words["hours"],
            emergency=emergency,
        )
    )


@dataclass(frozen=True)
class HelpDesk:
    """What a HELP reply needs to know about the sender."""

    brand: str = "Lunara"
    care: CareTeam = EXAMPLE
    default_country: str = "US"

    def reply(self, phone: str | None, locale: str) -> str:
        country = country_of_phone(phone)
        return help_text(
            self.brand, self.care, locale, emergency_number(country, self.default_country)
        )


def handle_inbound_sms(
    session: Session,
    clock: Clock,
    text: InboundText,
    *,
    help_desk: HelpDesk | None = None,
    join: Callable[[Session, str, str, str | None], str | None] | None = None,
    confirm: Callable[[Session, str, str, str | None], str | None] | None = None,
    brand: str = "Lunara",
    confirm_opt_outs: bool = True,
    questions: answers.QuestionDesk | None = None,
    seen: Callable[[str], None] | None = None,
) -> str | None:
    """Act on a text from a subscriber. Returns the reply to send back, or None.
    `seen`, when given, is told which of KINDS the text turned out to be (for counting).

    A STOP, or free words that clearly ask to stop (campaigns.tracking.keywords), revokes
    SMS consent. STOP and START are confirmed in the person's language, unless
    `confirm_opt_outs` is off because the messaging service's own opt-out handling sends
    the confirmation (a second one would be refused: Twilio 21610).
    """
    now = clock.now()
    word = intent(text.body)
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
    said = seen or (lambda _kind: None)
    if word is Intent.HELP:
        said("help")
        spanish = keyword(text.body) == "AYUDA" or (
            subscriber is not None and (subscriber.locale or "").startswith("es")
        )
        return (help_desk or HelpDesk(brand)).reply(phone, "es" if spanish else "en")
    if not first_delivery or phone is None:
        said("duplicate" if not first_delivery else "no_sender")
        return None
    folded = keyword(text.body)
    evidence = {"keyword": folded if word else None, "message_sid": text.message_id}
    spanish = (subscriber is not None and (subscriber.locale or "").startswith("es")) or (
        subscriber is None and folded.replace(" ", "") in SPANISH_WORDS
    )
    locale = "es" if spanish else "en"
    if asks_to_stop(text.body):
        # Free words are honoured as a revocation "by any reasonable means"; the text
        # itself stays in its inbound event, not in the consent record.
        source = "sms_keyword" if word is Intent.STOP else "sms_reply"
        if subscriber is not None:
            # Also cancels a pending "reply YES": a later yes must not lift this STOP.
            unsubscribe(
                session,
                clock,
                subscriber,
                channels=(Channel.SMS,),
                source=source,
                evidence=evidence,
            )
        else:
            # Not (yet) a subscriber: still never text this number until it says START.
            suppress(session, clock, Channel.SMS, phone, Cause.STOP, source)
        log.info("STOP from %s", mask(phone))
        said("opt_out")
        session.flush()
        return STOP_REPLY[locale].format(brand=brand) if confirm_opt_outs else None
    if word is Intent.START:
        _start(session, clock, subscriber, phone, evidence)
        log.info("START from %s", mask(phone))
        said("opt_in")
        session.flush()
        return START_REPLY[locale].format(brand=brand) if confirm_opt_outs else None
    if confirm is not None:
        # The phone's answer to our "reply YES" text (campaigns.intake.signup); like `join`,
        # passed in. A yes nobody asked for returns None and is kept for a person.
        reply = confirm(session, phone, text.body, text.message_id)
        if reply:
            log.info("YES from %s", mask(phone))
            said("confirm")
            return reply
    if join is not None:
        # Sign-up by text (JOIN / UNIRME) lives in campaigns.intake.signup; the caller
        # passes it in so this module needs no scheduler. It returns the keyword reply, or None.
        reply = join(session, phone, text.body, text.message_id)
        if reply:
            log.info("JOIN from %s", mask(phone))
            said("join")
            return reply
    session.flush()
    asked = (
        questions.asked(session, subscriber, now)
        if questions is not None and subscriber is not None
        else None
    )
    if asked is not None and answers.answer_by_text(session, clock, asked, text.body, row):
        # Checked after every keyword: no number is one. The value stays out of the log.
        log.info("check-in answer by text from %s", mask(phone))
        said("answer")
        country = country_of_phone(phone)
        default = help_desk.default_country if help_desk else "US"
        return questions.thanks(locale, emergency_number(country, default))
    # Anything else a person writes waits for a person (invariant 12), beside the
    # question it may answer.
    inbox.add(session, row, phone, text.body or "", asked.message.id if asked else None)
    said("inbox")
    return None


def _start(
    session: Session, clock: Clock, subscriber: Subscriber | None, phone: str, evidence: dict
) -> None:
    if subscriber is None:
        lift_unsubscribe(session, Channel.SMS, phone)  # not a subscriber: only its STOP is lifted
        return
    resubscribe(session, clock, subscriber, Channel.SMS, "sms_keyword", evidence)
