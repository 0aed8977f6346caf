"""What a subscriber can do from a link in a message: read it online, change
preferences, unsubscribe (asking the care team to call is campaigns.care.contact_queue).

Links name a message by its signed opaque token (campaigns.links), never by id or address.
Looking at a page (GET) never changes a subscriber's state, because mail scanners fetch
every link in a message; it only records an engagement event, judged a person's or a
machine's by campaigns.tracking.machine. Every change is a POST (RFC 8058 one-click
unsubscribe included).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.consent import has_consent
from campaigns.audience.emergency import country_of
from campaigns.audience.opt_outs import resubscribe, unsubscribe
from campaigns.audience.subscribers import address_for
from campaigns.audience.suppression import suppression_for
from campaigns.clock import Clock
from campaigns.content.rendering import Recipient, RenderedEmail, Renderer
from campaigns.links import BadToken, Links, Signer, links_for
from campaigns.models import ConsentRecord, Event, Message, Subscriber
from campaigns.sequences.campaign import Campaign, DefinitionError, Step
from campaigns.sequences.registry import Registry
from campaigns.sequences.waits import wake
from campaigns.states import CHANNELS, Channel, ConsentAction, EventType
from campaigns.tracking import machine


class NotFound(LookupError):
    """No message for this token (forged, mistyped or from another installation)."""


@dataclass
class Visit:
    message: Message
    subscriber: Subscriber


def resolve(session: Session, signer: Signer, purpose: str, token: str) -> Visit:
    try:
        public = signer.unsign(purpose, token)
    except BadToken:
        raise NotFound("this link is not valid") from None
    # One round trip for both: a storm of clicks opens these pages by the thousand.
    found = session.execute(
        select(Message, Subscriber)
        .join(Subscriber, Subscriber.id == Message.subscriber_id)
        .where(Message.public_token == public)
    ).first()
    if found is None:
        raise NotFound("this link is not valid")
    return Visit(*found)


def record_engagement(
    session: Session,
    clock: Clock,
    visit: Visit,
    kind: str,
    detail: dict,
    *,
    why: str | None = None,
    at: datetime | None = None,
    event_id: str | None = None,
) -> None:
    """An event from a link page; `why` it was judged a machine's (machine.Why), if it was.
    `at`: when the request came, if earlier than now (a hit recorded from the queue,
    campaigns.tracking.queued_hits); `event_id`: its unique id there."""
    now = clock.now()
    session.add(
        Event(
            message_id=visit.message.id,
            subscriber_id=visit.subscriber.id,
            type=kind,
            provider="tracking",
            provider_event_id=event_id,
            occurred_at=at or now,
            received_at=now,
            payload=detail,
            automated=why is not None,
            automated_reason=why,
        )
    )
    # A cursor waiting for this open or click (`wait_for`) is due now.
    wake(
        session,
        now,
        visit.message.enrollment_id,
        visit.message.step_key,
        kind,
        automated=why is not None,
    )


def engage(
    session: Session,
    clock: Clock,
    visit: Visit,
    hit: machine.Hit,
    rules: machine.Rules,
    detail: dict,
    *,
    at: datetime | None = None,
    event_id: str | None = None,
    locked: bool = False,
) -> str | None:
    """Record an open or click, judged a person's or a machine's; the reason, if a machine's.
    `at`, `event_id`: as record_engagement's (judged as at `at`, when the request came);
    `locked`: the caller has locked the message row already (machine.lock). Nothing is
    recorded of an erased person (erasure keeps their messages, so their links still
    resolve)."""
    if visit.subscriber.erased_at is not None:
        return None
    if not locked:
        machine.lock(session, visit.message)
        if event_id is not None and _recorded(session, event_id):
            # A push that reached Redis after the page gave up on it, already drained:
            # the same hit (the lock above orders this against the drainer's batch).
            return None
    why = machine.judge(session, visit.message, hit, at or clock.now(), rules)
    if why is not None:
        # What the judgement saw, kept beside it (never the client's address).
        detail = {**detail, "agent": hit.user_agent[:200], "method": hit.method}
    record_engagement(session, clock, visit, hit.kind, detail, why=why, at=at, event_id=event_id)
    session.flush()
    return why


def _recorded(session: Session, event_id: str) -> bool:
    found = select(Event.id).where(
        Event.provider == "tracking", Event.provider_event_id == event_id
    )
    return session.scalar(found) is not None


def lesson(
    registry: Registry,
    renderer: Renderer,
    signer: Signer,
    base_url: str,
    visit: Visit,
    *,
    online: bool = False,
) -> RenderedEmail:
    """The step's email as the subscriber would have received it; `online`: as the 'read
    online' page shows it (online_links)."""
    return renderer.email(*lesson_parts(registry, signer, base_url, visit, online=online))


def lesson_parts(
    registry: Registry, signer: Signer, base_url: str, visit: Visit, *, online: bool = False
) -> tuple[Campaign, Step, Recipient, Links]:
    """What the message's email is rendered from (Renderer.email's arguments, or
    campaigns.content.shapes'): the running revision, the step as the arm the person
    got, the person as they are now and the message's links; NotFound when the lesson is
    no longer deployed."""
    try:
        campaign = registry.get(visit.message.campaign_key)
    except (LookupError, DefinitionError):  # gone, or its file is broken: not a server error
        raise NotFound("this lesson is no longer available") from None
    step = campaign.step(visit.message.step_key)
    if step is None:
        raise NotFound("this lesson is no longer available")
    step = step.with_variant(visit.message.variant)  # the arm the person got
    links = links_for(base_url, signer, visit.message.public_token, step.answer_values)
    recipient = Recipient(
        visit.subscriber.first_name, visit.subscriber.locale, country_of(visit.subscriber)
    )
    return campaign, step, recipient, online_links(links) if online else links


def online_links(links: Links) -> Links:
    """A lesson read online links to itself nowhere and loads no open pixel (it is being
    read, not opened in a mailbox): the layouts leave out a link that is empty."""
    return replace(links, read_online="", open="")


def reachable(subscriber: Subscriber) -> tuple[str, ...]:
    """The channels the person has an address for: all a page may offer to stop."""
    return tuple(c for c in CHANNELS if address_for(subscriber, c))


def channels_to_stop(visit: Visit, scope: str | None) -> tuple[str, ...]:
    """What an unsubscribe stops: `scope` 'email', 'sms' or 'all' (the page's buttons), or
    None, the channel the link came in (RFC 8058's one-click POST from an email stops
    email; a text's link stops texts). Only channels the person has; one they lack (a
    tampered form) stops what they do have, never nothing."""
    return stopped_by(reachable(visit.subscriber), visit.message.channel, scope)


def stopped_by(has: tuple[str, ...], via: str, scope: str | None) -> tuple[str, ...]:
    """channels_to_stop, for a person with channels `has` and a link that came by `via`."""
    if scope == "all":
        return has
    wanted = tuple(c for c in has if c == (scope or via))
    return wanted or has


def unsubscribe_from_link(
    session: Session, clock: Clock, visit: Visit, scope: str | None, evidence: dict
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Stop what `scope` names (channels_to_stop), as STOP or a preference change does
    (campaigns.audience.opt_outs). Returns (the channels stopped, those still on)."""
    channels = channels_to_stop(visit, scope)
    unsubscribe(
        session, clock, visit.subscriber, channels=channels, source="link", evidence=evidence
    )
    # Attributed to the message the link came in, so the step's funnel counts it.
    record_engagement(
        session,
        clock,
        visit,
        EventType.UNSUBSCRIBED,
        {"scope": scope or "one-click", "channels": list(channels), "via": "link"},
    )
    still = tuple(
        c
        for c in reachable(visit.subscriber)
        if c not in channels and has_consent(session, visit.subscriber.id, c)
    )
    return channels, still


@dataclass
class Preferences:
    email: bool
    sms: bool
    has_email: bool
    has_phone: bool


def preferences(session: Session, subscriber: Subscriber) -> Preferences:
    return Preferences(
        email=bool(subscriber.email) and has_consent(session, subscriber.id, Channel.EMAIL),
        sms=bool(subscriber.phone) and has_consent(session, subscriber.id, Channel.SMS),
        has_email=bool(subscriber.email),
        has_phone=bool(subscriber.phone),
    )


def update_preferences(
    session: Session,
    clock: Clock,
    subscriber: Subscriber,
    *,
    email: bool,
    sms: bool,
    evidence: dict,
) -> Preferences:
    current = preferences(session, subscriber)
    stop = tuple(
        c
        for c, want, now in ((Channel.EMAIL, email, current.email), (Channel.SMS, sms, current.sms))
        if now and not want
    )
    if stop:
        unsubscribe(
            session, clock, subscriber, channels=stop, source="preferences", evidence=evidence
        )
    if email and not current.email:
        # An explicit new consent from the mailbox the link came to; an opt-out is
        # lifted, a bounce or complaint is not.
        resubscribe(session, clock, subscriber, Channel.EMAIL, "preferences", evidence)
    if sms and not current.sms:
        _texts_back_on(session, clock, subscriber, evidence)
    session.flush()
    return preferences(session, subscriber)


# Suppressions of a phone that this page made itself, and so may take back.
WEB_SOURCES = ("preferences", "link")


def _texts_back_on(session: Session, clock: Clock, subscriber: Subscriber, evidence: dict) -> None:
    """The page proves the mailbox, not the phone (invariant 11). Texts come back on only
    for a phone that consented before and that this page itself switched off; a phone that
    never proved itself is asked to reply YES first; one that said STOP, to us or to its
    carrier, is never texted again from here: only START from that phone lifts it."""
    if not subscriber.phone:
        return
    blocked = suppression_for(session, Channel.SMS, subscriber.phone)
    if blocked is not None and blocked.source not in WEB_SOURCES:
        return
    proven = session.scalar(
        select(ConsentRecord.id)
        .where(
            ConsentRecord.subscriber_id == subscriber.id,
            ConsentRecord.channel == Channel.SMS,
            ConsentRecord.action == ConsentAction.GRANTED,
        )
        .limit(1)
    )
    if proven is None:
        subscriber.sms_confirmation_requested_at = clock.now()  # the YES text goes out
        return
    resubscribe(session, clock, subscriber, Channel.SMS, "preferences", evidence)
