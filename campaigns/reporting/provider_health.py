"""Provider health for ops: per-channel outcomes of recent provider calls, with the due
backlog and the age of the oldest due work. /metrics and the channels page read it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import ChannelPause, Message
from campaigns.reasons import Reason
from campaigns.reporting.overview import read_status
from campaigns.reporting.rates import rate
from campaigns.states import CHANNELS, MessageStatus


@dataclass
class ChannelHealth:
    """Provider call outcomes in the window. The outbox keeps each message's latest
    outcome, not every attempt, so these count messages by where their last provider
    call left them: a retry that later succeeded counts as sent."""

    channel: str
    sent: int = 0  # accepted by the provider in the window (sent_at)
    transient: int = 0  # waiting to retry after a temporary error, or gave up after them
    permanent: int = 0  # refused by the provider at the call (never accepted)
    unconfirmed: int = 0  # the call's outcome is unknown
    paused: bool = False
    paused_reason: str | None = None

    @property
    def attempts(self) -> int:
        return self.sent + self.transient + self.permanent + self.unconfirmed

    @property
    def errors(self) -> int:
        return self.transient + self.permanent + self.unconfirmed

    @property
    def error_rate(self) -> float | None:
        return rate(self.errors, self.attempts)


@dataclass
class ProviderHealth:
    window: timedelta
    channels: dict[str, ChannelHealth]
    due_backlog: int
    oldest_due_age_seconds: float | None


def channel_health(
    session: Session, clock: Clock, window: timedelta | int
) -> dict[str, ChannelHealth]:
    """Provider outcomes per channel over the last `window` (a timedelta, or minutes)."""
    if not isinstance(window, timedelta):
        window = timedelta(minutes=int(window))
    if window <= timedelta(0):
        raise ValueError("the window must be positive")
    since = clock.now() - window
    health = {c: ChannelHealth(c) for c in CHANNELS}

    def tally(attr: str, *where) -> None:
        for channel, n in session.execute(
            select(Message.channel, func.count()).where(*where).group_by(Message.channel)
        ):
            health.setdefault(channel, ChannelHealth(channel))
            setattr(health[channel], attr, n)

    recent = Message.updated_at >= since
    tally("sent", Message.sent_at >= since)
    tally(
        "transient",
        recent,
        or_(
            Message.status == MessageStatus.RETRY,
            and_(
                Message.status == MessageStatus.FAILED,
                Message.reason_code == Reason.RETRIES_EXHAUSTED,
            ),
        ),
    )
    tally(
        "permanent",
        recent,
        Message.status == MessageStatus.FAILED,
        Message.provider.is_not(None),
        Message.sent_at.is_(None),
        Message.provider_message_id.is_(None),
        or_(Message.reason_code.is_(None), Message.reason_code != Reason.RETRIES_EXHAUSTED),
    )
    tally("unconfirmed", recent, Message.status == MessageStatus.UNCONFIRMED)
    for pause in session.scalars(select(ChannelPause)):
        health.setdefault(pause.channel, ChannelHealth(pause.channel))
        health[pause.channel].paused = True
        health[pause.channel].paused_reason = pause.reason
    return health


def provider_health(session: Session, clock: Clock, window: timedelta | int) -> ProviderHealth:
    """Per-channel provider outcomes over the window, with the due backlog and the age of
    the oldest due work (campaigns.reporting.overview). `window`: a timedelta, or minutes."""
    if not isinstance(window, timedelta):
        window = timedelta(minutes=int(window))
    health = channel_health(session, clock, window)
    status = read_status(session, clock)
    return ProviderHealth(window, health, status.due_backlog, status.oldest_due_age_seconds)
