"""Claiming due steps into the outbox, and releasing retries and deferred texts.

The enrollment row is the cursor: `next_step_key` and `next_due_at`. The tick claims due
cursors in batches (FOR UPDATE SKIP LOCKED on PostgreSQL; BEGIN IMMEDIATE serialises
SQLite), writes one outbox row per (enrollment, step, channel) with INSERT .. ON CONFLICT
DO NOTHING, and advances the cursor in the same transaction. The caller enqueues the
returned message ids only after that transaction commits; anything lost between the
commit and the broker is found again by the reaper (campaigns.delivery.reaper).

Order per person (invariant 10, campaigns.delivery.ordering) is kept here, on the rows
the claim reads anyway: a due cursor whose previous step still has a message in flight
(queued, retry, deferred, sending, unconfirmed) is not claimed but moved to when it is
worth reading again; once that step has gone, the next one is due its full delay after
the moment it actually went out. A step held back by time (text hours, retries, rate
limits, an outage) is therefore sent late but in order, and everything after it shifts
with it; an `unconfirmed` message holds its person until it is settled.
"""

from __future__ import annotations

from sqlalchemy import select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from campaigns.audience.eligibility import Facts, Stop, stop_for
from campaigns.audience.subscribers import address_for
from campaigns.clock import Clock
from campaigns.db import id_in, unnest
from campaigns.delivery.ordering import histories, read_again_at, went_out_late
from campaigns.delivery.work import Work
from campaigns.links import new_public_token
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.reasons import missing_campaign, missing_step
from campaigns.sequences.registry import Registry
from campaigns.sequences.revisions import next_after
from campaigns.sequences.timing import Policy, due_time
from campaigns.states import EnrollmentStatus, MessageStatus


def claim_due(
    session: Session, clock: Clock, registry: Registry, policy: Policy, limit: int | None = None
) -> Work:
    """Turn due cursors into outbox rows and advance them. Returns the queued message ids.

    Works on the whole batch at once: subscribers, consent, suppressions and received
    steps are read in one query each, and the outbox rows go in as one INSERT.
    """
    now = clock.now()
    campaigns = registry.campaigns()
    query = (
        select(Enrollment)
        .where(Enrollment.status == EnrollmentStatus.ACTIVE, Enrollment.next_due_at <= now)
        .order_by(Enrollment.next_due_at, Enrollment.id)
        .limit(limit or policy.claim_batch_size)
    )
    waiting = registry.unavailable()
    if waiting:
        # A campaign whose file is broken (and never loaded) waits for the fix; its people
        # stay due, and must not fill every batch ahead of everyone else.
        query = query.where(Enrollment.campaign_key.not_in(waiting))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Enrollment)
    enrollments = session.scalars(query).all()
    work = Work(claimed=len(enrollments))
    if not enrollments:
        return work
    history = histories(session, [e.id for e in enrollments])
    ready = []
    for enrollment in enrollments:
        h = history[enrollment.id]
        if h.in_flight:
            # Its previous step is still on its way: not now, and not on every tick.
            enrollment.next_due_at = read_again_at(h, now, policy)
            enrollment.updated_at = now
            work.held += 1
        else:
            ready.append(enrollment)
    enrollments = ready
    if not enrollments:
        session.flush()
        return work
    subscribers = {
        s.id: s
        for s in session.scalars(
            select(Subscriber).where(
                id_in(session, Subscriber.id, {e.subscriber_id for e in enrollments})
            )
        )
    }
    facts = Facts(session, list(subscribers.values()))
    rows, advancing = [], []
    for enrollment in enrollments:
        campaign = campaigns.get(enrollment.campaign_key)
        step = campaign.step(enrollment.next_step_key) if campaign else None
        if campaign is None or step is None:
            # Never silently drop: park it where ops can see why.
            enrollment.status = EnrollmentStatus.PAUSED
            enrollment.exit_reason = (
                missing_campaign(enrollment.campaign_key)
                if campaign is None
                else missing_step(enrollment.next_step_key)
            )
            enrollment.updated_at = now
            continue
        subscriber = subscribers[enrollment.subscriber_id]
        late = went_out_late(enrollment, history[enrollment.id], policy)
        if late is not None:
            # The previous step went out after the cursor was set: the delay counts from then.
            enrollment.cursor_base_at = late
            due = due_time(late, campaign, step, subscriber, facts.reachable(subscriber), policy)
            if due > now + policy.order_slack:
                enrollment.next_due_at = due
                enrollment.updated_at = now
                work.held += 1
                continue
        outcomes = _outcomes(step, subscriber, facts)
        for channel, stop in outcomes:
            state = (
                stop.values()
                if stop
                else {"status": MessageStatus.QUEUED, "reason_code": None, "reason": None}
            )
            rows.append(
                {
                    "enrollment_id": enrollment.id,
                    "subscriber_id": subscriber.id,
                    "campaign_key": campaign.key,
                    "campaign_version": campaign.version,
                    "step_key": step.key,
                    "channel": channel,
                    "public_token": new_public_token(),
                    **state,
                    "attempts": 0,
                    "due_at": enrollment.next_due_at,
                    "enqueued_at": now if stop is None else None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        history[enrollment.id].received.add(step.key)
        advancing.append((enrollment, campaign, step, subscriber))
    for message_id, channel, status in _insert_messages(session, rows):
        if status == MessageStatus.QUEUED:
            work.add(channel, message_id)
    for enrollment, campaign, step, subscriber in advancing:
        _advance(
            enrollment,
            campaign,
            step,
            subscriber,
            history[enrollment.id].received,
            facts,
            policy,
            now,
        )
    session.flush()
    work.email.sort()
    work.sms.sort()
    return work


def _outcomes(step, subscriber: Subscriber, facts: Facts) -> list[tuple[str, Stop | None]]:
    """(channel, why not or None) for each outbox row the step writes for this person."""
    outcomes = [(channel, stop_for(subscriber, channel, facts)) for channel in step.channels]
    if step.fallback and all(stop is not None for _, stop in outcomes):
        # Nothing goes on the step's own channels (no address, unsubscribed from mail,
        # a bounced address): the fallback carries the lesson instead, and the rows of
        # the channels they do have an address for still say why those did not go.
        outcomes.append((step.fallback, stop_for(subscriber, step.fallback, facts)))
    # A channel the person has no address for gets a row only when they have an address
    # for none of the step's channels: then that row is the step's end, with its reason.
    return [o for o in outcomes if address_for(subscriber, o[0])] or outcomes[: len(step.channels)]


_MESSAGE_COLUMNS = {
    "enrollment_id": "int",
    "subscriber_id": "int",
    "campaign_key": "text",
    "campaign_version": "int",
    "step_key": "text",
    "channel": "text",
    "public_token": "text",
    "status": "text",
    "reason_code": "text",
    "reason": "text",
    "attempts": "int",
    "due_at": "timestamptz",
    "enqueued_at": "timestamptz",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}


def _insert_messages(session: Session, rows: list[dict]) -> list[tuple[int, str, str]]:
    """Insert outbox rows, skipping any that exist; (id, channel, status) of those inserted.

    PostgreSQL takes the whole batch as one statement over arrays (unnest), which keeps
    the statement small however many rows there are; elsewhere an executemany.
    """
    if not rows:
        return []
    conflict = (
        "ON CONFLICT (enrollment_id, step_key, channel) DO NOTHING RETURNING id, channel, status"
    )
    if session.get_bind().dialect.name == "postgresql":
        source, params = unnest(_MESSAGE_COLUMNS, rows)
        sql = text(
            f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) "
            f"SELECT * FROM {source} {conflict}"
        )
        return list(session.execute(sql, params))
    stmt = (
        sqlite_insert(Message.__table__)
        .on_conflict_do_nothing(index_elements=["enrollment_id", "step_key", "channel"])
        .returning(Message.id, Message.channel, Message.status)
    )
    return list(session.connection().execute(stmt, rows))


def _advance(enrollment, campaign, step, subscriber, received, facts: Facts, policy, now) -> None:
    following = next_after(campaign, step, received)
    enrollment.steps_done += 1
    enrollment.updated_at = now
    enrollment.cursor_base_at = now
    if following is None:
        enrollment.status = EnrollmentStatus.COMPLETED
        enrollment.next_step_key = None
        enrollment.next_due_at = None
        return
    enrollment.next_step_key = following.key
    # Delays count from when the previous step went out, as subscribers experience them.
    enrollment.next_due_at = due_time(
        now, campaign, following, subscriber, facts.reachable(subscriber), policy
    )


def queue_fallback(session: Session, email: Message, channel: str, now, reason: dict) -> None:
    """A step's fallback row beside its stopped email row (campaigns.delivery.sending):
    `deferred` and due now, so the next tick's `release_waiting` puts it on its queue."""
    row = {
        "enrollment_id": email.enrollment_id,
        "subscriber_id": email.subscriber_id,
        "campaign_key": email.campaign_key,
        "campaign_version": email.campaign_version,
        "step_key": email.step_key,
        "channel": channel,
        "public_token": new_public_token(),
        "status": MessageStatus.DEFERRED,
        **reason,
        "attempts": 0,
        "due_at": email.due_at,
        "enqueued_at": None,
        "created_at": now,
        "updated_at": now,
    }
    inserted = _insert_messages(session, [row])
    if inserted:
        session.execute(
            update(Message).where(Message.id == inserted[0][0]).values(next_attempt_at=now)
        )


def release_waiting(session: Session, clock: Clock, limit: int = 1000) -> Work:
    """Retries and deferred texts whose time has come go back on the send queues."""
    now = clock.now()
    query = (
        select(Message.id, Message.channel)
        .where(
            Message.status.in_((MessageStatus.RETRY, MessageStatus.DEFERRED)),
            Message.next_attempt_at <= now,
        )
        .order_by(Message.next_attempt_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    work = Work()
    rows = session.execute(query).all()
    for message_id, channel in rows:
        session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(status=MessageStatus.QUEUED, enqueued_at=now, updated_at=now)
        )
        work.add(channel, message_id)
    return work
