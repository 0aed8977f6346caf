"""How long raw detail is kept, and the prune that ends it (a daily task, `drip retention
run`).

Events: provider receipts and tracking hits (queued, sent, delivered, deferred, bounced,
dropped, failed, opened, clicked) older than the event retention are deleted. Before an
opened or clicked event goes, it is added into event_rollups (one row per message, kind,
machine flag and link), which campaigns.engagement reads beside the raw events: every
report and every branch condition counts the same before and after. Events a person made
(inbound texts, unsubscribes, complaints, call requests) and any event an inbox item or an
answer points at are never deleted here: they are that person's history.

Messages: rows are never deleted (the unique (enrollment, step, channel) key is what keeps
a step from being sent twice). A finished message older than the message retention loses
its provider error text (last_error) and its lease; status, reason, times, provider and
provider message id stay.

Bounded batches, each its own transaction: one batch rolls up and deletes the same ids, so
an interrupted run leaves nothing half-counted and a second run finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, distinct, exists, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.db import id_in
from campaigns.models import Answer, Event, EventRollup, InboxItem, Message
from campaigns.states import TERMINAL, EventType

E = EventType
# What retention deletes: receipts and tracking hits, not what a person said or asked.
PRUNED = (
    E.QUEUED,
    E.SENT,
    E.DELIVERED,
    E.DEFERRED,
    E.BOUNCED,
    E.DROPPED,
    E.FAILED,
    E.OPENED,
    E.CLICKED,
)
# Of those, what reports and conditions read (campaigns.engagement): rolled up first.
ROLLED = (E.OPENED, E.CLICKED)


@dataclass(frozen=True)
class Policy:
    event_days: int  # 0: keep events forever
    message_days: int  # 0: keep message detail forever
    batch_size: int = 5000

    def cutoffs(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        def before(days: int) -> datetime | None:
            return now - timedelta(days=days) if days else None

        return before(self.event_days), before(self.message_days)


@dataclass
class Batch:
    """One committed batch: what it deleted, added into rollups, and cleared."""

    events_deleted: int = 0
    events_rolled: int = 0
    rollup_rows: int = 0
    messages_cleared: int = 0


@dataclass
class Outcome:
    event_cutoff: datetime | None
    message_cutoff: datetime | None
    dry_run: bool
    events_deleted: int = 0  # on a dry run: would be
    events_rolled: int = 0
    messages_rolled: int = 0  # dry run only: messages whose opens/clicks would be rolled
    rollup_rows: int = 0
    messages_cleared: int = 0
    batches: int = 0
    seconds: float = 0.0

    def add(self, batch: Batch) -> None:
        self.events_deleted += batch.events_deleted
        self.events_rolled += batch.events_rolled
        self.rollup_rows += batch.rollup_rows
        self.messages_cleared += batch.messages_cleared
        self.batches += 1


def _old_events(cutoff: datetime):
    return (
        Event.occurred_at < cutoff,
        Event.type.in_(PRUNED),
        ~exists().where(InboxItem.event_id == Event.id),
        ~exists().where(Answer.event_id == Event.id),
    )


def _old_messages(cutoff: datetime):
    return (
        Message.status.in_(TERMINAL),
        Message.updated_at < cutoff,
        or_(
            Message.last_error.is_not(None),
            Message.lease_token.is_not(None),
            Message.lease_until.is_not(None),
        ),
    )


def _detail_key(reason: str, route: str, link: str, url: str) -> str:
    return hashlib.sha256("\x1f".join((reason, route, link, url)).encode()).hexdigest()


def _roll_up(session: Session, ids: list[int]) -> tuple[int, int]:
    """Add the opened/clicked events among `ids` into event_rollups; (events, rows)."""
    route = Event.payload["route"].as_string()
    link = Event.payload["link"].as_string()
    url = Event.payload["url"].as_string()
    detail = (Event.automated_reason, route, link, url)
    groups = session.execute(
        select(
            Event.message_id,
            Event.type,
            Event.automated,
            *detail,
            func.count(),
            func.min(Event.occurred_at),
            func.max(Event.occurred_at),
        )
        .where(id_in(session, Event.id, ids), Event.type.in_(ROLLED), Event.message_id.is_not(None))
        .group_by(Event.message_id, Event.type, Event.automated, *detail)
    ).all()
    if not groups:
        return 0, 0
    rows = []
    for message_id, kind, automated, why, via, link_id, target, n, first, last in groups:
        parts = (why or "", via or "", link_id or "", target or "")
        rows.append(
            {
                "message_id": message_id,
                "type": kind,
                "automated": bool(automated),
                "automated_reason": parts[0],
                "route": parts[1],
                "link": parts[2],
                "url": parts[3],
                "detail_key": _detail_key(*parts),
                "events": n,
                "first_at": first,
                "last_at": last,
            }
        )
    postgres = session.get_bind().dialect.name == "postgresql"
    stmt = (pg_insert if postgres else sqlite_insert)(EventRollup)
    # Scalar min/max: least/greatest on PostgreSQL, two-argument min/max on SQLite.
    earlier, later = (func.least, func.greatest) if postgres else (func.min, func.max)
    stmt = stmt.on_conflict_do_update(
        index_elements=["message_id", "type", "automated", "detail_key"],
        set_={
            "events": EventRollup.events + stmt.excluded.events,
            "first_at": earlier(EventRollup.first_at, stmt.excluded.first_at),
            "last_at": later(EventRollup.last_at, stmt.excluded.last_at),
        },
    )
    session.execute(stmt, rows)
    return sum(r["events"] for r in rows), len(rows)


# Each run walks the old rows once, in key order, from where its last batch ended: a
# batch that started from the beginning again would step over every row the batches
# before it deleted (dead until vacuum), and take longer each time.


def _event_batch(session: Session, cutoff: datetime, size: int, after) -> tuple[Batch, object]:
    query = select(Event.id, Event.occurred_at).where(*_old_events(cutoff))
    if after is not None:
        query = query.where(tuple_(Event.occurred_at, Event.id) > tuple_(*after))
    found = session.execute(query.order_by(Event.occurred_at, Event.id).limit(size)).all()
    if not found:
        return Batch(), after
    ids = [row.id for row in found]
    rolled, rows = _roll_up(session, ids)
    deleted = session.execute(delete(Event).where(id_in(session, Event.id, ids))).rowcount
    last = found[-1]
    return Batch(events_deleted=deleted, events_rolled=rolled, rollup_rows=rows), (
        last.occurred_at,
        last.id,
    )


def _message_batch(session: Session, cutoff: datetime, size: int, after) -> tuple[Batch, object]:
    query = select(Message.id).where(*_old_messages(cutoff))
    if after is not None:
        query = query.where(Message.id > after)
    ids = list(session.scalars(query.order_by(Message.id).limit(size)))
    if not ids:
        return Batch(), after
    cleared = session.execute(
        update(Message)
        .where(id_in(session, Message.id, ids))
        .values(last_error=None, lease_token=None, lease_until=None)
    ).rowcount
    return Batch(messages_cleared=cleared), ids[-1]


def plan(session: Session, clock: Clock, policy: Policy) -> Outcome:
    """What a run would do now, changing nothing."""
    event_cutoff, message_cutoff = policy.cutoffs(clock.now())
    out = Outcome(event_cutoff, message_cutoff, dry_run=True)
    if event_cutoff is not None:
        old = _old_events(event_cutoff)
        out.events_deleted = session.scalar(select(func.count()).select_from(Event).where(*old))
        out.events_rolled, out.messages_rolled = session.execute(
            select(func.count(), func.count(distinct(Event.message_id))).where(
                *old, Event.type.in_(ROLLED), Event.message_id.is_not(None)
            )
        ).one()
    if message_cutoff is not None:
        out.messages_cleared = session.scalar(
            select(func.count()).select_from(Message).where(*_old_messages(message_cutoff))
        )
    return out


def prune(
    session: Session,
    clock: Clock,
    policy: Policy,
    on_batch: Callable[[Session, Batch], None] | None = None,
    max_batches: int | None = None,
) -> Outcome:
    """Roll up, then delete old events; then clear old messages' detail. Commits after
    each batch (`on_batch` runs inside the batch's transaction, before its commit: the
    place for an audit entry). `max_batches` stops early (a test of an interrupted run)."""
    started = time.monotonic()
    event_cutoff, message_cutoff = policy.cutoffs(clock.now())
    out = Outcome(event_cutoff, message_cutoff, dry_run=False)
    steps = [
        (step, cutoff)
        for step, cutoff in ((_event_batch, event_cutoff), (_message_batch, message_cutoff))
        if cutoff is not None
    ]
    for step, cutoff in steps:
        after = None
        while max_batches is None or out.batches < max_batches:
            batch, after = step(session, cutoff, policy.batch_size, after)
            if not (batch.events_deleted or batch.messages_cleared):
                session.rollback()
                break
            if on_batch is not None:
                on_batch(session, batch)
            session.commit()
            out.add(batch)
    out.seconds = time.monotonic() - started
    return out
