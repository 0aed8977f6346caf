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
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from campaigns import states
from campaigns.batching import (
    PLACEHOLDER_LINKS,
    PLACEHOLDER_NAME,
    SharedEmail,
    matches,
    substitutions,
)
from campaigns.channels import pause, paused
from campaigns.clock import Clock
from campaigns.db import transaction
from campaigns.definitions import Registry
from campaigns.links import Signer, links_for
from campaigns.models import Enrollment, Event, Message, Subscriber
from campaigns.redact import mask
from campaigns.rendering import Recipient, RenderedEmail, Renderer, RenderError
from campaigns.scheduling import Policy, Work, initial_status
from campaigns.subscribers import address_for, suppress
from campaigns.windows import is_allowed, next_allowed

log = logging.getLogger(__name__)


class Outcome(str, Enum):
    ACCEPTED = "accepted"  # the provider took it
    TRANSIENT = "transient"  # 429, 5xx, connection refused: safe to try again later
    PERMANENT = "permanent"  # this recipient or message will never work
    CONFIG = "config"  # our credentials or sender are wrong: stop the channel, tell ops
    UNKNOWN = "unknown"  # may or may not have been sent (timeout after the request left)


@dataclass
class SendResult:
    message_id: int
    outcome: Outcome
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    suppress_reason: str | None = None  # add the address to suppressions (21610, 21211, ...)


@dataclass
class OutgoingEmail:
    message_id: int
    to: str
    content: RenderedEmail  # this recipient's own rendering
    unsubscribe_url: str
    # Opaque reference for webhooks; nothing about the person's health (invariant 8).
    reference: str
    # When set, `shared.content` filled in with `substitutions` is exactly `content`, so
    # a batching provider may send everyone with the same `shared.key` in one request.
    shared: SharedEmail | None = None
    substitutions: dict[str, str] = field(default_factory=dict)
    # Not an outbox message (a marketer's test send, a notice to the care team): no row,
    # so providers must not take message_id as a key.
    adhoc: bool = False


@dataclass
class OutgoingSms:
    message_id: int
    to: str
    body: str
    reference: str
    adhoc: bool = False


class EmailProvider(Protocol):
    name: str
    max_batch: int

    def send_emails(self, emails: list[OutgoingEmail]) -> list[SendResult]: ...


class SmsProvider(Protocol):
    name: str
    max_batch: int

    def send_sms(self, texts: list[OutgoingSms]) -> list[SendResult]: ...


class RateLimiter(Protocol):
    def acquire(self, n: int = 1) -> None: ...


class NoLimit:
    def acquire(self, n: int = 1) -> None:
        return None


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
    ctx.limiters.get(channel, NoLimit()).acquire(len(outgoing))
    try:
        if channel == "email":
            results = ctx.email_provider.send_emails(outgoing)
        else:
            results = ctx.sms_provider.send_sms(outgoing)
    except Exception as exc:
        log.exception("provider raised instead of classifying; marking batch unconfirmed")
        results = [SendResult(o.message_id, Outcome.UNKNOWN, error=f"provider raised {exc!r}") for o in outgoing]
    provider = ctx.email_provider.name if channel == "email" else ctx.sms_provider.name
    with transaction(ctx.factory) as session:
        for result in results:
            apply_result(session, ctx, result, token, provider, report)
    return report


def _prepare(session, ctx: SendContext, channel, message_ids, token, report) -> list:
    now = ctx.clock.now()
    outgoing = []
    shared_cache: dict[str, SharedEmail | None] = {}
    if paused(session, channel):
        report.paused += len(message_ids)  # they stay queued; resuming re-dispatches them
        return outgoing
    messages = session.scalars(
        select(Message).where(Message.id.in_(message_ids), Message.channel == channel).order_by(Message.id)
    ).all()
    for msg in messages:
        if msg.status != states.QUEUED:
            report.not_ours += 1  # sent, leased or settled already: a duplicate task
            continue
        subscriber = session.get(Subscriber, msg.subscriber_id)
        enrollment = session.get(Enrollment, msg.enrollment_id)
        if enrollment.status == "exited":
            _finish(session, msg, states.SKIPPED, f"enrollment exited: {enrollment.exit_reason}", now)
            report.skipped += 1
            continue
        status, reason = initial_status(session, subscriber, channel)
        if status != states.QUEUED:
            _finish(session, msg, status, reason, now)
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
            item = _render(session, ctx, msg, subscriber, channel, shared_cache)
        except (RenderError, LookupError) as exc:
            _finish(session, msg, states.FAILED, "template error", now, error=str(exc))
            report.failed += 1
            continue
        leased = session.execute(
            update(Message)
            .where(Message.id == msg.id, Message.status == states.QUEUED)
            .values(
                status=states.SENDING, lease_token=token, lease_until=now + ctx.lease,
                attempts=Message.attempts + 1, updated_at=now,
            )
        ).rowcount
        if leased == 1:
            outgoing.append(item)
        else:
            report.not_ours += 1
    return outgoing


def _render(session, ctx: SendContext, msg: Message, subscriber: Subscriber, channel: str,
            shared_cache: dict):
    campaign = ctx.registry.get(msg.campaign_key)
    step = campaign.step(msg.step_key)
    if step is None:
        raise LookupError(f"step {msg.step_key!r} is no longer in campaign {campaign.key!r}")
    links = links_for(ctx.base_url, ctx.signer, msg.public_token)
    recipient = Recipient(first_name=subscriber.first_name, locale=subscriber.locale)
    reference = msg.public_token
    if channel == "email":
        content = ctx.renderer.email(campaign, step, recipient, links)
        item = OutgoingEmail(msg.id, subscriber.email, content, links.unsubscribe, reference)
        locale = campaign.locale_for(subscriber.locale)
        key = f"{campaign.key}/{campaign.version}/{step.key}/{locale}/{bool(subscriber.first_name)}"
        if key not in shared_cache:
            placeholder = Recipient(first_name=PLACEHOLDER_NAME if subscriber.first_name else None,
                                    locale=subscriber.locale)
            shared_cache[key] = SharedEmail(key, ctx.renderer.email(campaign, step, placeholder, PLACEHOLDER_LINKS))
        shared = shared_cache[key]
        subs = substitutions(subscriber.first_name, links)
        if shared is not None and matches(shared.content, content, subs):
            item.shared, item.substitutions = shared, subs
        return item
    texts_before = session.scalar(
        select(func.count(Message.id)).where(
            Message.subscriber_id == subscriber.id, Message.channel == "sms",
            Message.status.in_((states.SENT, states.DELIVERED, states.UNCONFIRMED)),
        )
    )
    show = texts_before % ctx.stop_help_every == 0
    body = ctx.renderer.sms(campaign, step, recipient, links, show_stop_help=show)
    return OutgoingSms(msg.id, subscriber.phone, body, reference)


def _finish(session, msg: Message, status: str, reason: str | None, now: datetime, error: str | None = None):
    msg.status = status
    msg.reason = reason
    msg.last_error = error
    msg.lease_token = None
    msg.updated_at = now


def backoff(attempt: int, base: float, cap: float, rng=random.random) -> float:
    """Capped exponential backoff with full jitter (AWS architecture blog's variant)."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return ceiling / 2 + rng() * ceiling / 2


def apply_result(session: Session, ctx: SendContext, result: SendResult, token: str,
                 provider: str, report: BatchReport) -> None:
    now = ctx.clock.now()
    # Locked: a webhook committing between this read and the write would otherwise be
    # overwritten, moving a delivered message back to sent.
    msg = session.get(Message, result.message_id, with_for_update=True)
    if msg is None or msg.status != states.SENDING or msg.lease_token != token:
        # The reaper declared it unconfirmed meanwhile; a webhook will settle it.
        report.not_ours += 1
        return
    msg.provider = provider
    msg.lease_token = None
    msg.lease_until = None
    msg.updated_at = now
    if result.outcome is Outcome.ACCEPTED:
        msg.status = states.SENT
        msg.reason = "accepted by provider"
        msg.provider_message_id = result.provider_message_id
        msg.sent_at = now
        msg.last_error = None
        session.add(Event(message_id=msg.id, subscriber_id=msg.subscriber_id, type=states.EventType.SENT,
                          provider=provider, occurred_at=now, received_at=now,
                          payload={"provider_message_id": result.provider_message_id}))
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
    log.info("message %s to %s: %s", msg.id, mask(_address(session, msg)), msg.status)


def _address(session, msg: Message) -> str | None:
    sub = session.get(Subscriber, msg.subscriber_id)
    return address_for(sub, msg.channel) if sub else None


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
