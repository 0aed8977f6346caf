"""What a provider's answer does to a message: the outcome policy and its write-back.

`decide` is the one place that turns a provider outcome into a message's new state
(sent, retry with backoff, failed, paused channel, unconfirmed). `record_results` writes
those decisions with compare-and-set, so an answer only lands while our lease holds.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from campaigns.audience.subscribers import address_for
from campaigns.audience.suppression import suppress
from campaigns.clock import Clock
from campaigns.db import id_in, unnest
from campaigns.delivery.pauses import pause
from campaigns.delivery.providers import Outcome, SendResult
from campaigns.models import Message, Subscriber
from campaigns.reasons import Reason
from campaigns.states import MessageStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retries:
    """How often and how patiently a transient provider error is retried."""

    max_attempts: int = 6
    base: float = 30.0
    cap: float = 3600.0


@dataclass
class BatchReport:
    """What became of a batch's messages, counted by outcome."""

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
    # Seconds from each sent message's due time to its provider call (for the worker's
    # latency histogram; the domain only measures it).
    sent_delays: list[float] = field(default_factory=list)

    def count(self, counter: str, n: int = 1) -> None:
        setattr(self, counter, getattr(self, counter) + n)


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


def decide(
    result: SendResult, attempts: int, retries: Retries, provider: str, now: datetime
) -> Decision:
    """The one place that decides what a provider outcome does to a message."""
    base = {
        "provider": provider,
        "lease_token": None,
        "lease_until": None,
        "updated_at": now,
        "attempts": attempts,
        "provider_message_id": None,
        "sent_at": None,
        "next_attempt_at": None,
        "last_error": result.error,
    }
    if result.outcome is Outcome.ACCEPTED:
        # The row is the record of the send; the events table holds what comes back.
        return Decision(
            {
                **base,
                "status": MessageStatus.SENT,
                **Reason.ACCEPTED.values(),
                "provider_message_id": result.provider_message_id,
                "sent_at": now,
            },
            "sent",
        )
    if result.outcome is Outcome.TRANSIENT:
        if attempts >= retries.max_attempts:
            return Decision(
                {
                    **base,
                    "status": MessageStatus.FAILED,
                    **Reason.RETRIES_EXHAUSTED.values(attempts=attempts),
                },
                "failed",
            )
        delay = max(backoff(attempts, retries.base, retries.cap), result.retry_after or 0)
        return Decision(
            {
                **base,
                "status": MessageStatus.RETRY,
                **Reason.TEMPORARY_ERROR.values(),
                "next_attempt_at": now + timedelta(seconds=delay),
            },
            "retry",
        )
    if result.outcome is Outcome.CONFIG:
        # Not the recipient's fault: the message waits, queued, while the channel is
        # paused for ops; the attempt does not count against it.
        return Decision(
            {
                **base,
                "status": MessageStatus.QUEUED,
                **Reason.CHANNEL_PAUSED.values(error=result.error),
                "attempts": max(0, attempts - 1),
            },
            "paused",
            pause_reason=f"{provider}: {result.error}",
        )
    if result.outcome is Outcome.PERMANENT:
        cause = result.suppress_reason or "rejected by provider"
        return Decision(
            {**base, "status": MessageStatus.FAILED, **Reason.REJECTED.values(cause=cause)},
            "failed",
            suppress_reason=result.suppress_reason,
        )
    return Decision(
        {**base, "status": MessageStatus.UNCONFIRMED, **Reason.OUTCOME_UNKNOWN.values()},
        "unconfirmed",
    )


_COLUMNS = {
    "status": "text",
    "reason_code": "text",
    "reason": "text",
    "provider": "text",
    "provider_message_id": "text",
    "sent_at": "timestamptz",
    "last_error": "text",
    "next_attempt_at": "timestamptz",
    "attempts": "int",
    "lease_token": "text",
    "lease_until": "timestamptz",
    "updated_at": "timestamptz",
}


def _write_decisions(session: Session, decisions: dict[int, Decision], token: str) -> set[int]:
    """The compare-and-set writes; returns the ids whose write took. One statement over
    arrays on PostgreSQL, one small UPDATE per row on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        rows = [{"id": mid, **d.values} for mid, d in decisions.items()]
        source, params = unnest({"id": "int", **_COLUMNS}, rows)
        sql = text(
            f"UPDATE messages SET {', '.join(f'{c} = v.{c}' for c in _COLUMNS)} "
            f"FROM {source} AS v(id, {', '.join(_COLUMNS)}) "
            "WHERE messages.id = v.id AND messages.status IN (:sending, :unconfirmed) "
            "AND messages.lease_token = :token RETURNING messages.id"
        )
        return set(
            session.scalars(
                sql,
                {
                    "sending": MessageStatus.SENDING,
                    "unconfirmed": MessageStatus.UNCONFIRMED,
                    "token": token,
                    **params,
                },
            )
        )
    table = Message.__table__
    stmt = (
        update(table)
        .where(
            table.c.id == bindparam("b_id"),
            table.c.status.in_((MessageStatus.SENDING, MessageStatus.UNCONFIRMED)),
            table.c.lease_token == token,
        )
        .values({c: bindparam(f"v_{c}") for c in _COLUMNS})
    )
    applied = set()
    for mid, d in decisions.items():
        if session.execute(
            stmt, {"b_id": mid, **{f"v_{c}": d.values[c] for c in _COLUMNS}}
        ).rowcount:
            applied.add(mid)
    return applied


def record_results(
    session: Session,
    clock: Clock,
    retries: Retries,
    results: list[SendResult],
    token: str,
    provider: str,
    report: BatchReport,
    called_at: datetime | None = None,
) -> None:
    """Record a provider's answers where our lease still holds. `sent_at` is `called_at`,
    the moment of the provider call the send windows were judged at, when given.

    Each write is a compare-and-set (WHERE lease_token = ours and the row is still sending,
    or was marked unconfirmed by the reaper while the call ran long: a late definite answer
    still counts), so a webhook that settled it first wins (webhooks clear the token) and
    nothing moves backwards, with no row locks held across the batch.
    """
    now = clock.now()
    ids = [r.message_id for r in results]
    found = session.execute(
        select(
            Message.id, Message.attempts, Message.subscriber_id, Message.channel, Message.due_at
        ).where(id_in(session, Message.id, ids))
    ).all()
    rows = {mid: (attempts, sid, channel) for mid, attempts, sid, channel, _ in found}
    due = {mid: due_at for mid, *_, due_at in found}
    decisions = {
        r.message_id: decide(r, rows[r.message_id][0], retries, provider, now)
        for r in results
        if r.message_id in rows
    }
    if called_at is not None:
        for d in decisions.values():
            if d.values["sent_at"] is not None:
                d.values["sent_at"] = called_at
    applied = _write_decisions(session, decisions, token) if decisions else set()
    lost = set(ids) - applied  # settled first by a webhook or the reaper: theirs stands
    report.not_ours += len(lost)
    for mid, d in decisions.items():
        if mid in lost:
            continue
        report.count(d.counter)
        if d.counter == "sent" and d.values.get("sent_at") is not None:
            report.sent_delays.append((d.values["sent_at"] - due[mid]).total_seconds())
        _, subscriber_id, channel = rows[mid]
        if d.suppress_reason:
            address = address_for(session.get(Subscriber, subscriber_id), channel)
            if address:
                suppress(session, clock, channel, address, d.suppress_reason, provider)
        if d.pause_reason:
            pause(session, clock, channel, d.pause_reason, by="provider")
            log.error(
                "provider %s configuration error, %s channel paused: %s",
                provider,
                channel,
                d.pause_reason,
            )
    log.info(
        "%s batch recorded: %d results, %d settled elsewhere first",
        provider,
        len(results),
        len(lost),
        # Message id -> the provider's id: what joins a claim to the provider's webhooks.
        extra={
            "provider": provider,
            "provider_ids": {
                r.message_id: r.provider_message_id for r in results if r.provider_message_id
            },
            "outcomes": {r.message_id: str(r.outcome) for r in results},
        },
    )
