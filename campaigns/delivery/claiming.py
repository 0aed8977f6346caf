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

Branches (campaigns.sequences.conditions) are judged here too, when a step falls due: a
step whose `if` / `unless` does not hold writes one outbox row per channel, `skipped`
with the reason `condition`, and the cursor moves on as after any step (the next delay
counts from that moment). The facts conditions need are read for the whole batch, one
query per kind (campaigns.sequences.situations), and only for people whose step, or the
step after it, has a condition or a wait: a course without branches costs nothing more.
A step that waits for an event (`wait_for`) is due at its `at_most`, or at once when the
event has already come; its cursor carries `waiting_for` so the event can wake it.

A step that would send is checked against the person's frequency cap across campaigns
(campaigns.delivery.frequency_cap): over it, the cursor is held to the next day with room.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from campaigns.audience.eligibility import Facts, Stop, stop_for
from campaigns.audience.subscribers import address_for
from campaigns.clock import Clock
from campaigns.db import binary_unnest, id_in
from campaigns.delivery.frequency_cap import CapCheck
from campaigns.delivery.ordering import histories, read_again_at, went_out_late
from campaigns.delivery.work import Work
from campaigns.links import new_public_token, new_public_tokens
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.reasons import Reason, missing_campaign, missing_step
from campaigns.sequences.experiments import held_out, variant_for
from campaigns.sequences.journey import jumped_to
from campaigns.sequences.registry import Registry
from campaigns.sequences.revisions import next_after
from campaigns.sequences.situations import read_situations
from campaigns.sequences.timing import Policy, due_at_once, due_time
from campaigns.sequences.waits import waiting_for
from campaigns.states import EnrollmentStatus, MessageStatus

# What a claim reads of each cursor and each person: only what it decides with (each
# timestamp read costs a conversion in Python, a thousand rows a tick).
_CLAIMED = (
    "id",
    "subscriber_id",
    "campaign_key",
    "next_step_key",
    "next_due_at",
    "cursor_base_at",  # what the order check (campaigns.delivery.ordering) counts from
    "created_at",
    "goal_event_id",  # a goal's jump (campaigns.journeys.goals) is due once order allows
)
_PERSON = ("id", "email", "phone", "status", "timezone")


def claim_due(
    session: Session, clock: Clock, registry: Registry, policy: Policy, limit: int | None = None
) -> Work:
    """Turn due cursors into outbox rows and advance them. Returns the queued message ids.

    Works on the whole batch at once: subscribers, consent, suppressions and received
    steps are read in one query each, the outbox rows go in as one INSERT and the cursors
    move in one UPDATE. Rows are read as plain tuples, not ORM objects: at a thousand
    people a tick, building, tracking and flushing objects one by one cost more than the
    queries themselves.
    """
    now = clock.now()
    campaigns = registry.campaigns()
    cursors = Enrollment.__table__
    query = (
        select(*(cursors.c[name] for name in _CLAIMED))
        .where(cursors.c.status == EnrollmentStatus.ACTIVE, cursors.c.next_due_at <= now)
        .order_by(cursors.c.next_due_at, cursors.c.id)
        .limit(limit or policy.claim_batch_size)
    )
    waiting = registry.unavailable()
    if waiting:
        # A campaign whose file is broken (and never loaded) waits for the fix; its people
        # stay due, and must not fill every batch ahead of everyone else.
        query = query.where(cursors.c.campaign_key.not_in(waiting))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=cursors)
    enrollments = session.execute(query).all()
    work = Work(claimed=len(enrollments))
    if not enrollments:
        return work
    history = histories(session, [e.id for e in enrollments])
    holds: list[dict] = []
    ready = []
    for enrollment in enrollments:
        h = history[enrollment.id]
        if h.in_flight:
            # Its previous step is still on its way: not now, and not on every tick.
            holds.append({"id": enrollment.id, "next_due_at": read_again_at(h, now, policy)})
            work.held += 1
        else:
            ready.append(enrollment)
    enrollments = ready
    if not enrollments:
        _hold(session, holds, now)
        return work
    people = Subscriber.__table__
    subscribers = {
        s.id: s
        for s in session.execute(
            select(*(people.c[name] for name in _PERSON)).where(
                id_in(session, people.c.id, {e.subscriber_id for e in enrollments})
            )
        )
    }
    facts = Facts(session, list(subscribers.values()))
    received = {e.id: history[e.id].received for e in enrollments}
    situations = _situations(session, campaigns, enrollments, subscribers, facts)
    caps = CapCheck.for_batch(session, now, policy, campaigns, enrollments, subscribers)
    rows, advancing, moves = [], [], []
    tokens = iter(new_public_tokens(2 * len(enrollments)))
    for enrollment in enrollments:
        campaign = campaigns.get(enrollment.campaign_key)
        step = campaign.step(enrollment.next_step_key) if campaign else None
        if campaign is None or step is None:
            # Never silently drop: park it where ops can see why.
            _park(
                session,
                enrollment.id,
                now,
                missing_campaign(enrollment.campaign_key)
                if campaign is None
                else missing_step(enrollment.next_step_key),
            )
            continue
        subscriber = subscribers[enrollment.subscriber_id]
        situation = situations.get(enrollment.id)
        woken = situation is not None and step.branch.wait_is_over(situation)
        late = went_out_late(enrollment, history[enrollment.id], policy)
        if late is not None and jumped_to(campaign, step, enrollment.goal_event_id):
            late = None  # jumped here by a goal: due now, not its delay after the last step
        if late is not None and not woken:
            # The previous step went out after the cursor was set: the delay counts from then.
            due = due_time(late, campaign, step, subscriber, facts.reachable(subscriber), policy)
            if due > now + policy.order_slack:
                holds.append({"id": enrollment.id, "next_due_at": due, "cursor_base_at": late})
                work.held += 1
                continue
        if step.branch.wait_for is not None and situation is not None and not woken:
            # Due before its wait is over, yet nothing ended the wait: the open or click
            # that woke it was judged a machine's afterwards (the first of a burst of
            # clicks). It waits on, to the end it always had.
            base = late or enrollment.cursor_base_at or enrollment.created_at
            due = due_time(base, campaign, step, subscriber, facts.reachable(subscriber), policy)
            if due > now + policy.order_slack:
                holds.append({"id": enrollment.id, "next_due_at": due})
                work.held += 1
                continue
        why_not = step.branch.why_not(situation) if situation is not None else None
        skip = None
        if held_out(campaign, enrollment.id):  # experiments: enrolled, never messaged
            skip = Stop.of(MessageStatus.SKIPPED, Reason.HOLDOUT)
        elif why_not is not None:
            skip = Stop.of(MessageStatus.SKIPPED, Reason.CONDITION, condition=why_not)
        elif woken:
            # The event ended the wait, perhaps at night: a step that sends waits for its
            # window (a skipped one needs none).
            due = due_at_once(now, campaign, step, subscriber, facts.reachable(subscriber), policy)
            if due > now + policy.order_slack:
                holds.append({"id": enrollment.id, "next_due_at": due})
                work.held += 1
                continue
        outcomes = (
            _outcomes(step, subscriber, facts) if skip is None else _skipped(step, subscriber, skip)
        )
        if caps is not None and skip is None and any(stop is None for _, stop in outcomes):
            # Over the person's frequency cap: held to the next day with room, never dropped.
            held = caps.hold(enrollment, campaign, step, subscriber, facts.reachable(subscriber))
            if held is not None:
                holds.append({"id": enrollment.id, "next_due_at": held.until})
                work.held += 1
                continue
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
                    "public_token": next(tokens, None) or new_public_token(),
                    "variant": variant_for(campaign, step, enrollment.id),
                    **state,
                    "attempts": 0,
                    "due_at": enrollment.next_due_at,
                    "enqueued_at": now if stop is None else None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        received[enrollment.id].add(step.key)
        advancing.append((enrollment, campaign, step, subscriber))
    for message_id, channel, status in _insert_messages(session, rows):
        if status == MessageStatus.QUEUED:
            work.add(channel, message_id)
    due_times = _DueTimes(now, policy)
    for enrollment, campaign, step, subscriber in advancing:
        moves.append(
            _advance(
                enrollment,
                campaign,
                step,
                subscriber,
                received[enrollment.id],
                facts,
                due_times,
                situations.get(enrollment.id),
            )
        )
    # Only a cursor moving onto or off a waiting step has a `waiting_for` to write.
    waits = any(
        step.wait_for is not None or move["waiting_for"] is not None
        for (_, _, step, _), move in zip(advancing, moves, strict=True)
    )
    _move_cursors(session, moves, now, waits)
    _hold(session, holds, now)
    if caps is not None:
        caps.write(session)
    work.email.sort()
    work.sms.sort()
    return work


def _situations(session, campaigns, enrollments, subscribers, facts) -> dict:
    """What the conditions of this batch are judged on, for the people whose step (or the
    step after it, for a wait that may already be over) branches; nothing for the rest."""
    people, needs = [], set()
    for e in enrollments:
        campaign = campaigns.get(e.campaign_key)
        if campaign is None or not campaign.branches:
            continue
        wanted = campaign.branch_needs.get(e.next_step_key)
        if wanted is not None:
            people.append((e.id, subscribers[e.subscriber_id], campaign))
            needs |= wanted
    return read_situations(session, people, facts, needs)


def _skipped(step, subscriber: Subscriber, stop: Stop) -> list[tuple[str, Stop | None]]:
    """A step whose condition does not hold ends on each of its channels the person has
    an address for (on all of them when they have none), skipped with the reason."""
    channels = [c for c in step.channels if address_for(subscriber, c)] or list(step.channels)
    return [(channel, stop) for channel in channels]


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
    "variant": "text",
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
        source, params = binary_unnest(_MESSAGE_COLUMNS, rows)
        columns = ", ".join(_MESSAGE_COLUMNS)
        sql = f"INSERT INTO messages ({columns}) SELECT * FROM {source} {conflict}"
        return list(session.connection().exec_driver_sql(sql, params))
    stmt = (
        sqlite_insert(Message.__table__)
        .on_conflict_do_nothing(index_elements=["enrollment_id", "step_key", "channel"])
        .returning(Message.id, Message.channel, Message.status)
    )
    return list(session.connection().execute(stmt, rows))


class _DueTimes:
    """`due_time` for one claim. Everyone in it went out `now`, so the people of one time
    zone waiting on one step over the same channels share a due time: worked out once."""

    def __init__(self, now, policy: Policy):
        self.now, self.policy = now, policy
        self._known: dict[tuple, object] = {}

    def __call__(self, campaign, step, subscriber, channels: list[str]):
        key = (campaign.key, step.key, tuple(channels), subscriber.timezone)
        due = self._known.get(key)
        if due is None:
            due = self._known[key] = due_time(
                self.now, campaign, step, subscriber, channels, self.policy
            )
        return due


def _advance(
    enrollment, campaign, step, subscriber, received, facts: Facts, due_times, situation=None
) -> dict:
    """The cursor past `step`: its next step and due time, or completed. Delays count
    from when the previous step went out (now), as subscribers experience them. A next
    step whose wait is already over (its event has come, or the step will not go to this
    person either way) is due at once, in its window."""
    following = next_after(campaign, step, received)
    if following is None:
        return {
            "id": enrollment.id,
            "status": EnrollmentStatus.COMPLETED,
            "next_step_key": None,
            "next_due_at": None,
            "waiting_for": None,
        }
    reachable = facts.reachable(subscriber)
    if situation is not None and following.branch.wait_is_over(situation):
        due = due_at_once(
            due_times.now, campaign, following, subscriber, reachable, due_times.policy
        )
    else:
        due = due_times(campaign, following, subscriber, reachable)
    return {
        "id": enrollment.id,
        "status": EnrollmentStatus.ACTIVE,
        "next_step_key": following.key,
        "next_due_at": due,
        "waiting_for": waiting_for(following),
    }


_CURSOR_COLUMNS = {
    "id": "int",
    "status": "text",
    "next_step_key": "text",
    "next_due_at": "timestamptz",
}


def _move_cursors(session: Session, moves: list[dict], now, waits: bool = False) -> None:
    """Write the claimed cursors back in one statement: each one step further, based now.
    One UPDATE over arrays on PostgreSQL (the rows are locked FOR UPDATE by the claim),
    an executemany elsewhere. `waiting_for` is written only when some cursor of the batch
    moves onto or off a step that waits (no other cursor holds one: the reconcile after a
    live edit writes it for everyone it moves)."""
    if not moves:
        return
    columns = {**_CURSOR_COLUMNS, "waiting_for": "text"} if waits else _CURSOR_COLUMNS
    if session.get_bind().dialect.name == "postgresql":
        source, params = binary_unnest(columns, moves)
        waiting = "waiting_for = v.waiting_for, " if waits else ""
        # `id = ANY` beside the join: without it a small table is read whole (the planner
        # cannot see how few rows the arrays hold), with it the primary key finds them.
        session.connection().exec_driver_sql(
            "UPDATE enrollments SET status = v.status, next_step_key = v.next_step_key, "
            f"next_due_at = v.next_due_at, {waiting}steps_done = enrollments.steps_done + 1, "
            "cursor_base_at = %(now)s, updated_at = %(now)s "
            f"FROM {source} AS v({', '.join(columns)}) "
            "WHERE enrollments.id = v.id AND enrollments.id = ANY(%(id)b::int[])",
            {**params, "now": now},
        )
        return
    table = Enrollment.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("m_id"))
        .values(
            status=bindparam("m_status"),
            next_step_key=bindparam("m_next_step_key"),
            next_due_at=bindparam("m_next_due_at"),
            **({"waiting_for": bindparam("m_waiting_for")} if waits else {}),
            steps_done=table.c.steps_done + 1,
            cursor_base_at=now,
            updated_at=now,
        ),
        [{f"m_{name}": move[name] for name in columns} for move in moves],
    )


def _hold(session: Session, holds: list[dict], now) -> None:
    """Cursors the order check held back (invariant 10): due again later, and, where the
    previous step went out late, counted from when it did. Few per tick, so one UPDATE
    each (an executemany)."""
    table = Enrollment.__table__
    for kind in ("next_due_at", "cursor_base_at"):
        batch = [h for h in holds if ("cursor_base_at" in h) == (kind == "cursor_base_at")]
        if not batch:
            continue
        values = {"next_due_at": bindparam("h_next_due_at"), "updated_at": now}
        if kind == "cursor_base_at":
            values["cursor_base_at"] = bindparam("h_cursor_base_at")
        session.execute(
            update(table).where(table.c.id == bindparam("h_id")).values(**values),
            [{f"h_{k}": v for k, v in h.items()} for h in batch],
        )


def _park(session: Session, enrollment_id: int, now, reason: str) -> None:
    """Pause a cursor whose campaign or step is gone, with the reason for ops."""
    session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment_id)
        .values(status=EnrollmentStatus.PAUSED, exit_reason=reason, updated_at=now)
        .execution_options(synchronize_session=False)
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
        "variant": email.variant,
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
    if rows:
        session.execute(
            update(Message)
            .where(id_in(session, Message.id, [message_id for message_id, _ in rows]))
            .values(status=MessageStatus.QUEUED, enqueued_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    for message_id, channel in rows:
        work.add(channel, message_id)
    return work
