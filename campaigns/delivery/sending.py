"""Sending a batch of outbox messages.

    send_batch(channel, ids)
      1. prepare (one transaction): re-read the messages; re-check course, suppression
         and consent (invariant 4, campaigns.audience.eligibility.recheck) and the text
         hours and send window (invariant 5); compose every sendable message, rendering
         each step once.
      2. then chunk by chunk: wait for rate-limit tokens; lease the chunk (the same
         re-check again, then a conditional UPDATE .. WHERE status='queued', so a
         duplicate task or a second worker gets nothing); judge each message's window once
         more at the moment of the provider call; call the provider; record the answers
         where our lease still holds (campaigns.delivery.outcomes).

Windows are [start, end) and judged by the clock read right before the provider call,
per chunk: leasing takes a transaction (seconds, when the database is slow), so a message
inside its window at the lease may be outside it at the call; it goes back to `deferred`
until the window's next opening, never out. `sent_at` records that same instant.

Rows are leased only just before their own provider call, so if the worker dies, or
anything fails, between chunks, the rows not yet handed over are still `queued` (the
reaper re-enqueues them) and only a chunk whose call may have happened can become
`unconfirmed`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from campaigns.audience.eligibility import recheck, stop_for
from campaigns.clock import Clock
from campaigns.content.rendering import Renderer, RenderError
from campaigns.db import id_in, transaction
from campaigns.delivery.claiming import queue_fallback
from campaigns.delivery.composing import Composer
from campaigns.delivery.outcomes import BatchReport, Retries, record_results
from campaigns.delivery.pauses import paused
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
from campaigns.links import Signer
from campaigns.models import Message, Subscriber
from campaigns.reasons import Reason
from campaigns.sequences.campaign import DefinitionError
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy, step_window
from campaigns.sequences.windows import Window, is_allowed, next_allowed
from campaigns.states import HANDED_OVER, IN_FLIGHT, Channel, MessageStatus

log = logging.getLogger(__name__)


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

    @property
    def retries(self) -> Retries:
        return Retries(self.max_attempts, self.retry_base, self.retry_cap)


@dataclass
class Candidate:
    item: OutgoingEmail | OutgoingSms
    zone: ZoneInfo | None = None  # the subscriber's zone and the window the message may
    window: Window | None = None  # go in (None: any time), checked again at the call


class _Judge:
    """Whether candidates' windows are open at one instant, worked out once per window
    and zone (a batch shares a few of each), and where a closed one waits until."""

    def __init__(self, at: datetime, margin: timedelta = timedelta(0)):
        self.at = at
        # A chunk's calls take time (several texts, a slow provider): a window must still
        # be open `margin` after the check, so no call lands after it closes.
        self.margin = margin
        self._open: dict[tuple[Window, ZoneInfo | None], bool] = {}

    def closed(self, c: Candidate) -> bool:
        if c.window is None:
            return False
        key = (c.window, c.zone)
        if key not in self._open:
            self._open[key] = is_allowed(self.at, c.window, c.zone) and is_allowed(
                self.at + self.margin, c.window, c.zone
            )
        return not self._open[key]

    def deferral(self, c: Candidate) -> dict:
        """Held, not dropped: due again at the window's next opening."""
        reason = (
            Reason.OUTSIDE_TEXT_HOURS
            if isinstance(c.item, OutgoingSms)
            else Reason.OUTSIDE_SEND_WINDOW
        )
        return {
            "status": MessageStatus.DEFERRED,
            **reason.values(),
            "next_attempt_at": next_allowed(self.at, c.window, c.zone),
        }


def send_batch(ctx: SendContext, channel: str, message_ids: list[int]) -> BatchReport:
    """Send a batch: re-check and compose everything, then, chunk by chunk, wait for
    rate-limit tokens, lease the chunk, call the provider, record the answers."""
    report = BatchReport()
    token = str(uuid.uuid4())
    with transaction(ctx.factory) as session:
        candidates = _prepare(session, ctx, channel, message_ids, report)
    if not candidates:
        return report
    limiter = ctx.limiters.get(channel, NoLimit())
    provider = ctx.email_provider if channel == Channel.EMAIL else ctx.sms_provider
    # Texts go in chunks of the limiter's burst, each after its own tokens, so a batch
    # never reaches the provider as one clump; an email batch is one provider request.
    size = (
        len(candidates)
        if channel == Channel.EMAIL
        else max(1, int(getattr(limiter, "burst", len(candidates))))
    )
    by_id = {c.item.message_id: c for c in candidates}
    for start in range(0, len(candidates), size):
        with transaction(ctx.factory) as session:
            # Still ours to send? (A duplicate task may have taken some.) The rest of the
            # batch is marked fresh, so the reaper does not hand it out again meanwhile.
            pending = _still_queued(
                session, ctx, candidates[start : start + size], candidates[start + size :]
            )
        if not pending:
            continue
        limiter.acquire(len(pending))
        with transaction(ctx.factory) as session:
            chunk = _lease(session, ctx, channel, pending, token, report)
        chunk, called_at = _at_the_call(ctx, chunk, by_id, token, report)
        if not chunk:
            continue
        try:
            results = (
                provider.send_emails(chunk)
                if channel == Channel.EMAIL
                else provider.send_sms(chunk)
            )
        except Exception as exc:
            log.exception(
                "provider %s raised instead of classifying; chunk marked unconfirmed", provider.name
            )
            error = f"provider raised {type(exc).__name__}"  # the text may hold an address
            results = [SendResult(o.message_id, Outcome.UNKNOWN, error=error) for o in chunk]
        with transaction(ctx.factory) as session:
            record_results(
                session,
                ctx.clock,
                ctx.retries,
                results,
                token,
                provider.name,
                report,
                called_at=called_at,
            )
    return report


def _at_the_call(
    ctx: SendContext, chunk: list, by_id: dict[int, Candidate], token: str, report: BatchReport
) -> tuple[list, datetime]:
    """The leased chunk whose windows are open now, and now: the last clock read before
    the provider call. What closed while the chunk was leased goes back to `deferred`;
    that takes a transaction, so the rest is judged again after it."""
    while True:
        judge = _Judge(ctx.clock.now(), ctx.policy.call_margin)
        closed = [item for item in chunk if judge.closed(by_id[item.message_id])]
        if not closed:
            return chunk, judge.at
        with transaction(ctx.factory) as session:
            for item in closed:
                held = _unlease(
                    session,
                    item.message_id,
                    token,
                    judge.at,
                    **judge.deferral(by_id[item.message_id]),
                )
                report.deferred += held
                report.not_ours += 1 - held
        gone = {item.message_id for item in closed}
        chunk = [item for item in chunk if item.message_id not in gone]
        if not chunk:
            return [], judge.at


def _unlease(session: Session, message_id: int, token: str, now: datetime, **values) -> int:
    """Give back a leased message whose provider call was not made: the attempt it was
    charged with did not happen. 1 if our lease still held, 0 if the reaper took it."""
    return session.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.status == MessageStatus.SENDING,
            Message.lease_token == token,
        )
        .values(
            **values,
            lease_token=None,
            lease_until=None,
            attempts=Message.attempts - 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount


def _prepare(
    session: Session, ctx: SendContext, channel: str, message_ids: list[int], report: BatchReport
) -> list[Candidate]:
    """Re-check every message (invariants 4 and 5) and compose the sendable ones.
    A handful of queries for the whole batch, whatever its size."""
    now = ctx.clock.now()
    if paused(session, channel):
        report.paused += len(message_ids)  # they stay queued; resuming re-dispatches them
        return []
    messages = session.scalars(
        select(Message)
        .where(id_in(session, Message.id, message_ids), Message.channel == channel)
        .order_by(Message.id)
    ).all()
    queued = [m for m in messages if m.status == MessageStatus.QUEUED]
    report.not_ours += len(messages) - len(queued)  # sent, leased or settled: a duplicate task
    if not queued:
        return []
    checked = recheck(session, queued, channel)
    texts_before = _texts_sent(session, checked.subscribers) if channel == Channel.SMS else {}
    mailed = _mailed_steps(session, queued) if channel == Channel.SMS else set()
    composer = Composer(ctx.renderer, ctx.registry, ctx.base_url, ctx.signer)
    judge = _Judge(now)
    candidates: list[Candidate] = []
    for msg in queued:
        stop = checked.stops.get(msg.id)
        if stop is not None:
            _set(msg, now, **stop.values(), last_error=None)
            report.count(stop.status)
            if channel == Channel.EMAIL and stop.reason in EMAIL_ONLY_STOPS:
                _fall_back(session, ctx, composer, msg, checked, stop, now)
            continue
        try:
            candidate = _compose(
                ctx,
                composer,
                channel,
                msg,
                checked.subscribers[msg.subscriber_id],
                texts_before,
                text_only=(msg.enrollment_id, msg.step_key) not in mailed,
            )
        except DefinitionError as exc:
            # The campaign file is broken and no good version is loaded: the message waits,
            # queued, for the fix (the reaper hands it back); ops sees why in the log.
            log.error(
                "message %s waits: campaign %r cannot be loaded: %s", msg.id, msg.campaign_key, exc
            )
            report.waiting += 1
            continue
        except (RenderError, LookupError) as exc:
            _set(
                msg,
                now,
                status=MessageStatus.FAILED,
                **Reason.TEMPLATE_ERROR.values(),
                last_error=str(exc),
            )
            report.failed += 1
            continue
        if judge.closed(candidate):
            _set(msg, now, **judge.deferral(candidate))
            report.deferred += 1
            continue
        candidates.append(candidate)
    session.flush()
    return candidates


def _still_queued(
    session: Session, ctx: SendContext, chunk: list[Candidate], later: list[Candidate]
) -> list[Candidate]:
    ids = [c.item.message_id for c in chunk + later]
    queued = set(
        session.scalars(
            select(Message.id).where(
                id_in(session, Message.id, ids), Message.status == MessageStatus.QUEUED
            )
        )
    )
    if later:
        session.execute(
            update(Message)
            .where(
                id_in(session, Message.id, [c.item.message_id for c in later]),
                Message.status == MessageStatus.QUEUED,
            )
            .values(enqueued_at=ctx.clock.now())
            .execution_options(synchronize_session=False)
        )
    return [c for c in chunk if c.item.message_id in queued]


def _lease(
    session: Session,
    ctx: SendContext,
    channel: str,
    chunk: list[Candidate],
    token: str,
    report: BatchReport,
) -> list:
    """Lease a chunk right before its provider call, after the same re-check as
    `_prepare` (what may have changed while it waited for tokens: an unsubscribe, STOP,
    bounce or complaint, an exited course, a paused channel) and the text hours."""
    now = ctx.clock.now()
    if paused(session, channel):
        report.paused += len(chunk)  # they stay queued; resuming re-dispatches them
        return []
    rows = session.scalars(
        select(Message).where(id_in(session, Message.id, [c.item.message_id for c in chunk]))
    )
    checked = recheck(session, list(rows), channel)
    judge = _Judge(now)
    sendable = []
    for c in chunk:
        stop = checked.stops.get(c.item.message_id)
        if stop is not None:
            report.count(
                stop.status, _update_if_queued(session, c.item.message_id, now, **stop.values())
            )
        elif judge.closed(c):
            held = _update_if_queued(session, c.item.message_id, now, **judge.deferral(c))
            report.deferred += held
            report.not_ours += 1 - held
        else:
            sendable.append(c)
    if not sendable:
        return []
    # One conditional UPDATE leases them all; a row another worker took is simply absent.
    leased = set(
        session.scalars(
            update(Message)
            .where(
                id_in(session, Message.id, [c.item.message_id for c in sendable]),
                Message.status == MessageStatus.QUEUED,
            )
            .values(
                status=MessageStatus.SENDING,
                lease_token=token,
                lease_until=now + ctx.lease,
                attempts=Message.attempts + 1,
                updated_at=now,
            )
            .returning(Message.id)
            .execution_options(synchronize_session=False)
        )
    )
    report.not_ours += len(sendable) - len(leased)
    return [c.item for c in sendable if c.item.message_id in leased]


def _update_if_queued(session: Session, message_id: int, now: datetime, **values) -> int:
    """Move a message that is still queued; 1 if it was, 0 if someone else had it."""
    return session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.QUEUED)
        .values(**values, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount


def _compose(
    ctx: SendContext,
    composer: Composer,
    channel: str,
    msg: Message,
    subscriber: Subscriber,
    texts_before: dict[int, int],
    text_only: bool = False,
) -> Candidate:
    campaign, step = composer.step_of(msg)
    if channel == Channel.EMAIL:
        window = step_window(campaign, [Channel.EMAIL], ctx.policy)  # the course's own
        if window.always_open:
            return Candidate(composer.email(msg, subscriber))
        return Candidate(composer.email(msg, subscriber), ctx.policy.zone(subscriber), window)
    # The campaign's window within the text hours.
    window = step_window(campaign, [Channel.SMS], ctx.policy)
    count = texts_before.get(subscriber.id, 0)
    # What texts cost is said in the course's first text (the sign-up and JOIN confirmations
    # say it too); the lint keeps that text within its segments with the line.
    item = composer.sms(
        msg, subscriber, count % ctx.stop_help_every == 0, text_only, first_text=step.index == 0
    )
    texts_before[subscriber.id] = count + 1  # two texts in one batch: only one says STOP
    return Candidate(item, ctx.policy.zone(subscriber), window)


# Stops that close the mailbox but not the phone: a step with a text fallback still goes.
EMAIL_ONLY_STOPS = (Reason.ADDRESS_SUPPRESSED, Reason.NO_CONSENT, Reason.NO_ADDRESS)


def _fall_back(session, ctx, composer, msg: Message, checked, stop, now) -> None:
    """The email of a step with a fallback was stopped after it was claimed (a bounce or
    an unsubscribe from mail in between): the step goes by text instead, as it would have
    at the claim. The text row waits as `deferred` due now, so the next tick releases it
    onto the text queue, after this transaction commits."""
    try:
        _, step = composer.step_of(msg)
    except (DefinitionError, LookupError):
        return
    subscriber = checked.subscribers[msg.subscriber_id]
    if not step.fallback or stop_for(subscriber, step.fallback, checked.facts) is not None:
        return
    queue_fallback(session, msg, step.fallback, now, Reason.FALLBACK.values(why=stop.text))


def _mailed_steps(session: Session, texts: list[Message]) -> set[tuple[int, str]]:
    """(enrollment, step) of the texts whose step also goes, or went, to the person by
    email: their text is a companion. The others are the lesson itself (text only)."""
    enrollments = {m.enrollment_id for m in texts if m.enrollment_id is not None}
    if not enrollments:
        return set()
    rows = session.execute(
        select(Message.enrollment_id, Message.step_key).where(
            id_in(session, Message.enrollment_id, enrollments),
            Message.channel == Channel.EMAIL,
            # Going, or gone out: a failed, bounced or stopped email does not count.
            Message.status.in_((*IN_FLIGHT, *HANDED_OVER, MessageStatus.DELIVERED)),
        )
    )
    return {(eid, key) for eid, key in rows}


def _texts_sent(session: Session, subscribers: dict) -> dict[int, int]:
    return dict(
        session.execute(
            select(Message.subscriber_id, func.count(Message.id))
            .where(
                id_in(session, Message.subscriber_id, subscribers),
                Message.channel == Channel.SMS,
                Message.status.in_(HANDED_OVER),
            )
            .group_by(Message.subscriber_id)
        ).all()
    )


def _set(msg: Message, now: datetime, **values) -> None:
    """A status change made before any provider call: no lease is left behind."""
    for column, value in {**values, "lease_token": None, "updated_at": now}.items():
        setattr(msg, column, value)
