"""Provider events onto our records: the neutral event every provider's webhook is
parsed into, and the one function that decides what an event does to a message, an
address or a subscriber.

    provider webhook module (workers/providers/*_webhook.py: signature checked, payload
    parsed, the provider's names mapped onto EventType) ─► NormalizedEvent ─► record_event:
         1. find our message (by our opaque reference, else the provider's id), on the
            channel the provider carries
         2. store the Event with its raw payload; (provider, provider_event_id) is
            unique, so a redelivered event stops here and changes nothing
         3. move Message.status forward only (may_advance)
         4. bounce / complaint / a drop about the address / the recipient opted out at
            the provider: suppress the address; unsubscribe: consent revoked for that channel

Nothing here names a provider: what only a provider can tell (this drop is about the
address; this error code means the person texted STOP) arrives as a neutral field on
NormalizedEvent. Texts a person sends us are campaigns.tracking.inbound.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.audience.opt_outs import unsubscribe
from campaigns.audience.subscribers import address_for
from campaigns.audience.suppression import Cause, suppress
from campaigns.clock import Clock
from campaigns.models import Event, Message, Subscriber
from campaigns.reasons import Reason
from campaigns.redact import mask
from campaigns.sequences.waits import wake
from campaigns.states import EventType, MessageStatus, may_advance
from campaigns.text import clean_text, plain_id
from campaigns.tracking.machine import Why

log = logging.getLogger(__name__)
E = EventType

# What each event says about the message. Any event from the provider proves the
# provider has the message, which settles an unconfirmed one (invariant 2); engagement
# implies delivery. Applied only upwards (may_advance).
MESSAGE_STATUS = {
    E.QUEUED: MessageStatus.SENT,
    E.DEFERRED: MessageStatus.SENT,
    E.SENT: MessageStatus.SENT,
    E.DELIVERED: MessageStatus.DELIVERED,
    E.OPENED: MessageStatus.DELIVERED,
    E.CLICKED: MessageStatus.DELIVERED,
    E.COMPLAINED: MessageStatus.DELIVERED,
    E.UNSUBSCRIBED: MessageStatus.DELIVERED,
    E.BOUNCED: MessageStatus.BOUNCED,
    E.DROPPED: MessageStatus.FAILED,
    E.FAILED: MessageStatus.FAILED,
}

# Events that stop all further sends to the address (Suppression.reason). A drop counts
# only when the provider says it was about the address (NormalizedEvent.address_at_fault).
SUPPRESS_REASON = {E.BOUNCED: Cause.BOUNCE, E.DROPPED: Cause.DROPPED, E.COMPLAINED: Cause.COMPLAINT}
# The recipient opted out at the provider or carrier: the same as a STOP texted to us.
OPTED_OUT_REASON = Cause.STOP
# Why an event the provider flagged as a machine's is left out (machine.Why.PROVIDER).
PROVIDER_FLAG = Why.PROVIDER


@dataclass
class NormalizedEvent:
    """One provider event in our terms, as a provider's webhook module parses it."""

    provider: str
    channel: str  # what the provider carries ("email", "sms"): it never touches another's message
    provider_event_id: str  # unique per provider: a redelivery repeats it
    type: str  # EventType
    reference: str | None  # our Message.public_token, when the provider echoes it
    provider_message_id: str | None
    occurred_at: datetime
    error_code: str | None = None
    # A drop the provider attributes to the address itself (it bounced before, it is
    # invalid, its owner complained), not to our message: the address is suppressed.
    address_at_fault: bool = False
    # The recipient opted out at the provider or their carrier (an SMS STOP the provider
    # saw first): the address is suppressed as if they had texted STOP to us.
    recipient_opted_out: bool = False
    # The provider thinks a machine did it (an open by a mail scanner or a privacy proxy).
    automated: bool = False
    raw: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Ids are short printable ASCII and no text holds a control character, or this
        raises UncleanText: a webhook module then skips the item (or refuses the request)
        rather than failing the whole batch in the database (invariant 12)."""
        plain_id(self.provider_event_id, "provider_event_id", max_len=120)
        if self.reference:
            plain_id(self.reference, "reference", max_len=64)
        if self.provider_message_id:
            plain_id(self.provider_message_id, "provider_message_id", max_len=100)
        if self.error_code:
            clean_text(self.error_code, "error_code", max_len=200, multiline=True)


class Recorded(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    UNKNOWN_MESSAGE = "unknown_message"


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
        automated=ev.automated,
        automated_reason=PROVIDER_FLAG if ev.automated else None,
    )
    # Insert first, act after: the unique (provider, provider_event_id) key makes a
    # redelivered or concurrently delivered event lose here, before it changes anything.
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return Recorded.DUPLICATE
    if msg is None:
        log.warning(
            "%s event %s (%s) for an unknown message; stored, nothing else done",
            ev.provider,
            ev.provider_event_id,
            ev.type,
        )
        return Recorded.UNKNOWN_MESSAGE
    log.info(
        "%s %s event for message %s",
        ev.provider,
        ev.type,
        msg.id,
        extra={
            "message_id": msg.id,
            "provider": ev.provider,
            "provider_message_id": ev.provider_message_id,
            "provider_event_id": ev.provider_event_id,
            "event": ev.type,
        },
    )
    _advance(msg, ev, now)
    _protect_address(session, clock, msg, ev)
    # A cursor waiting for this open or click (`wait_for`) is due now.
    wake(session, now, msg.enrollment_id, msg.step_key, ev.type, automated=ev.automated)
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
            query.where(
                Message.provider == ev.provider,
                Message.provider_message_id == ev.provider_message_id,
            ).limit(2)
        ).all()
    else:
        found = []
    # Ambiguous ids (a batch id shared by many) and the wrong channel count as unknown.
    if len(found) != 1 or found[0].channel != ev.channel:
        return None
    return found[0]


def _advance(msg: Message, ev: NormalizedEvent, now: datetime) -> None:
    target = MESSAGE_STATUS.get(ev.type)
    if target is None or not may_advance(msg.status, target):
        return
    msg.status = target
    detail = f", error {ev.error_code}" if ev.error_code else ""
    msg.reason_code = Reason.WEBHOOK
    msg.reason = Reason.WEBHOOK.text(provider=ev.provider, event=ev.type, detail=detail)
    if ev.error_code and target in (MessageStatus.FAILED, MessageStatus.BOUNCED):
        msg.last_error = f"{ev.provider} {ev.type}: {ev.error_code}"
    # A webhook can beat the send task's own bookkeeping (or replace it after a crash):
    # fill in what the send would have recorded, and drop the lease so a late result
    # from that task is ignored rather than written over this newer state.
    msg.provider = msg.provider or ev.provider
    msg.provider_message_id = msg.provider_message_id or ev.provider_message_id
    if target in (MessageStatus.SENT, MessageStatus.DELIVERED) and msg.sent_at is None:
        msg.sent_at = ev.occurred_at
    msg.lease_token = None
    msg.lease_until = None
    msg.updated_at = now


def _protect_address(session: Session, clock: Clock, msg: Message, ev: NormalizedEvent) -> None:
    """Applied even when the status did not move: a bounce after a drop still counts."""
    reason = SUPPRESS_REASON.get(ev.type)
    if ev.type == E.DROPPED and not ev.address_at_fault:
        reason = None  # dropped for our own fault (a bad header, content): the address is fine
    if ev.recipient_opted_out:
        reason = OPTED_OUT_REASON
    if reason is None and ev.type != E.UNSUBSCRIBED:
        return
    subscriber = session.get(Subscriber, msg.subscriber_id)
    # The subscriber's current address is the one the send path checks (invariant 4).
    address = address_for(subscriber, msg.channel)
    if not address:
        return
    if ev.type == E.UNSUBSCRIBED:
        unsubscribe(
            session,
            clock,
            subscriber,
            channels=(msg.channel,),
            source=ev.provider,
            evidence={"provider_event_id": ev.provider_event_id},
        )
    else:
        suppress(session, clock, msg.channel, address, reason, ev.provider)
    log.info(
        "%s %s: %s suppressed (%s)",
        ev.provider,
        ev.type,
        mask(address),
        reason or Cause.UNSUBSCRIBED,
    )
