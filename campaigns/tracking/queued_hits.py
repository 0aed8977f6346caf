"""Opens and clicks recorded after the answer: a hit as the web process took it down, and
the function that records it later, exactly once.

In a click storm the open pixel and the click redirect answer from the signed token alone
(campaigns.links.Signer proves the token is ours without the database) and hand a
`QueuedHit` to a durable queue (workers/hit_queue.py, a Redis list written before the
answer); a drainer records each with `record_hit`. What the machine-open filter judges
(method, user agent, purpose headers, the client's address for Apple's ranges) travels
with it, and it is judged as at `at`, the moment the request came, not when it is drained.

Exactly once: each hit carries a random id, stored as the event's provider_event_id with
provider "tracking", whose (provider, provider_event_id) key is unique. A hit delivered
twice (a drainer killed after its commit, before it removed the item) finds its event and
changes nothing. The message rows are locked first (as machine.lock does), so two
drainers cannot both miss the other's copy.
"""

from __future__ import annotations

import enum
import json
import secrets
from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import Event, Message, Subscriber
from campaigns.tracking import machine
from campaigns.tracking.portal import Visit, engage

PROVIDER = "tracking"


class Outcome(enum.StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    UNKNOWN_MESSAGE = "unknown_message"  # signed by us, but the message is gone
    ERASED = "erased"  # the person was erased since: nothing more is recorded of them


@dataclass(frozen=True)
class QueuedHit:
    token: str  # the message's public token, its signature already checked
    kind: str  # EventType.OPENED or CLICKED
    link: str  # machine.Hit.link: "o", "m", "l:<link id>"
    at: datetime  # when the request came
    method: str = "GET"
    user_agent: str = ""
    purpose: str = ""
    client: str | None = None  # judged against Apple's ranges; never stored in the event
    detail: dict = field(default_factory=dict)  # the event's payload
    id: str = field(default_factory=lambda: "hit:" + secrets.token_urlsafe(12))
    attempts: int = 0  # times the drainer failed to record it (workers/hit_queue.py)

    @classmethod
    def of(cls, hit: machine.Hit, token: str, at: datetime, detail: dict) -> QueuedHit:
        return cls(
            token=token,
            kind=hit.kind,
            link=hit.link,
            at=at,
            method=hit.method,
            user_agent=hit.user_agent,
            purpose=hit.purpose,
            client=hit.client,
            detail=detail,
        )

    def machine_hit(self) -> machine.Hit:
        return machine.Hit(
            self.kind, self.link, self.method, self.user_agent, self.purpose, self.client
        )

    def dumps(self) -> str:
        # Not dataclasses.asdict: its deep copy was a sixth of the open pixel's time.
        data = {f.name: getattr(self, f.name) for f in _FIELDS}
        data["at"] = self.at.isoformat()
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> QueuedHit:
        """Raises ValueError (or KeyError, TypeError) for anything that is not one."""
        data = json.loads(raw)
        data["at"] = datetime.fromisoformat(data["at"])
        return cls(**data)


_FIELDS = fields(QueuedHit)


def record_hits(
    session: Session, clock: Clock, hits: list[QueuedHit], rules: machine.Rules
) -> list[Outcome]:
    """Record queued hits as the pages would have (portal.engage), each hit id once, in
    the order they came. A batch: their messages are read and locked in one statement
    (in id order, so two drainers cannot deadlock) and the ids seen before in another."""
    tokens = sorted({h.token for h in hits})
    found = session.execute(
        select(Message, Subscriber)
        .join(Subscriber, Subscriber.id == Message.subscriber_id)
        .where(Message.public_token.in_(tokens))
        .order_by(Message.id)
        .with_for_update(of=Message)
    ).all()
    visits = {m.public_token: Visit(m, sub) for m, sub in found}
    seen = set(
        session.scalars(
            select(Event.provider_event_id).where(
                Event.provider == PROVIDER, Event.provider_event_id.in_([h.id for h in hits])
            )
        )
    )
    outcomes = []
    for hit in sorted(hits, key=lambda h: h.at):
        visit = visits.get(hit.token)
        if visit is None:
            outcomes.append(Outcome.UNKNOWN_MESSAGE)
        elif visit.subscriber.erased_at is not None:
            outcomes.append(Outcome.ERASED)
        elif hit.id in seen:
            outcomes.append(Outcome.DUPLICATE)
        else:
            seen.add(hit.id)  # the same hit twice in one batch counts once
            engage(
                session,
                clock,
                visit,
                hit.machine_hit(),
                rules,
                dict(hit.detail),
                at=hit.at,
                event_id=hit.id,
                locked=True,
            )
            outcomes.append(Outcome.RECORDED)
    return outcomes


def record_hit(session: Session, clock: Clock, hit: QueuedHit, rules: machine.Rules) -> Outcome:
    return record_hits(session, clock, [hit], rules)[0]
