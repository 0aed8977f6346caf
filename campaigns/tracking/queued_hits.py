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

A batch at a time (`record_hits`): the drainer gets hits by the hundred, and recording
each as the page does (portal.engage: judge, add the event, wake, flush) cost about a
millisecond of CPU per hit, on a machine whose cores serve the click storm. So a batch
is judged with what judge would read of its messages (their last delivery report, their
recent clicks) read in two statements (machine.histories), kept up to date with the
batch's own clicks as it goes, so that a click seconds after an open or another click of
the same batch is judged as if those were recorded before it; then one INSERT of its
events, one UPDATE of the earlier clicks a burst marked, and the waits its people's opens
and clicks end woken (waits.wake_all). tests/test_hit_batches.py holds it to the same
rows as the hits recorded one by one; bench/hit_drain.py measures both.
"""

from __future__ import annotations

import enum
import json
import secrets
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.db import binary_unnest, id_in
from campaigns.models import Event, Message, Subscriber
from campaigns.sequences.waits import wake_all
from campaigns.states import EventType
from campaigns.tracking import machine

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
    """Record queued hits as the pages would have one by one (portal.engage), each hit id
    once, in the order they came, in a few statements for the whole batch: their messages
    are read and locked in one (in id order, so two drainers cannot deadlock), the ids
    seen before in another, then record_batch."""
    tokens = sorted({h.token for h in hits})
    targets = {
        t.public_token: t
        for t in session.execute(
            select(
                Message.id,
                Message.public_token,
                Message.enrollment_id,
                Message.step_key,
                Message.sent_at,
                Message.subscriber_id,
                Subscriber.erased_at,
            )
            .join(Subscriber, Subscriber.id == Message.subscriber_id)
            .where(id_in(session, Message.public_token, tokens))
            .order_by(Message.id)
            .with_for_update(of=Message)
        )
    }
    seen = set(
        session.scalars(
            select(Event.provider_event_id).where(
                Event.provider == PROVIDER,
                id_in(session, Event.provider_event_id, [h.id for h in hits]),
            )
        )
    )
    outcomes, todo = [], []
    for hit in sorted(hits, key=lambda h: h.at):
        target = targets.get(hit.token)
        if target is None:
            outcomes.append(Outcome.UNKNOWN_MESSAGE)
        elif target.erased_at is not None:
            outcomes.append(Outcome.ERASED)
        elif hit.id in seen:
            outcomes.append(Outcome.DUPLICATE)
        else:
            seen.add(hit.id)  # the same hit twice in one batch counts once
            todo.append((hit, target))
            outcomes.append(Outcome.RECORDED)
    if todo:
        record_batch(session, clock.now(), todo, rules)
    return outcomes


def record_batch(session: Session, now: datetime, todo: list, rules: machine.Rules) -> None:
    """Each (hit, its message's row) of `todo`, in order, judged and recorded as
    portal.engage would one after the other: one read of what judging needs
    (machine.histories), kept up to date with the batch's own clicks; one INSERT of the
    events; one UPDATE of the earlier clicks a burst marked; the waits they end woken."""
    verdicts = [machine.by_request(hit.machine_hit(), rules) for hit, _ in todo]
    timed = [(hit, t) for (hit, t), why in zip(todo, verdicts, strict=True) if why is None]
    found = machine.histories(
        session,
        {t.id: t.sent_at for _, t in timed},
        {t.id for hit, t in timed if hit.kind == EventType.CLICKED},
        min((hit.at for hit, _ in timed), default=now) - timedelta(seconds=rules.burst_seconds),
        rules,
    )
    rows, marked, wakes = [], [], []
    for (hit, target), why in zip(todo, verdicts, strict=True):
        history = found.get(target.id)
        if why is None:
            why, burst = machine.by_timing(history, hit.machine_hit(), hit.at, rules)
            marked += burst
        row = event_row(hit, target, why, now)
        rows.append(row)
        if history is not None and hit.kind == EventType.CLICKED:
            history.clicks.append(
                machine.Click(
                    machine.link_in(row["payload"]),
                    hit.at,
                    row["automated"],
                    row["automated_reason"],
                    row=row,
                )
            )
        if why is None:
            wakes.append((target.enrollment_id, target.step_key, hit.kind))
    for click in marked:  # the batch's own rows are inserted marked
        if click.row is not None:
            click.row["automated"], click.row["automated_reason"] = True, machine.Why.BURST
    insert_events(session, rows)
    ids = [c.id for c in marked if c.id is not None]
    if ids:
        session.execute(
            update(Event)
            .where(id_in(session, Event.id, ids))
            .values(automated=True, automated_reason=machine.Why.BURST)
            .execution_options(synchronize_session=False)
        )
    wake_all(session, now, wakes)


# The columns of an event a hit adds, as PostgreSQL's arrays of them (insert_events).
_EVENT_COLUMNS = {
    "message_id": "int8",
    "subscriber_id": "int8",
    "type": "text",
    "provider": "text",
    "provider_event_id": "text",
    "occurred_at": "timestamptz",
    "received_at": "timestamptz",
    "payload": "text",
    "automated": "bool",
    "automated_reason": "text",
}


def insert_events(session: Session, rows: list[dict]) -> None:
    """One INSERT of the batch's events: over arrays on PostgreSQL (psycopg's executemany
    would send a statement per row), an executemany elsewhere."""
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(Event), rows)
        return
    # JSON as the JSON type writes it; the reason as its text, not the enum.
    arrays = [
        {**r, "payload": json.dumps(r["payload"]), "automated_reason": _text(r["automated_reason"])}
        for r in rows
    ]
    source, params = binary_unnest(_EVENT_COLUMNS, arrays)
    columns = ", ".join(_EVENT_COLUMNS)
    values = columns.replace("payload", "payload::json")
    session.connection().exec_driver_sql(
        f"INSERT INTO events ({columns}) SELECT {values} FROM {source} AS u({columns})", params
    )


def _text(reason: str | None) -> str | None:
    return None if reason is None else str(reason)


def event_row(hit: QueuedHit, target, why: str | None, now: datetime) -> dict:
    """The event portal.record_engagement adds for the hit, as a row to insert."""
    if hit.at.tzinfo is None:  # as the DateTime column would refuse it
        raise ValueError("naive datetime given; the domain works in aware UTC")
    detail = dict(hit.detail)
    if why is not None:
        # What the judgement saw, kept beside it (never the client's address).
        detail = {**detail, "agent": hit.user_agent[:200], "method": hit.method}
    return {
        "message_id": target.id,
        "subscriber_id": target.subscriber_id,
        "type": hit.kind,
        "provider": PROVIDER,
        "provider_event_id": hit.id,
        "occurred_at": hit.at,
        "received_at": now,
        "payload": detail,
        "automated": why is not None,
        "automated_reason": why,
    }


def record_hit(session: Session, clock: Clock, hit: QueuedHit, rules: machine.Rules) -> Outcome:
    return record_hits(session, clock, [hit], rules)[0]
