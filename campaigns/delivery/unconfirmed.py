"""Unconfirmed messages: the provider call may have happened but no answer was recorded
(invariant 2). They are never re-sent blindly. They settle themselves where the
provider can tell:

- a webhook says the provider has it (campaigns.tracking.events): sent, or further on;
- a provider that can be asked (`look_up`: Twilio lists the texts it holds for a number,
  the local outbox looks for its file) answers found (sent, with the provider's id) or
  never received (queued again: same row, same reference, same idempotency key), once
  the window in which our call could have reached it has closed;
- what neither settles within `alert_after` is flagged `needs_ops` once and shown with
  its age (`drip status`, `drip outbox list`, the admin outbox), for ops to settle one by
  one or in bulk (`settle`, `settle_many`) after checking the provider's console.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from campaigns.audience.subscribers import address_for
from campaigns.clock import Clock
from campaigns.db import id_in
from campaigns.delivery.work import Work
from campaigns.models import Message, Subscriber, is_row_id
from campaigns.reasons import Reason
from campaigns.states import MessageStatus

# What ops may say happened, and what it does to the message.
OPS_OUTCOMES = {
    "sent": (MessageStatus.SENT, Reason.SETTLED_SENT),
    "failed": (MessageStatus.FAILED, Reason.SETTLED_FAILED),
    "resend": (MessageStatus.QUEUED, Reason.SETTLED_RESEND),
}
MAX_LOOKUP_BACKOFF = timedelta(hours=1)


class OpsError(ValueError):
    pass


@dataclass(frozen=True)
class SettlePolicy:
    """`lookup_after`: how long after a message became unconfirmed the provider is first
    asked (its own records may lag the call by a moment); `alert_after`: how long it may
    stay undecided before ops is told; `lease`: a send's lease, which bounds how long
    before that moment our call could have started."""

    lookup_after: timedelta = timedelta(seconds=30)
    alert_after: timedelta = timedelta(minutes=15)
    lease: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class LookupRequest:
    """One unconfirmed message to ask a provider about. `mark` is the message's public
    token: it is in every link of the message (and in its webhook reference), so the
    provider's copy can be told from any other. Our call reached the provider, if at
    all, between `since` and `until`."""

    message_id: int
    channel: str
    to: str
    mark: str
    since: datetime
    until: datetime


@dataclass(frozen=True)
class LookupAnswer:
    found: bool | None  # True: the provider has it; False: it never got it; None: can't tell
    provider_message_id: str | None = None


# ------------------------------------------------------------------ ops


def settle(session: Session, clock: Clock, message_id: int, outcome: str) -> Work:
    """Resolve an unconfirmed message: ops checked the provider and says what happened."""
    msg = session.get(Message, message_id, with_for_update=True) if is_row_id(message_id) else None
    if msg is None:
        raise OpsError(f"no message {message_id}")
    if msg.status != MessageStatus.UNCONFIRMED:
        raise OpsError(f"message {message_id} is {msg.status}, not unconfirmed; nothing to settle")
    if outcome not in OPS_OUTCOMES:
        raise OpsError(f"unknown outcome {outcome!r}")
    work = Work()
    _ops_settle(msg, outcome, clock.now(), work)
    return work


@dataclass(frozen=True)
class Selection:
    """Which unconfirmed messages a bulk settle takes: on `channel` (None: both), that
    became unconfirmed at least `older_than` ago and no later than `as_of` (the moment ops
    looked at the list, so one that turned up after the confirmation step is left out)."""

    channel: str | None = None
    older_than: timedelta = timedelta(0)
    as_of: datetime | None = None

    def query(self, now: datetime):
        newest = now - self.older_than
        if self.as_of is not None:
            newest = min(newest, self.as_of)
        q = select(Message).where(
            Message.status == MessageStatus.UNCONFIRMED, Message.updated_at <= newest
        )
        return q.where(Message.channel == self.channel) if self.channel else q


def preview_many(session: Session, clock: Clock, selection: Selection) -> tuple[int, float | None]:
    """(how many a bulk settle would take, the oldest one's age in seconds)."""
    now = clock.now()
    sub = selection.query(now).subquery()
    count, oldest = session.execute(select(func.count(), func.min(sub.c.updated_at))).one()
    return count, (None if oldest is None else (now - _aware(oldest, now)).total_seconds())


def settle_many(
    session: Session, clock: Clock, selection: Selection, outcome: str
) -> tuple[int, Work]:
    """Settle every unconfirmed message the selection takes as `outcome`; returns how
    many, and the work to enqueue after commit (for resend)."""
    if outcome not in OPS_OUTCOMES:
        raise OpsError(f"unknown outcome {outcome!r}")
    now = clock.now()
    work = Work()
    query = selection.query(now).order_by(Message.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = session.scalars(query).all()
    for msg in rows:
        _ops_settle(msg, outcome, now, work)
    return len(rows), work


def _ops_settle(msg: Message, outcome: str, now: datetime, work: Work) -> None:
    status, reason = OPS_OUTCOMES[outcome]
    _set(msg, status, reason, now)
    msg.lease_token = None  # ops decided: a late provider answer must not undo it
    msg.next_attempt_at = None
    if status == MessageStatus.SENT:
        msg.sent_at = now
    elif status == MessageStatus.QUEUED:
        msg.enqueued_at = now
        work.add(msg.channel, msg.id)


# ------------------------------------------------------------------ the reaper's pass


def settle_unconfirmed(
    session: Session, clock: Clock, lookups: dict[str, object], policy: SettlePolicy | None = None
) -> tuple[Work, dict[str, int]]:
    """Ask the providers that can tell about unconfirmed messages whose look-up is due:
    found ones become sent, never-received ones are queued again (returned, to be
    enqueued after commit), the rest are asked again later, less and less often."""
    policy = policy or SettlePolicy()
    now = clock.now()
    work = Work()
    counts = {"confirmed": 0, "resent": 0, "undecided": 0}
    channels = [c for c, p in lookups.items() if _can_look_up(p)]
    if not channels:
        return work, counts
    query = (
        select(Message)
        .where(
            Message.status == MessageStatus.UNCONFIRMED,
            Message.channel.in_(channels),
            # First asked `lookup_after` after it became unconfirmed, then when last set.
            or_(
                Message.next_attempt_at <= now,
                and_(
                    Message.next_attempt_at.is_(None),
                    Message.updated_at <= now - policy.lookup_after,
                ),
            ),
        )
        .order_by(Message.id)
        .limit(500)  # the rest next pass: each may cost a provider request
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    messages = session.scalars(query).all()
    if not messages:
        return work, counts
    people = {
        s.id: s
        for s in session.scalars(
            select(Subscriber).where(
                id_in(session, Subscriber.id, {m.subscriber_id for m in messages})
            )
        )
    }
    by_channel: dict[str, list[Message]] = {}
    for msg in messages:
        by_channel.setdefault(msg.channel, []).append(msg)
    for channel, group in by_channel.items():
        answers = _ask(lookups[channel], [_request(m, people, policy, now) for m in group])
        for msg in group:
            answer = answers.get(msg.id) or LookupAnswer(None)
            if answer.found is True:
                _set(msg, MessageStatus.SENT, Reason.CONFIRMED_BY_LOOKUP, now)
                msg.sent_at = msg.sent_at or now
                msg.provider = msg.provider or getattr(lookups[channel], "name", None)
                msg.provider_message_id = answer.provider_message_id or msg.provider_message_id
                msg.lease_token = msg.lease_until = msg.next_attempt_at = None
                counts["confirmed"] += 1
            elif answer.found is False:
                # Same row, same reference: a late answer from the first call is ignored
                # (the lease token is gone), and a webhook for it still finds the row.
                _set(msg, MessageStatus.QUEUED, Reason.NOT_RECEIVED, now)
                msg.enqueued_at = now
                msg.lease_token = msg.lease_until = msg.next_attempt_at = None
                counts["resent"] += 1
                work.add(msg.channel, msg.id)
            else:
                since = _aware(msg.updated_at, now)
                msg.next_attempt_at = now + min(
                    MAX_LOOKUP_BACKOFF, max(policy.lookup_after, (now - since) / 2)
                )
                counts["undecided"] += 1
    return work, counts


def flag_undecided(session: Session, clock: Clock, policy: SettlePolicy) -> int:
    """Mark, once, the unconfirmed messages older than `alert_after`: they are what is
    left for ops. Returns how many were newly marked (logged once by the caller)."""
    now = clock.now()
    minutes = max(1, round(policy.alert_after.total_seconds() / 60))
    return session.execute(
        update(Message)
        .where(
            Message.status == MessageStatus.UNCONFIRMED,
            Message.updated_at < now - policy.alert_after,
            or_(Message.reason_code.is_(None), Message.reason_code != Reason.NEEDS_OPS),
        )
        # updated_at stays: it is when the message became unconfirmed, its age for ops.
        .values(**Reason.NEEDS_OPS.values(minutes=minutes))
        .execution_options(synchronize_session=False)
    ).rowcount


def undecided(session: Session, clock: Clock) -> tuple[int, float | None]:
    """(unconfirmed messages flagged for ops, the oldest one's age in seconds)."""
    now = clock.now()
    count, oldest = session.execute(
        select(func.count(), func.min(Message.updated_at)).where(
            Message.status == MessageStatus.UNCONFIRMED,
            Message.reason_code == Reason.NEEDS_OPS,
        )
    ).one()
    return count, (None if oldest is None else (now - _aware(oldest, now)).total_seconds())


def _can_look_up(provider) -> bool:
    return callable(getattr(provider, "look_up", None)) or callable(
        getattr(provider, "lookup", None)
    )


def _ask(provider, requests: list[LookupRequest]) -> dict[int, LookupAnswer]:
    if callable(getattr(provider, "look_up", None)):
        return provider.look_up(requests)
    # The simple form (the local outbox): lookup(message_id) -> bool | None.
    answers = {}
    for r in requests:
        found = provider.lookup(r.message_id)
        answers[r.message_id] = LookupAnswer(found, None)
    return answers


def _request(msg: Message, people: dict, policy: SettlePolicy, now: datetime) -> LookupRequest:
    # The call ended by the lease's end (lease expired) or by when its unclear answer came
    # (updated_at, when the lease is cleared); it began at most one lease before that.
    until = _aware(msg.lease_until or msg.updated_at, now)
    subscriber = people.get(msg.subscriber_id)
    return LookupRequest(
        message_id=msg.id,
        channel=msg.channel,
        to=(address_for(subscriber, msg.channel) if subscriber else None) or "",
        mark=msg.public_token,
        since=until - policy.lease,
        until=until,
    )


def _aware(value: datetime, like: datetime) -> datetime:
    """SQLite hands datetimes back naive (they are stored as UTC)."""
    if value.tzinfo is None and like.tzinfo is not None:
        return value.replace(tzinfo=like.tzinfo)
    return value


def _set(msg: Message, status: MessageStatus, reason: Reason, now) -> None:
    msg.status, msg.reason_code, msg.reason, msg.updated_at = (
        status,
        reason.value,
        reason.text(),
        now,
    )
