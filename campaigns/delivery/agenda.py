"""What the engine has to do now, and when it next has anything to do.

A virtual clock that jumps (the demo's FileClock, `drip simulate`'s FixedClock) may move
only when nothing is due or in flight, and then only to the next moment something falls
due; this module reads both from the database, which holds every piece of work from the
moment it exists until it is done (a claim commits the outbox rows and the advanced
cursor together; a send leases its rows and records their answers):

    due now     active enrollments whose next step is due, retries and deferred texts
                whose time has come
    in flight   queued, sending or unconfirmed messages (a task has them, or will)
    unknown     messages in a state this module does not name: waiting on something it
                cannot see, so whoever moves the clock watches for a while before moving
    next_at     the earliest moment after now at which an enrollment or a waiting
                message falls due

An enrollment can be due and still not be claimed (its previous step is still on its
way, say); `due_now` counts it all the same, so a clock driver that sees work stay due
without anything changing (`fingerprint`) knows it is waiting on something else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.models import Enrollment, Event, Message
from campaigns.states import TERMINAL, EnrollmentStatus, MessageStatus

_M = MessageStatus
IN_FLIGHT_NOW = (_M.QUEUED, _M.SENDING, _M.UNCONFIRMED)
WAITING_FOR_TIME = (_M.RETRY, _M.DEFERRED)


@dataclass(frozen=True)
class Agenda:
    now: datetime
    due_now: int
    in_flight: int
    unknown: int
    next_at: datetime | None
    fingerprint: tuple

    @property
    def settled(self) -> bool:
        """Nothing due, in flight or in an unknown state: the clock may jump at once."""
        return not (self.due_now or self.in_flight or self.unknown)


def read_agenda(session: Session, now: datetime) -> Agenda:
    due_enrollments = session.scalar(
        select(func.count())
        .select_from(Enrollment)
        .where(Enrollment.status == EnrollmentStatus.ACTIVE, Enrollment.next_due_at <= now)
    )
    by_status: dict[str, int] = {}
    due_messages = 0
    for status, due, n in session.execute(
        select(Message.status, Message.next_attempt_at <= now, func.count())
        .where(Message.status.not_in(TERMINAL))
        .group_by(Message.status, Message.next_attempt_at <= now)
    ):
        by_status[status] = by_status.get(status, 0) + n
        if status in WAITING_FOR_TIME and due:
            due_messages += n
    in_flight = sum(by_status.get(s, 0) for s in IN_FLIGHT_NOW)
    known = (*IN_FLIGHT_NOW, *WAITING_FOR_TIME)
    unknown = sum(n for s, n in by_status.items() if s not in known)
    next_enrollment = session.scalar(
        select(func.min(Enrollment.next_due_at)).where(
            Enrollment.status == EnrollmentStatus.ACTIVE, Enrollment.next_due_at > now
        )
    )
    next_message = session.scalar(
        select(func.min(Message.next_attempt_at)).where(
            Message.status.not_in(TERMINAL), Message.next_attempt_at > now
        )
    )
    upcoming = [t for t in (next_enrollment, next_message) if t is not None]
    fingerprint = (
        tuple(sorted(by_status.items())),
        tuple(session.execute(select(func.count(), func.max(Message.updated_at))).one()),
        tuple(session.execute(select(func.count(), func.max(Enrollment.updated_at))).one()),
        session.scalar(select(func.count()).select_from(Event)),
    )
    return Agenda(
        now=now,
        due_now=(due_enrollments or 0) + due_messages,
        in_flight=in_flight,
        unknown=unknown,
        next_at=min(upcoming) if upcoming else None,
        fingerprint=fingerprint,
    )
