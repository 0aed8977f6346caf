"""The person page's content: who they are, their courses, every message with what
happened to it, consent with its evidence, and what else they did or asked for. Read
from campaigns.people.records, so it shows what the export holds."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy.orm import Session

from campaigns.models import Enrollment, Event, Message, Subscriber
from campaigns.people.records import Records, records_for
from campaigns.reasons import is_missing_step
from campaigns.states import EnrollmentStatus, EventType


class NotFound(LookupError):
    """No person with that id."""


def person(session: Session, subscriber_id: int) -> Subscriber:
    sub = session.get(Subscriber, subscriber_id) if subscriber_id > 0 else None
    if sub is None:
        raise NotFound(f"no person {subscriber_id}")
    return sub


@dataclass(frozen=True)
class Course:
    enrollment: Enrollment
    may_pause: bool
    may_resume: bool
    may_exit: bool


@dataclass(frozen=True)
class Sent:
    message: Message
    events: list[Event]

    @property
    def delivered_at(self):
        return next((e.occurred_at for e in self.events if e.type == EventType.DELIVERED), None)


@dataclass(frozen=True)
class Profile:
    records: Records
    courses: list[Course]
    messages: list[Sent]  # newest first
    other_events: list[Event]  # not about one message: inbound texts, contact asks...

    @property
    def subscriber(self) -> Subscriber:
        return self.records.subscriber


def may_resume(enrollment: Enrollment) -> bool:
    """Paused, and not by the engine for a step an edit removed: resuming that one would
    only pause it again at the next tick; the next deploy of the campaign settles it."""
    return enrollment.status == EnrollmentStatus.PAUSED and not is_missing_step(
        enrollment.exit_reason
    )


def profile(session: Session, subscriber_id: int) -> Profile:
    rec = records_for(session, person(session, subscriber_id))
    by_message: dict[int, list[Event]] = defaultdict(list)
    other = []
    for ev in rec.events:
        (by_message[ev.message_id] if ev.message_id else other).append(ev)
    courses = [
        Course(
            e,
            may_pause=e.status == EnrollmentStatus.ACTIVE,
            may_resume=may_resume(e),
            may_exit=e.status in (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED),
        )
        for e in rec.enrollments
    ]
    messages = [Sent(m, by_message.get(m.id, [])) for m in reversed(rec.messages)]
    return Profile(rec, courses, messages, other)
