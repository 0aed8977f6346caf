"""Enrolling, claiming due steps into the outbox, and the reaper.

The enrollment row is the cursor: `next_step_key` and `next_due_at`. The tick claims due
cursors in batches (FOR UPDATE SKIP LOCKED on PostgreSQL; BEGIN IMMEDIATE serialises
SQLite), writes one outbox row per (enrollment, step, channel) with INSERT .. ON CONFLICT
DO NOTHING, and advances the cursor in the same transaction. The caller enqueues the
returned message ids only after that transaction commits; anything lost between the
commit and the broker is found again by `reap`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from campaigns import states
from campaigns.clock import Clock
from campaigns.db import id_in, unnest
from campaigns.sequences.campaign import Campaign, DefinitionError, Registry, Step
from campaigns.tracking.links import new_public_token
from campaigns.models import ChannelPause, Enrollment, Message, Subscriber
from campaigns.sequences.revisions import ensure_revision, next_after
from campaigns.audience.subscribers import Facts, address_for, has_consent
from campaigns.sequences.windows import Window, next_allowed

TEXT_HOURS = Window.every_day(8, 21)


@dataclass(frozen=True)
class Policy:
    """The scheduling rules that come from settings."""

    default_timezone: str = "America/New_York"
    sms_window: Window = TEXT_HOURS
    claim_batch_size: int = 500
    requeue_after: timedelta = timedelta(minutes=10)

    @classmethod
    def from_settings(cls, s) -> Policy:
        return cls(
            default_timezone=s.default_timezone,
            sms_window=Window.every_day(s.sms_earliest_hour, s.sms_latest_hour),
            claim_batch_size=s.claim_batch_size,
            requeue_after=timedelta(seconds=s.requeue_after_seconds),
        )


@dataclass
class Work:
    """Message ids to hand to the send queues once the transaction has committed."""

    email: list[int] = field(default_factory=list)
    sms: list[int] = field(default_factory=list)
    claimed: int = 0  # enrollments advanced, so the tick knows whether to claim again

    def add(self, channel: str, message_id: int) -> None:
        getattr(self, channel).append(message_id)

    def extend(self, other: Work) -> None:
        self.email.extend(other.email)
        self.sms.extend(other.sms)

    def __len__(self) -> int:
        return len(self.email) + len(self.sms)


def reachable_channels(session: Session, subscriber: Subscriber) -> list[str]:
    return [c for c in ("email", "sms") if address_for(subscriber, c) and has_consent(session, subscriber.id, c)]


def step_window(campaign: Campaign, channels, policy: Policy) -> Window:
    """The campaign window, narrowed to the text hours when the step may text."""
    window = campaign.window
    if "sms" in channels:
        narrowed = window.intersect(policy.sms_window)
        if narrowed is None:
            raise DefinitionError(
                [(f"{campaign.key}: send_window {window.describe()} never overlaps the text "
                  f"hours {policy.sms_window.describe()}")]
            )
        window = narrowed
    return window


def due_time(
    base: datetime, campaign: Campaign, step: Step, subscriber: Subscriber,
    channels: list[str], policy: Policy,
) -> datetime:
    zone = ZoneInfo(subscriber.timezone or policy.default_timezone)
    wanted = [c for c in step.channels if c in channels] or list(step.channels)
    return next_allowed(base + step.delay, step_window(campaign, wanted, policy), zone)


def enroll(
    session: Session, clock: Clock, registry: Registry, subscriber: Subscriber,
    campaign_key: str, policy: Policy, source: str = "api",
) -> Enrollment:
    """Idempotent: enrolling someone already enrolled returns the existing cursor.

    The campaign files are validated first; a broken file raises DefinitionError and
    nothing is written.
    """
    campaign = registry.get(campaign_key)
    existing = _find_enrollment(session, subscriber.id, campaign_key)
    if existing is not None:
        return existing
    now = clock.now()
    first = campaign.steps[0]
    due = due_time(now, campaign, first, subscriber, reachable_channels(session, subscriber), policy)
    enrollment = Enrollment(
        subscriber_id=subscriber.id, campaign_key=campaign.key, campaign_version=campaign.version,
        campaign_revision=ensure_revision(session, clock, campaign), cursor_base_at=now,
        next_step_key=first.key, next_due_at=due, steps_done=0, status="active", source=source,
        created_at=now, updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(enrollment)
    except Exception:
        found = _find_enrollment(session, subscriber.id, campaign_key)
        if found is None:
            raise
        return found
    return enrollment


def _find_enrollment(session: Session, subscriber_id: int, campaign_key: str) -> Enrollment | None:
    return session.scalar(
        select(Enrollment).where(
            Enrollment.subscriber_id == subscriber_id, Enrollment.campaign_key == campaign_key
        )
    )


def status_for(subscriber: Subscriber, channel: str, facts: Facts) -> tuple[str, str | None]:
    """Where an outbox row stands before a send: queued, or terminal with its reason."""
    address = address_for(subscriber, channel)
    if not address:
        return states.SKIPPED, f"no {'email address' if channel == 'email' else 'phone number'}"
    if subscriber.status == "unsubscribed":
        return states.SUPPRESSED, "subscriber unsubscribed"
    reason = facts.suppression(subscriber, channel)
    if reason is not None:
        return states.SUPPRESSED, f"address suppressed: {reason}"
    if not facts.has_consent(subscriber, channel):
        return states.SKIPPED, f"no {channel} consent"
    return states.QUEUED, None


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
        .where(Enrollment.status == "active", Enrollment.next_due_at <= now)
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
    subscribers = {s.id: s for s in session.scalars(
        select(Subscriber).where(id_in(session, Subscriber.id, {e.subscriber_id for e in enrollments})))}
    facts = Facts(session, list(subscribers.values()))
    received: dict[int, set[str]] = {e.id: set() for e in enrollments}
    for eid, key in session.execute(select(Message.enrollment_id, Message.step_key)
                                    .where(id_in(session, Message.enrollment_id, received))):
        received[eid].add(key)
    rows, advancing = [], []
    for enrollment in enrollments:
        campaign = campaigns.get(enrollment.campaign_key)
        step = campaign.step(enrollment.next_step_key) if campaign else None
        if campaign is None or step is None:
            # Never silently drop: park it where ops can see why.
            enrollment.status = "paused"
            enrollment.exit_reason = (
                f"campaign {enrollment.campaign_key!r} is not deployed" if campaign is None
                else f"step {enrollment.next_step_key!r} no longer exists"
            )
            enrollment.updated_at = now
            continue
        subscriber = subscribers[enrollment.subscriber_id]
        outcomes = [(channel, *status_for(subscriber, channel, facts)) for channel in step.channels]
        # A channel the person has no address for gets a row only when they have an address
        # for none of the step's channels: then that row is the step's end, with its reason.
        outcomes = [o for o in outcomes if address_for(subscriber, o[0])] or outcomes
        for channel, status, reason in outcomes:
            rows.append({
                "enrollment_id": enrollment.id, "subscriber_id": subscriber.id,
                "campaign_key": campaign.key, "campaign_version": campaign.version,
                "step_key": step.key, "channel": channel, "public_token": new_public_token(),
                "status": status, "reason": reason, "attempts": 0, "due_at": enrollment.next_due_at,
                "enqueued_at": now if status == states.QUEUED else None,
                "created_at": now, "updated_at": now,
            })
        received[enrollment.id].add(step.key)
        advancing.append((enrollment, campaign, step, subscriber))
    for message_id, channel, status in _insert_messages(session, rows):
        if status == states.QUEUED:
            work.add(channel, message_id)
    for enrollment, campaign, step, subscriber in advancing:
        _advance(enrollment, campaign, step, subscriber, received[enrollment.id], facts, policy, now)
    session.flush()
    work.email.sort()
    work.sms.sort()
    return work


_MESSAGE_COLUMNS = {"enrollment_id": "int", "subscriber_id": "int", "campaign_key": "text",
                    "campaign_version": "int", "step_key": "text", "channel": "text", "public_token": "text",
                    "status": "text", "reason": "text", "attempts": "int", "due_at": "timestamptz",
                    "enqueued_at": "timestamptz", "created_at": "timestamptz", "updated_at": "timestamptz"}


def _insert_messages(session: Session, rows: list[dict]) -> list[tuple[int, str, str]]:
    """Insert outbox rows, skipping any that exist; (id, channel, status) of those inserted.

    PostgreSQL takes the whole batch as one statement over arrays (unnest), which keeps
    the statement small however many rows there are; elsewhere an executemany.
    """
    if not rows:
        return []
    conflict = "ON CONFLICT (enrollment_id, step_key, channel) DO NOTHING RETURNING id, channel, status"
    if session.get_bind().dialect.name == "postgresql":
        source, params = unnest(_MESSAGE_COLUMNS, rows)
        sql = text(f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) SELECT * FROM {source} {conflict}")
        return list(session.execute(sql, params))
    stmt = (sqlite_insert(Message.__table__)
            .on_conflict_do_nothing(index_elements=["enrollment_id", "step_key", "channel"])
            .returning(Message.id, Message.channel, Message.status))
    return list(session.connection().execute(stmt, rows))


def _advance(enrollment, campaign, step, subscriber, received, facts: Facts, policy, now) -> None:
    following = next_after(campaign, step, received)
    enrollment.steps_done += 1
    enrollment.updated_at = now
    enrollment.cursor_base_at = now
    if following is None:
        enrollment.status = "completed"
        enrollment.next_step_key = None
        enrollment.next_due_at = None
        return
    enrollment.next_step_key = following.key
    # Delays count from when the previous step went out, as subscribers experience them.
    enrollment.next_due_at = due_time(now, campaign, following, subscriber, facts.reachable(subscriber), policy)


def release_waiting(session: Session, clock: Clock, limit: int = 1000) -> Work:
    """Retries and deferred texts whose time has come go back on the send queues."""
    now = clock.now()
    query = (
        select(Message.id, Message.channel)
        .where(Message.status.in_((states.RETRY, states.DEFERRED)), Message.next_attempt_at <= now)
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
            .values(status=states.QUEUED, enqueued_at=now, updated_at=now)
        )
        work.add(channel, message_id)
    return work


@dataclass
class Reaped:
    requeued: Work
    unconfirmed: list[int]


def reap(session: Session, clock: Clock, policy: Policy, busy: frozenset[str] = frozenset()) -> Reaped:
    """Find work the broker lost and sends that died half-way.

    A queued message whose task never started is enqueued again (the send task is
    idempotent, so a late duplicate does nothing). Channels that are paused, or whose
    broker queue still holds tasks (`busy`: a long backlog is not lost work), are left
    alone, so a backlog is never multiplied. A message still `sending` after its lease may
    have reached the provider, so it becomes `unconfirmed`: settled by a webhook, a
    provider look-up or ops, never re-sent blindly.
    """
    now = clock.now()
    skip = set(busy) | set(session.scalars(select(ChannelPause.channel)))
    stale_query = select(Message.id, Message.channel).where(
        Message.status == states.QUEUED, Message.enqueued_at < now - policy.requeue_after)
    if skip:
        stale_query = stale_query.where(Message.channel.not_in(skip))
    stale = session.execute(stale_query).all()
    requeued = Work()
    for message_id, channel in stale:
        session.execute(
            update(Message).where(Message.id == message_id, Message.status == states.QUEUED)
            .values(enqueued_at=now, updated_at=now)
        )
        requeued.add(channel, message_id)
    expired = session.scalars(
        select(Message.id).where(
            and_(Message.status == states.SENDING, Message.lease_until < now)
        )
    ).all()
    for message_id in expired:
        session.execute(
            update(Message)
            .where(Message.id == message_id, Message.status == states.SENDING, Message.lease_until < now)
            .values(
                # The lease token stays: a definite answer arriving late (a 429, a 21610)
                # still settles the message; webhooks clear it when they settle it first.
                status=states.UNCONFIRMED, updated_at=now,
                reason="lease expired during the provider call; it may have been sent",
            )
        )
    return Reaped(requeued=requeued, unconfirmed=list(expired))
