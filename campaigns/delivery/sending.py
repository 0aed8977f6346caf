"""Sending a batch of outbox messages, and the provider interface it calls.

    send_batch(ids)
      1. one transaction: re-read each message; re-check enrollment, suppression and
         consent (invariant 4) and the text hours (invariant 5); render; then lease the
         ones still queued (conditional UPDATE .. WHERE status='queued', so a duplicate
         task or a second worker gets nothing). Commit.
      2. wait on the shared rate limiter, call the provider once for the batch.
      3. one transaction: record each result, but only where our lease still holds.

One place, `decide`, decides what a provider outcome does to a message.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from campaigns import states
from campaigns.delivery.pauses import pause, paused
from campaigns.clock import Clock
from campaigns.content.composing import Composer
from campaigns.db import id_in, transaction, unnest
from campaigns.sequences.campaign import DefinitionError, Registry
from campaigns.tracking.links import Signer
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.delivery.providers import (
    EmailProvider,
    NoLimit,
    Outcome,
    OutgoingEmail,
    OutgoingSms,
    RateLimiter,
    SendResult,
    SmsProvider,
)
from campaigns.content.rendering import Renderer, RenderError
from campaigns.delivery.claiming import Policy, Work, status_for, step_window
from campaigns.audience.subscribers import Facts, address_for, suppress
from campaigns.sequences.windows import Window, is_allowed, next_allowed

log = logging.getLogger(__name__)

# The provider interface lives in campaigns.delivery.providers; re-exported here for callers.
__all__ = ["EmailProvider", "NoLimit", "Outcome", "OutgoingEmail", "OutgoingSms", "RateLimiter",
           "SendResult", "SmsProvider", "send_batch"]


@dataclass
class SendContext:
    """Everything a send needs besides the message ids; built once per worker."""

    factory: sessionmaker[Session]
    clock: Clock
    registry: Registry
    renderer: Renderer
    signer: Signer
    policy: Policy
    base_url: str
    email_provider: EmailProvider
    sms_provider: SmsProvider
    limiters: dict[str, RateLimiter] = field(default_factory=dict)
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 6
    retry_base: float = 30.0
    retry_cap: float = 3600.0
    stop_help_every: int = 4  # STOP/HELP on the first text and every 4th after


@dataclass
class BatchReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    unconfirmed: int = 0
    suppressed: int = 0
    skipped: int = 0
    deferred: int = 0
    not_ours: int = 0
    paused: int = 0
    waiting: int = 0


def send_batch(ctx: SendContext, channel: str, message_ids: list[int]) -> BatchReport:
    """Send a batch: re-check and compose everything, then, chunk by chunk, wait for
    rate-limit tokens, lease the chunk, call the provider, record the answers.

    Rows are leased only just before their own provider call, so if the worker dies, or
    anything fails, between chunks, the rows not yet handed over are still `queued` (the
    reaper re-enqueues them) and only a chunk whose call may have happened can become
    `unconfirmed`.
    """
    report = BatchReport()
    token = str(uuid.uuid4())
    with transaction(ctx.factory) as session:
        candidates = _prepare(session, ctx, channel, message_ids, report)
    if not candidates:
        return report
    limiter = ctx.limiters.get(channel, NoLimit())
    provider = ctx.email_provider if channel == "email" else ctx.sms_provider
    # Texts go in chunks of the limiter's burst, each after its own tokens, so a batch
    # never reaches the provider as one clump; an email batch is one provider request.
    size = len(candidates) if channel == "email" else max(1, int(getattr(limiter, "burst", len(candidates))))
    for start in range(0, len(candidates), size):
        with transaction(ctx.factory) as session:
            # Still ours to send? (A duplicate task may have taken some.) The rest of the
            # batch is marked fresh, so the reaper does not hand it out again meanwhile.
            pending = _still_queued(session, ctx, candidates[start:start + size], candidates[start + size:])
        if not pending:
            continue
        limiter.acquire(len(pending))
        with transaction(ctx.factory) as session:
            chunk = _lease(session, ctx, channel, pending, token, report)
        if not chunk:
            continue
        try:
            results = provider.send_emails(chunk) if channel == "email" else provider.send_sms(chunk)
        except Exception as exc:
            log.exception("provider %s raised instead of classifying; chunk marked unconfirmed", provider.name)
            error = f"provider raised {type(exc).__name__}"  # the text may hold an address
            results = [SendResult(o.message_id, Outcome.UNKNOWN, error=error) for o in chunk]
        with transaction(ctx.factory) as session:
            record_results(session, ctx, results, token, provider.name, report)
    return report


@dataclass
class Candidate:
    item: OutgoingEmail | OutgoingSms
    zone: ZoneInfo | None = None  # texts: the subscriber's zone and the step's window,
    window: Window | None = None  # checked again right before the call (invariant 5)


def _still_queued(session, ctx: SendContext, chunk: list[Candidate], later: list[Candidate]) -> list[Candidate]:
    ids = [c.item.message_id for c in chunk + later]
    queued = set(session.scalars(select(Message.id).where(id_in(session, Message.id, ids),
                                                          Message.status == states.QUEUED)))
    if later:
        session.execute(update(Message).where(id_in(session, Message.id, [c.item.message_id for c in later]),
                                              Message.status == states.QUEUED)
                        .values(enqueued_at=ctx.clock.now()).execution_options(synchronize_session=False))
    return [c for c in chunk if c.item.message_id in queued]


def _lease(session, ctx: SendContext, channel: str, chunk: list[Candidate], token: str,
           report: BatchReport) -> list:
    """Lease a chunk right before its provider call, after checking again what may have
    changed while it waited for tokens: an unsubscribe, STOP, bounce or complaint, an
    exited course or a paused channel (invariant 4), and the text hours (invariant 5)."""
    now = ctx.clock.now()
    if paused(session, channel):
        report.paused += len(chunk)  # they stay queued; resuming re-dispatches them
        return []
    rows = {m.id: m for m in session.scalars(
        select(Message).where(id_in(session, Message.id, [c.item.message_id for c in chunk])))}
    subscribers = {s.id: s for s in session.scalars(
        select(Subscriber).where(id_in(session, Subscriber.id, {m.subscriber_id for m in rows.values()})))}
    exited = set(session.scalars(select(Enrollment.id).where(
        id_in(session, Enrollment.id, {m.enrollment_id for m in rows.values()}), Enrollment.status == "exited")))
    facts = Facts(session, list(subscribers.values()))
    sendable, held = [], []
    for c in chunk:
        msg = rows[c.item.message_id]
        status, reason = status_for(subscribers[msg.subscriber_id], channel, facts)
        if status == states.QUEUED and msg.enrollment_id in exited:
            status, reason = states.SKIPPED, "enrollment exited"
        if status != states.QUEUED:
            stopped = session.execute(
                update(Message).where(Message.id == msg.id, Message.status == states.QUEUED)
                .values(status=status, reason=reason, updated_at=now)
                .execution_options(synchronize_session=False)).rowcount
            if stopped:
                setattr(report, status, getattr(report, status) + 1)
            continue
        (sendable if c.window is None or is_allowed(now, c.window, c.zone) else held).append(c)
    for c in held:
        deferred = session.execute(
            update(Message).where(Message.id == c.item.message_id, Message.status == states.QUEUED)
            .values(status=states.DEFERRED, next_attempt_at=next_allowed(now, c.window, c.zone),
                    reason="outside text hours in the subscriber's time zone", updated_at=now)
            .execution_options(synchronize_session=False)).rowcount
        report.deferred += deferred
        report.not_ours += 1 - deferred
    if not sendable:
        return []
    # One conditional UPDATE leases them all; a row another worker took is simply absent.
    leased = set(session.scalars(
        update(Message)
        .where(id_in(session, Message.id, [c.item.message_id for c in sendable]), Message.status == states.QUEUED)
        .values(status=states.SENDING, lease_token=token, lease_until=now + ctx.lease,
                attempts=Message.attempts + 1, updated_at=now)
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ))
    report.not_ours += len(sendable) - len(leased)
    return [c.item for c in sendable if c.item.message_id in leased]


def _prepare(session, ctx: SendContext, channel, message_ids, report) -> list[Candidate]:
    """Re-check every message (invariants 4 and 5) and compose the sendable ones.
    A handful of queries for the whole batch, whatever its size."""
    now = ctx.clock.now()
    if paused(session, channel):
        report.paused += len(message_ids)  # they stay queued; resuming re-dispatches them
        return []
    messages = session.scalars(
        select(Message).where(id_in(session, Message.id, message_ids), Message.channel == channel)
        .order_by(Message.id)
    ).all()
    queued = [m for m in messages if m.status == states.QUEUED]
    report.not_ours += len(messages) - len(queued)  # sent, leased or settled: a duplicate task
    if not queued:
        return []
    subscribers = {s.id: s for s in session.scalars(
        select(Subscriber).where(id_in(session, Subscriber.id, {m.subscriber_id for m in queued})))}
    enrollments = {e.id: e for e in session.scalars(
        select(Enrollment).where(id_in(session, Enrollment.id, {m.enrollment_id for m in queued})))}
    facts = Facts(session, list(subscribers.values()))
    texts_before = _texts_sent(session, subscribers) if channel == "sms" else {}
    composer = Composer(ctx.renderer, ctx.registry, ctx.base_url, ctx.signer)
    candidates: list[Candidate] = []
    for msg in queued:
        subscriber = subscribers[msg.subscriber_id]
        enrollment = enrollments[msg.enrollment_id]
        if enrollment.status == "exited":
            _finish(msg, states.SKIPPED, f"enrollment exited: {enrollment.exit_reason}", now)
            report.skipped += 1
            continue
        status, reason = status_for(subscriber, channel, facts)
        if status != states.QUEUED:
            _finish(msg, status, reason, now)
            setattr(report, status, getattr(report, status) + 1)
            continue
        try:
            candidate = _compose(ctx, composer, channel, msg, subscriber, texts_before)
        except DefinitionError as exc:
            # The campaign file is broken and no good version is loaded: the message waits,
            # queued, for the fix (the reaper hands it back); ops sees why in the log.
            log.error("message %s waits: campaign %r cannot be loaded: %s", msg.id, msg.campaign_key, exc)
            report.waiting += 1
            continue
        except (RenderError, LookupError) as exc:
            _finish(msg, states.FAILED, "template error", now, error=str(exc))
            report.failed += 1
            continue
        if candidate.window is not None and not is_allowed(now, candidate.window, candidate.zone):
            # Held, not dropped: due again at the next allowed minute.
            msg.status = states.DEFERRED
            msg.next_attempt_at = next_allowed(now, candidate.window, candidate.zone)
            msg.reason = "outside text hours in the subscriber's time zone"
            msg.updated_at = now
            report.deferred += 1
            continue
        candidates.append(candidate)
    session.flush()
    return candidates


def _compose(ctx: SendContext, composer: Composer, channel: str, msg: Message, subscriber: Subscriber,
             texts_before: dict[int, int]) -> Candidate:
    if channel == "email":
        return Candidate(composer.email(msg, subscriber))
    campaign, _ = composer.step_of(msg)
    zone = ZoneInfo(subscriber.timezone or ctx.policy.default_timezone)
    window = step_window(campaign, ["sms"], ctx.policy)  # the campaign's window within text hours
    count = texts_before.get(subscriber.id, 0)
    item = composer.sms(msg, subscriber, count % ctx.stop_help_every == 0)
    texts_before[subscriber.id] = count + 1  # two texts in one batch: only one says STOP
    return Candidate(item, zone, window)


def _texts_sent(session, subscribers: dict) -> dict[int, int]:
    return dict(session.execute(
        select(Message.subscriber_id, func.count(Message.id))
        .where(id_in(session, Message.subscriber_id, subscribers), Message.channel == "sms",
               Message.status.in_((states.SENT, states.DELIVERED, states.UNCONFIRMED)))
        .group_by(Message.subscriber_id)
    ).all())


def _finish(msg: Message, status: str, reason: str | None, now: datetime, error: str | None = None):
    msg.status = status
    msg.reason = reason
    msg.last_error = error
    msg.lease_token = None
    msg.updated_at = now


def backoff(attempt: int, base: float, cap: float, rng=random.random) -> float:
    """Capped exponential backoff with full jitter (AWS architecture blog's variant)."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return ceiling / 2 + rng() * ceiling / 2


@dataclass
class Decision:
    values: dict  # the message's new columns
    counter: str  # which BatchReport field counts it
    suppress_reason: str | None = None
    pause_reason: str | None = None


def decide(result: SendResult, attempts: int, ctx: SendContext, provider: str, now: datetime) -> Decision:
    """The one place that decides what a provider outcome does to a message."""
    base = {"provider": provider, "lease_token": None, "lease_until": None, "updated_at": now,
            "attempts": attempts, "provider_message_id": None, "sent_at": None, "next_attempt_at": None,
            "last_error": result.error}
    if result.outcome is Outcome.ACCEPTED:
        # The row is the record of the send; the events table holds what comes back.
        return Decision({**base, "status": states.SENT, "reason": "accepted by provider",
                         "provider_message_id": result.provider_message_id, "sent_at": now}, "sent")
    if result.outcome is Outcome.TRANSIENT:
        if attempts >= ctx.max_attempts:
            return Decision({**base, "status": states.FAILED, "reason": f"gave up after {attempts} attempts"},
                            "failed")
        delay = max(backoff(attempts, ctx.retry_base, ctx.retry_cap), result.retry_after or 0)
        return Decision({**base, "status": states.RETRY, "reason": "temporary provider error",
                         "next_attempt_at": now + timedelta(seconds=delay)}, "retry")
    if result.outcome is Outcome.CONFIG:
        # Not the recipient's fault: the message waits, queued, while the channel is
        # paused for ops; the attempt does not count against it.
        reason = f"channel paused: provider configuration error ({result.error})"[:200]
        return Decision({**base, "status": states.QUEUED, "reason": reason, "attempts": max(0, attempts - 1)},
                        "paused", pause_reason=f"{provider}: {result.error}")
    if result.outcome is Outcome.PERMANENT:
        return Decision({**base, "status": states.FAILED, "reason": result.suppress_reason or "rejected by provider"},
                        "failed", suppress_reason=result.suppress_reason)
    return Decision({**base, "status": states.UNCONFIRMED,
                     "reason": "provider call outcome unknown; awaiting webhook"}, "unconfirmed")


_COLUMNS = {"status": "text", "reason": "text", "provider": "text", "provider_message_id": "text",
            "sent_at": "timestamptz", "last_error": "text", "next_attempt_at": "timestamptz", "attempts": "int",
            "lease_token": "text", "lease_until": "timestamptz", "updated_at": "timestamptz"}


def _write_decisions(session: Session, decisions: dict[int, Decision], token: str) -> set[int]:
    """The compare-and-set writes; returns the ids whose write took. One statement over
    arrays on PostgreSQL, one small UPDATE per row on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        rows = [{"id": mid, **d.values} for mid, d in decisions.items()]
        source, params = unnest({"id": "int", **_COLUMNS}, rows)
        sql = text(f"UPDATE messages SET {', '.join(f'{c} = v.{c}' for c in _COLUMNS)} "
                   f"FROM {source} AS v(id, {', '.join(_COLUMNS)}) "
                   "WHERE messages.id = v.id AND messages.status IN (:sending, :unconfirmed) "
                   "AND messages.lease_token = :token RETURNING messages.id")
        return set(session.scalars(sql, {"sending": states.SENDING, "unconfirmed": states.UNCONFIRMED,
                                         "token": token, **params}))
    table = Message.__table__
    stmt = (update(table).where(table.c.id == bindparam("b_id"),
                                table.c.status.in_((states.SENDING, states.UNCONFIRMED)),
                                table.c.lease_token == token)
            .values({c: bindparam(f"v_{c}") for c in _COLUMNS}))
    applied = set()
    for mid, d in decisions.items():
        if session.execute(stmt, {"b_id": mid, **{f"v_{c}": d.values[c] for c in _COLUMNS}}).rowcount:
            applied.add(mid)
    return applied


def record_results(session: Session, ctx: SendContext, results: list[SendResult], token: str,
                   provider: str, report: BatchReport) -> None:
    """Record a provider's answers where our lease still holds.

    Each write is a compare-and-set (WHERE lease_token = ours and the row is still sending,
    or was marked unconfirmed by the reaper while the call ran long: a late definite answer
    still counts), so a webhook that settled it first wins (webhooks clear the token) and
    nothing moves backwards, with no row locks held across the batch.
    """
    now = ctx.clock.now()
    ids = [r.message_id for r in results]
    rows = {mid: (attempts, sid, channel) for mid, attempts, sid, channel in session.execute(
        select(Message.id, Message.attempts, Message.subscriber_id, Message.channel)
        .where(id_in(session, Message.id, ids)))}
    decisions = {r.message_id: decide(r, rows[r.message_id][0], ctx, provider, now)
                 for r in results if r.message_id in rows}
    applied = _write_decisions(session, decisions, token) if decisions else set()
    lost = set(ids) - applied  # settled first by a webhook or the reaper: theirs stands
    report.not_ours += len(lost)
    for mid, d in decisions.items():
        if mid in lost:
            continue
        setattr(report, d.counter, getattr(report, d.counter) + 1)
        _, subscriber_id, channel = rows[mid]
        if d.suppress_reason:
            address = address_for(session.get(Subscriber, subscriber_id), channel)
            if address:
                suppress(session, ctx.clock, channel, address, d.suppress_reason, provider)
        if d.pause_reason:
            pause(session, ctx.clock, channel, d.pause_reason, by="provider")
            log.error("provider %s configuration error, %s channel paused: %s", provider, channel, d.pause_reason)
    log.info("%s batch recorded: %d results, %d settled elsewhere first", provider, len(results), len(lost))


def settle_unconfirmed(session: Session, clock: Clock, lookups: dict[str, object]) -> tuple[Work, dict[str, int]]:
    """Ask providers that can tell (the local outbox can) whether unconfirmed messages
    went out: found ones become sent, missing ones are queued again (returned, to be
    enqueued after commit), the rest wait for a webhook or ops."""
    now = clock.now()
    work = Work()
    counts = {"sent": 0, "requeued": 0, "waiting": 0}
    unconfirmed = select(Message).where(Message.status == states.UNCONFIRMED).with_for_update(skip_locked=True)
    for msg in session.scalars(unconfirmed).all():
        provider = lookups.get(msg.channel)
        lookup = getattr(provider, "lookup", None)
        found = lookup(msg.id) if lookup else None
        if found is not None:
            msg.lease_token = None  # settled: a late answer from the first call changes nothing
        if found is True:
            msg.status, msg.reason, msg.sent_at = states.SENT, "confirmed by provider look-up", now
            msg.provider = provider.name
            counts["sent"] += 1
        elif found is False:
            msg.status, msg.reason, msg.enqueued_at = states.QUEUED, "provider never received it; sending again", now
            counts["requeued"] += 1
            work.add(msg.channel, msg.id)
        else:
            counts["waiting"] += 1
        msg.updated_at = now
    return work, counts
