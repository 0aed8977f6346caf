"""What ops asks first: how much is due, how late is the oldest, where messages stand."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import states
from campaigns.clock import Clock
from campaigns.models import Enrollment, Message


@dataclass
class Status:
    due_backlog: int
    oldest_due_age_seconds: float | None
    enrollments: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    by_step: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)

    @property
    def unfinished(self) -> int:
        return sum(n for s, n in self.messages.items() if s not in states.TERMINAL)


def read_status(session: Session, clock: Clock) -> Status:
    now = clock.now()
    due = select(Enrollment).where(Enrollment.status == "active", Enrollment.next_due_at <= now)
    backlog = session.scalar(select(func.count()).select_from(due.subquery()))
    oldest = session.scalar(
        select(func.min(Enrollment.next_due_at)).where(
            Enrollment.status == "active", Enrollment.next_due_at <= now
        )
    )
    waiting_since = session.scalar(
        select(func.min(Message.due_at)).where(Message.status.in_(states.WAITING + (states.SENDING,)),
                                               )
    )
    candidates = [t for t in (oldest, waiting_since) if t is not None and t <= now]
    age = (now - min(candidates)).total_seconds() if candidates else None
    enrollments = dict(session.execute(select(Enrollment.status, func.count()).group_by(Enrollment.status)).all())
    messages = dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())
    by_step: dict = {}
    rows = session.execute(
        select(Message.campaign_key, Message.step_key, Message.channel, Message.status, func.count())
        .group_by(Message.campaign_key, Message.step_key, Message.channel, Message.status)
    ).all()
    for campaign, step, channel, status, n in rows:
        by_step.setdefault((campaign, step, channel), {})[status] = n
    return Status(backlog, age, enrollments, messages, by_step)
