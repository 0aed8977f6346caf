"""What the read-only link pages (a lesson read online, a link's redirect) read of a
message and its person: only the columns they use, in one round trip, as plain values.

A click storm opens these pages by the thousand; loading both whole rows as ORM objects
(forty-odd columns, an identity map) cost more than the query. The values are the ones
campaigns.tracking.portal.lesson and campaigns.tracking.redirects.link_targets read, under
the same names, so a `Visit` of these stands in for one of ORM rows there. On
PostgreSQL the web processes read it on their event loop, the messages of many requests
in one query (page_visits_async, web/page_pool.py), without a thread or a session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
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


# The same read as PostgreSQL text, for many messages at once on a psycopg async
# connection (web/page_pool.py).
POSTGRES_SQL = str(
    _READ.where(Message.public_token == any_(bindparam("publics", type_=ARRAY(String)))).compile(
        dialect=psycopg_dialect()
    )
)


def page_visit(session: Session, public: str) -> Visit | None:
    """The message with this public token and its person, or None."""
    return _visit(session.execute(_READ.where(Message.public_token == public)).first())


async def page_visits_async(conn, publics: list[str]) -> dict[str, Visit]:
    """{public token: visit} of those of these messages that exist, in one query on a
    psycopg AsyncConnection to PostgreSQL."""
    cursor = await conn.execute(POSTGRES_SQL, {"publics": publics})
    return {row[5]: _visit(row) for row in await cursor.fetchall()}


def _visit(row) -> Visit | None:
    if row is None:
        return None
    return Visit(MessageFacts(*row[:6]), PersonFacts(*row[6:]))  # type: ignore[arg-type]
