"""Sending a batch of outbox messages, and the provider interface it calls.

    send_batch(ids)
      1. one transaction: re-read each message; re-check enrollment, suppression and
         consent (invariant 4) and the text hours (invariant 5); render; then lease the
         ones still queued (conditional UPDATE .. WHERE status='queued', so a duplicate
         task or a second worker gets nothing). Commit.
      2. wait on the shared rate limiter, call the provider once for the batch.
      3. one transaction: record each result, but only where our lease still holds.

One place, `apply_result`, decides what a provider outcome does to a message.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from campaigns import states
from campaigns.channels import pause, paused
from campaigns.clock import Clock
from campaigns.composing import Composer
from campaigns.db import transaction
from campaigns.definitions import Registry
from campaigns.links import Signer
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.provider_api import (
    EmailProvider,
    NoLimit,
    Outcome,
    OutgoingEmail,
    OutgoingSms,
    RateLimiter,
    SendResult,
    SmsProvider,
)
from campaigns.rendering import Renderer, RenderError
from campaigns.scheduling import Policy, Work, status_for
from campaigns.subscribers import Facts, address_for, suppress
from campaigns.windows import is_allowed, next_allowed

log = logging.getLogger(__name__)

# The provider interface lives in campaigns.provider_api; re-exported here for callers.
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


def send_batch(ctx: SendContext, channel: str, message_ids: list[int]) -> BatchReport:
    report = BatchReport()
    token = str(uuid.uuid4())
    with transaction(ctx.factory) as session:
        outgoing = _prepare(session, ctx, channel, message_ids, token, report)
    if not outgoing:
        return report
    limiter = ctx.limiters.get(channel, NoLimit())
    provider = ctx.email_provider if channel == "email" else ctx.sms_provider
    # Texts go in chunks of the limiter's burst, each after its own tokens, so a batch
    # never reaches the provider as one clump; an email batch is one provider request.
    size = len(outgoing) if channel == "email" else max(1, int(getattr(limiter, "burst", len(outgoing))))
    for start in range(0, len(outgoing), size):
        chunk = outgoing[start:start + size]
        began = time.monotonic()
        limiter.acquire(len(chunk))
        if time.monotonic() - began > ctx.lease.total_seconds() / 2:
            _extend_lease(ctx, token)  # a long wait for tokens must not look like a dead worker
        try:
            results = provider.send_emails(chunk) if channel == "email" else provider.send_sms(chunk)
        except Exception as exc:
            log.exception("provider raised instead of classifying; marking batch unconfirmed")
            results = [SendResult(o.message_id, Outcome.UNKNOWN, error=f"provider raised {exc!r}") for o in chunk]
        with transaction(ctx.factory) as session:
            record_results(session, ctx, results, token, provider.name, report)
    return report


def _extend_lease(ctx: SendContext, token: str) -> None:
    with transaction(ctx.factory) as session:
        session.execute(update(Message).where(Message.lease_token == token, Message.status == states.SENDING)
                        .values(lease_until=ctx.clock.now() + ctx.lease)
                        .execution_options(synchronize_session=False))


def _prepare(session, ctx: SendContext, channel, message_ids, token, report) -> list:
    """Re-check every message (invariants 4 and 5), compose the sendable ones, lease them.
    A handful of queries for the whole batch, whatever its size."""
    now = ctx.clock.now()
    if paused(session, channel):
        report.paused += len(message_ids)  # they stay queued; resuming re-dispatches them
        return []
    messages = session.scalars(
        select(Message).where(Message.id.in_(message_ids), Message.channel == channel).order_by(Message.id)
    ).all()
    queued = [m for m in messages if m.status == states.QUEUED]
    report.not_ours += len(messages) - len(queued)  # sent, leased or settled: a duplicate task
    if not queued:
        return []
    subscribers = {s.id: s for s in session.scalars(
        select(Subscriber).where(Subscriber.id.in_({m.subscriber_id for m in queued})))}
    enrollments = {e.id: e for e in session.scalars(
        select(Enrollment).where(Enrollment.id.in_({m.enrollment_id for m in queued})))}
    facts = Facts(session, list(subscribers.values()))
    texts_before = _texts_sent(session, subscribers) if channel == "sms" else {}
    composer = Composer(ctx.renderer, ctx.registry, ctx.base_url, ctx.signer)
    candidates = {}
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
        if channel == "sms":
            zone = ZoneInfo(subscriber.timezone or ctx.policy.default_timezone)
            if not is_allowed(now, ctx.policy.sms_window, zone):
                # Held, not dropped: due again at the next allowed minute.
                msg.status = states.DEFERRED
                msg.next_attempt_at = next_allowed(now, ctx.policy.sms_window, zone)
                msg.reason = "outside text hours in the subscriber's time zone"
                msg.updated_at = now
                report.deferred += 1
                continue
        try:
            if channel == "email":
                candidates[msg.id] = composer.email(msg, subscriber)
            else:
                count = texts_before.get(subscriber.id, 0)
                texts_before[subscriber.id] = count + 1  # two texts in one batch: only one says STOP
                candidates[msg.id] = composer.sms(msg, subscriber, count % ctx.stop_help_every == 0)
        except (RenderError, LookupError) as exc:
            _finish(msg, states.FAILED, "template error", now, error=str(exc))
            report.failed += 1
    session.flush()
    if not candidates:
        return []
    # One conditional UPDATE leases them all; a row another worker took is simply absent.
    leased = set(session.scalars(
        update(Message)
        .where(Message.id.in_(candidates), Message.status == states.QUEUED)
        .values(status=states.SENDING, lease_token=token, lease_until=now + ctx.lease,
                attempts=Message.attempts + 1, updated_at=now)
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ))
    report.not_ours += len(candidates) - len(leased)
    return [item for mid, item in candidates.items() if mid in leased]


def _texts_sent(session, subscribers: dict) -> dict[int, int]:
    return dict(session.execute(
        select(Message.subscriber_id, func.count(Message.id))
        .where(Message.subscriber_id.in_(subscribers), Message.channel == "sms",
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


def record_results(session: Session, ctx: SendContext, results: list[SendResult], token: str,
                   provider: str, report: BatchReport) -> None:
    """Record a provider's answers, only where our lease still holds. The rows are locked:
    a webhook committing between the read and the write would otherwise be overwritten,
    moving a delivered message back to sent."""
    rows = {m.id: m for m in session.scalars(
        select(Message).where(Message.id.in_([r.message_id for r in results])).with_for_update())}
    for result in results:
        msg = rows.get(result.message_id)
        if msg is None or msg.status != states.SENDING or msg.lease_token != token:
            # The reaper declared it unconfirmed meanwhile; a webhook will settle it.
            report.not_ours += 1
            continue
        apply_result(session, ctx, msg, result, provider, report)


def apply_result(session: Session, ctx: SendContext, msg: Message, result: SendResult, provider: str,
                 report: BatchReport) -> None:
    """The one place that decides what a provider outcome does to a message."""
    now = ctx.clock.now()
    msg.provider = provider
    msg.lease_token = None
    msg.lease_until = None
    msg.updated_at = now
    if result.outcome is Outcome.ACCEPTED:
        msg.status = states.SENT
        msg.reason = "accepted by provider"
        msg.provider_message_id = result.provider_message_id
        msg.sent_at = now  # the row is the record of the send; events hold what comes back
        msg.last_error = None
        report.sent += 1
    elif result.outcome is Outcome.TRANSIENT:
        msg.last_error = result.error
        if msg.attempts >= ctx.max_attempts:
            msg.status = states.FAILED
            msg.reason = f"gave up after {msg.attempts} attempts"
            report.failed += 1
        else:
            delay = max(backoff(msg.attempts, ctx.retry_base, ctx.retry_cap), result.retry_after or 0)
            msg.status = states.RETRY
            msg.reason = "temporary provider error"
            msg.next_attempt_at = now + timedelta(seconds=delay)
            report.retry += 1
    elif result.outcome is Outcome.CONFIG:
        # Not the recipient's fault: the message waits, queued, while the channel is
        # paused for ops; the attempt does not count against it.
        msg.status = states.QUEUED
        msg.attempts = max(0, msg.attempts - 1)
        msg.reason = f"channel paused: provider configuration error ({result.error})"[:200]
        msg.last_error = result.error
        pause(session, ctx.clock, msg.channel, f"{provider}: {result.error}", by="provider")
        log.error("provider %s configuration error, %s channel paused: %s", provider, msg.channel, result.error)
        report.paused += 1
    elif result.outcome is Outcome.PERMANENT:
        msg.status = states.FAILED
        msg.reason = result.suppress_reason or "rejected by provider"
        msg.last_error = result.error
        if result.suppress_reason:
            subscriber = session.get(Subscriber, msg.subscriber_id)
            address = address_for(subscriber, msg.channel)
            if address:
                suppress(session, ctx.clock, msg.channel, address, result.suppress_reason, provider)
        report.failed += 1
    else:
        msg.status = states.UNCONFIRMED
        msg.reason = "provider call outcome unknown; awaiting webhook"
        msg.last_error = result.error
        report.unconfirmed += 1
    log.info("message %s: %s", msg.id, msg.status)


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
