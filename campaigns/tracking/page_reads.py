"""What the read-only link pages (a lesson read online, a link's redirect) read of a
message and its person: only the columns they use, in one round trip, as plain values.

A click storm opens these pages by the thousand; loading both whole rows as ORM objects
(forty-odd columns, an identity map) cost more than the query. The values are the ones
campaigns.tracking.portal.lesson and campaigns.tracking.redirects.link_targets read, under
the same names, so a `Visit` of these stands in for one of ORM rows there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Message, Subscriber
from campaigns.tracking.portal import Visit


@dataclass(frozen=True)
class MessageFacts:
    id: int
    campaign_key: str
    step_key: str
    variant: str | None
    channel: str
    public_token: str


@dataclass(frozen=True)
class PersonFacts:
    first_name: str | None
    locale: str | None
    phone: str | None  # with timezone: the person's country (emergency.country_of)
    timezone: str | None
    erased_at: datetime | None


_READ = select(
    Message.id,
    Message.campaign_key,
    Message.step_key,
    Message.variant,
    Message.channel,
    Message.public_token,
    Subscriber.first_name,
    Subscriber.locale,
    Subscriber.phone,
    Subscriber.timezone,
    Subscriber.erased_at,
).join(Subscriber, Subscriber.id == Message.subscriber_id)


def page_visit(session: Session, public: str) -> Visit | None:
    """The message with this public token and its person, or None."""
    row = session.execute(_READ.where(Message.public_token == public)).first()
    if row is None:
        return None
    return Visit(MessageFacts(*row[:6]), PersonFacts(*row[6:]))  # type: ignore[arg-type]
