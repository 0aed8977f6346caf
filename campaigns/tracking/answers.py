"""Answers to a check-in question (a step with `asks`, campaigns.sequences.questions):
recorded from the email's answer page or from a text reply, one per enrollment and step.

    email: /a/<signed token>  GET shows the value the link stands for (records nothing:
           mail scanners fetch every link) ─► POST records it (record)
    text:  a reply that is one value of the scale (questions.read_reply) from a person
           whose latest question went out within the reply window ─► recorded
           (answer_by_text); any other reply goes to the inbox with that question beside it

An answer is health data (invariant 8): it is stored here and shown in the report, and is
never logged, put in a URL (each value's link carries its own signature, not the value),
a subject line or a provider's metadata. Answering again replaces the answer: a person
who pressed 7 and meant 5 can press 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.content.sms_text import to_gsm7
from campaigns.links import BadToken, Signer
from campaigns.models import Answer, Event, Message, Subscriber
from campaigns.sequences.campaign import DefinitionError, Step
from campaigns.sequences.questions import QUESTIONS, Question, read_reply
from campaigns.sequences.registry import Registry

# Every value any question's scale holds: an answer link is tried against these.
ALL_VALUES = range(
    min(q.low for q in QUESTIONS.values()), max(q.high for q in QUESTIONS.values()) + 1
)
REPLY_WITHIN = timedelta(days=3)
VIA_LINK, VIA_TEXT = "link", "text"  # Answer.via


class NotAnswerable(LookupError):
    """The link is not an answer link of ours, or its question is no longer asked."""


@dataclass
class Asked:
    """A question that went out: the message that asked it, and its step."""

    message: Message
    step: Step
    subscriber: Subscriber | None = None  # loaded for a link's page

    @property
    def question(self) -> Question:
        assert self.step.question is not None
        return self.step.question


def _asked(registry: Registry, message: Message) -> Asked | None:
    try:
        step = registry.get(message.campaign_key).step(message.step_key)
    except DefinitionError:
        return None
    if step is None or step.question is None:
        return None
    return Asked(message, step)


def open_link(
    session: Session, registry: Registry, signer: Signer, token: str
) -> tuple[Asked, int]:
    """The question an answer link belongs to and the value it stands for (NotAnswerable
    for a forged, mangled or stale link)."""
    try:
        public, value = signer.unsign_answer(token, ALL_VALUES)
    except BadToken:
        raise NotAnswerable("this link is not valid") from None
    message = session.scalar(select(Message).where(Message.public_token == public))
    asked = _asked(registry, message) if message is not None else None
    if asked is None or value not in asked.question.values:
        raise NotAnswerable("this question is no longer asked")
    asked.subscriber = session.get(Subscriber, message.subscriber_id)
    return asked, value


def record(
    session: Session,
    clock: Clock,
    asked: Asked,
    value: int,
    via: str,
    event_id: int | None = None,
) -> Answer:
    """The person's answer to the question `asked`, replacing an earlier one; the same
    value again changes nothing (a double-pressed button)."""
    if value not in asked.question.values:
        raise ValueError(f"choose a number from {asked.question.low} to {asked.question.high}")
    msg = asked.message
    where = (Answer.enrollment_id == msg.enrollment_id, Answer.step_key == msg.step_key)
    now = clock.now()
    row = session.scalar(select(Answer).where(*where).with_for_update())
    if row is None:
        row = Answer(
            subscriber_id=msg.subscriber_id,
            enrollment_id=msg.enrollment_id,
            campaign_key=msg.campaign_key,
            step_key=msg.step_key,
            question=asked.question.key,
            value=value,
            message_id=msg.id,
            via=via,
            event_id=event_id,
            answered_at=now,
            created_at=now,
        )
        try:
            with session.begin_nested():
                session.add(row)
            return row
        except IntegrityError:  # the same question answered at the same moment elsewhere
            row = session.scalar(select(Answer).where(*where).with_for_update())
            if row is None:
                raise
    if row.value != value:
        row.value, row.answered_at = value, now
        row.message_id, row.via, row.event_id = msg.id, via, event_id
    session.flush()
    return row


def latest_question(
    session: Session, registry: Registry, subscriber_id: int, now, within: timedelta
) -> Asked | None:
    """The last question we sent this person (by text or email) within `within`."""
    asking = [
        and_(Message.campaign_key == c.key, Message.step_key == s.key)
        for c in registry.campaigns().values()
        for s in c.steps
        if s.question is not None
    ]
    if not asking:
        return None
    message = session.scalar(
        select(Message)
        .where(
            Message.subscriber_id == subscriber_id,
            Message.sent_at.is_not(None),
            Message.sent_at >= now - within,
            or_(*asking),
        )
        .order_by(Message.sent_at.desc(), Message.id.desc())
        .limit(1)
    )
    return _asked(registry, message) if message is not None else None


THANKS = {
    "en": (
        "{brand}: Thank you, your answer is saved. No one reads these texts for "
        "emergencies. If your pain is severe or you notice a warning sign, call "
        "{emergency} now."
    ),
    "es": (
        "{brand}: Gracias, guardamos tu respuesta. Nadie lee estos mensajes para "
        "emergencias. Si tu dolor es fuerte o notas una senal de alarma, llama al "
        "{emergency} ahora."
    ),
}


@dataclass(frozen=True)
class QuestionDesk:
    """What reading a text as an answer needs: the campaigns (which steps ask), how long
    after a question a bare number still answers it, and the words of the thanks."""

    registry: Registry
    reply_within: timedelta = REPLY_WITHIN
    brand: str = "Lunara"

    def asked(self, session: Session, subscriber: Subscriber, now) -> Asked | None:
        return latest_question(session, self.registry, subscriber.id, now, self.reply_within)

    def thanks(self, locale: str, emergency: str) -> str:
        """The reply to an answer: it never repeats the value (anyone holding the phone
        reads it), and says these texts are not watched for emergencies."""
        lang = "es" if (locale or "").startswith("es") else "en"
        return to_gsm7(THANKS[lang].format(brand=self.brand, emergency=emergency))


def answer_by_text(
    session: Session, clock: Clock, asked: Asked, body: str, event: Event
) -> Answer | None:
    """Record the reply as the answer to `asked` when the whole text is one value of its
    scale; None (nothing recorded) otherwise."""
    value = read_reply(asked.question, body)
    if value is None:
        return None
    return record(session, clock, asked, value, VIA_TEXT, event_id=event.id)
