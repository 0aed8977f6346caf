"""What ops asks first: how much is due, how late is the oldest, where messages stand,
and how many texts from people wait for someone to read them (`read_status`); and for
`drip status`, everything else that waits for a person or says the machine is stuck
(`read_overview`): paused channels, open contact requests, unconfirmed messages, and
which scheduler leads and when it last ticked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.backlog import Waiting, waiting
from campaigns.clock import Clock
from campaigns.delivery.leadership import Leadership, read_leadership
from campaigns.delivery.pauses import all_paused
from campaigns.delivery.unconfirmed import undecided
from campaigns.models import ContactRequest, Enrollment, Message
from campaigns.states import TERMINAL, WAITING, ContactStatus, EnrollmentStatus, MessageStatus
from campaigns.tracking import inbox


@dataclass
class Status:
    due_backlog: int
    oldest_due_age_seconds: float | None
    enrollments: dict[str, int] = field(default_factory=dict)
    # (campaign, step, channel): {status: count}
    by_step: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)
    inbox: Waiting = field(default_factory=lambda: Waiting(0, None))

    @property
    def by_channel(self) -> dict[tuple[str, str], int]:
        """Messages by (status, channel)."""
        out: dict[tuple[str, str], int] = {}
        for (_, _, channel), counts in self.by_step.items():
            for status, n in counts.items():
                out[(status, channel)] = out.get((status, channel), 0) + n
        return out

    @property
    def messages(self) -> dict[str, int]:
        """Messages by status."""
        out: dict[str, int] = {}
        for (status, _), n in self.by_channel.items():
            out[status] = out.get(status, 0) + n
        return out

    @property
    def unfinished(self) -> int:
        return sum(n for s, n in self.messages.items() if s not in TERMINAL)


def read_status(session: Session, clock: Clock) -> Status:
    now = clock.now()
    due = select(Enrollment).where(
        Enrollment.status == EnrollmentStatus.ACTIVE, Enrollment.next_due_at <= now
    )
    backlog = session.scalar(select(func.count()).select_from(due.subquery()))
    oldest = session.scalar(
        select(func.min(Enrollment.next_due_at)).where(
            Enrollment.status == EnrollmentStatus.ACTIVE, Enrollment.next_due_at <= now
        )
    )
    waiting_since = session.scalar(
        select(func.min(Message.due_at)).where(
            Message.status.in_((*WAITING, MessageStatus.SENDING))
        )
    )
    candidates = [t for t in (oldest, waiting_since) if t is not None and t <= now]
    age = (now - min(candidates)).total_seconds() if candidates else None
    enrollments = dict(
        session.execute(select(Enrollment.status, func.count()).group_by(Enrollment.status)).all()
    )
    # Messages are counted once, by (campaign, step, channel, status); every other view
    # of "messages by status" is a sum over this.
    by_step: dict = {}
    rows = session.execute(
        select(
            Message.campaign_key, Message.step_key, Message.channel, Message.status, func.count()
        ).group_by(Message.campaign_key, Message.step_key, Message.channel, Message.status)
    ).all()
    for campaign, step, channel, status, n in rows:
        by_step.setdefault((campaign, step, channel), {})[status] = n
    return Status(backlog, age, enrollments, by_step, inbox.waiting(session))


@dataclass(frozen=True)
class PausedChannel:
    channel: str
    since: datetime
    by: str
    reason: str


@dataclass(frozen=True)
class Overview:
    status: Status
    paused: list[PausedChannel]
    contacts: Waiting  # open requests nobody has handled yet
    contacts_over_target: int  # of those, open longer than CONTACT_RESPONSE_TARGET_HOURS
    unconfirmed_for_ops: int
    oldest_unconfirmed_for_ops_seconds: float | None
    schedulers: Leadership

    @property
    def unconfirmed(self) -> int:
        return self.status.messages.get(MessageStatus.UNCONFIRMED, 0)


def read_overview(
    session: Session,
    clock: Clock,
    wall_clock: Clock,
    contact_target: timedelta,
    scheduler_lease_seconds: float,
) -> Overview:
    """`wall_clock` reads the schedulers' rows, which are in real time even when `clock`
    is the demo's virtual one."""
    now = clock.now()
    is_open = ContactRequest.status == ContactStatus.OPEN
    over = session.scalar(
        select(func.count()).where(is_open, ContactRequest.created_at < now - contact_target)
    )
    for_ops, oldest_for_ops = undecided(session, clock)
    return Overview(
        read_status(session, clock),
        [
            PausedChannel(p.channel, p.created_at, p.paused_by, p.reason)
            for p in all_paused(session)
        ],
        waiting(session, ContactRequest.created_at, is_open),
        over,
        for_ops,
        oldest_for_ops,
        read_leadership(session, wall_clock, scheduler_lease_seconds),
    )
