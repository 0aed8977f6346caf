"""The frequency cap across campaigns, judged when a step falls due (campaigns.delivery.claiming).

What counts: every step of any campaign that reached a provider for the person or is on
its way to one: an outbox row still in flight (queued, sending, retry, deferred,
unconfirmed) or one the provider took (it has `sent_at` or a provider id, whatever a
webhook said of it later). A step counts once however many channels carried it: a lesson
by email and by text is one lesson. Across channels, then: a person is one person. Rows
that never went (skipped, suppressed, failed before the provider took them) do not count.
A message counts on the day it went out, in the person's own time zone; one still on its
way counts on the day it was claimed.

Days are the person's own (DEFAULT_TIMEZONE for someone without one); a week is seven of
them, today and the six before, so the cap never lets a week's worth through on a
Sunday and again on the Monday.

A step over its campaign's cap is held, never dropped: its cursor stays on it and is due
again at the first day with room (local midnight), moved on to the first minute the
step's window allows there (campaigns.sequences.timing.due_at_once). The cursor stays on
the step, so order per person (campaigns.delivery.ordering) holds, and a `cap_holds` row
says what happened, for the person's timeline and the report.

Exempt: what never goes through the outbox is neither counted nor held: sign-up
confirmations (email and the "reply YES" text, campaigns.intake.confirmations), the
replies to HELP, STOP and other keywords (TwiML answers, web/webhooks.py), and notices to
the care team (campaigns.care.notifications). A care team member answers a person by
phone or from their own mail, not through this service.

The counts of a whole claim batch are read in one query, and only when some campaign of
the batch has a cap: a service without one pays nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, or_, select
from sqlalchemy.orm import Session

from campaigns.db import id_in
from campaigns.models import CapHold, Message
from campaigns.sequences.caps import Cap
from campaigns.sequences.timing import Policy, due_at_once
from campaigns.states import IN_FLIGHT

WEEK = 7  # local days: today and the six before
DAY_CAP, WEEK_CAP = "day", "week"


def counted():
    """The outbox rows the cap counts: on their way to a provider, or taken by one."""
    return or_(
        Message.status.in_(IN_FLIGHT),
        Message.sent_at.is_not(None),
        Message.provider_message_id.is_not(None),
    )


@dataclass
class _Person:
    zone: ZoneInfo
    days: dict[date, set[tuple[int, str]]] = field(default_factory=dict)

    def on(self, day: date) -> int:
        return len(self.days.get(day, ()))

    def week_to(self, day: date) -> int:
        return sum(self.on(day - timedelta(days=n)) for n in range(WEEK))


@dataclass
class Held:
    until: datetime  # the step's new due time
    cap: str  # day | week
    allowed: int
    counted: int


class CapCheck:
    """The cap for one claim batch: what each person of it has had, read once, and the
    holds it decides, written once."""

    def __init__(self, session: Session, now: datetime, policy: Policy, people: dict):
        """`people`: subscriber id -> the subscriber row (with `timezone`), only those
        whose due step has a cap."""
        self.now, self.policy = now, policy
        self.people = {pid: _Person(policy.zone(person)) for pid, person in people.items()}
        self.holds: list[dict] = []
        if self.people:
            self._read(session)

    @classmethod
    def for_batch(cls, session, now, policy: Policy, campaigns, enrollments, subscribers):
        """A check over the batch's people whose campaign has a cap; None when none has."""
        capped = {
            e.subscriber_id: subscribers[e.subscriber_id]
            for e in enrollments
            if e.subscriber_id in subscribers
            and e.campaign_key in campaigns
            and policy.cap_for(campaigns[e.campaign_key]).active
        }
        return cls(session, now, policy, capped) if capped else None

    def _read(self, session: Session) -> None:
        # Eight days back covers the seventh local day before today in any zone.
        since = self.now - timedelta(days=WEEK + 1)
        moment = func.coalesce(Message.sent_at, Message.created_at)
        rows = session.execute(
            select(Message.subscriber_id, Message.enrollment_id, Message.step_key, moment).where(
                id_in(session, Message.subscriber_id, self.people),
                moment >= since,
                counted(),
            )
        )
        for pid, eid, step_key, at in rows:
            person = self.people[pid]
            person.days.setdefault(at.astimezone(person.zone).date(), set()).add((eid, step_key))

    def hold(self, enrollment, campaign, step, subscriber, reachable) -> Held | None:
        """None when the step may go now (it is then counted for the rest of the batch);
        otherwise when it is due instead, with the hold recorded."""
        person = self.people.get(enrollment.subscriber_id)
        if person is None:
            return None  # no campaign of theirs in this batch has a cap
        cap = self.policy.cap_for(campaign)
        today = self.now.astimezone(person.zone).date()
        full = _full(person, today, cap) if cap.active else None
        if full is None:
            # Counted even when its own campaign has no cap: another one's may.
            person.days.setdefault(today, set()).add((enrollment.id, step.key))
            return None
        kind, allowed, had = full
        day = today + timedelta(days=1)
        while _full(person, day, cap) is not None:
            day += timedelta(days=1)
        midnight = datetime.combine(day, time(0, 0), tzinfo=person.zone)
        until = due_at_once(midnight, campaign, step, subscriber, reachable, self.policy)
        held = Held(until, kind, allowed, had)
        self.holds.append(
            {
                "subscriber_id": enrollment.subscriber_id,
                "enrollment_id": enrollment.id,
                "campaign_key": campaign.key,
                "step_key": step.key,
                "cap": kind,
                "allowed": allowed,
                "counted": had,
                "held_at": self.now,
                "held_until": until,
            }
        )
        return held

    def write(self, session: Session) -> None:
        if self.holds:
            session.execute(insert(CapHold), self.holds)


def _full(person: _Person, day: date, cap: Cap) -> tuple[str, int, int] | None:
    """Which cap is full on `day` ("day" or "week", what it allows, how many counted)."""
    if cap.per_day and person.on(day) >= cap.per_day:
        return DAY_CAP, cap.per_day, person.on(day)
    if cap.per_week and person.week_to(day) >= cap.per_week:
        return WEEK_CAP, cap.per_week, person.week_to(day)
    return None
