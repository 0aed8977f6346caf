"""People by the ISO week they joined, and how far each week's people got: the results
page's cohort table and its CSV.

    cohorts(session, campaign, key, filters) ─► CohortReport: one Cohort per week
        with anyone joining, oldest first

Over the campaign's enrollments created in the range and kept by the person filters
(campaigns.reporting.filters); the channel filter narrows which of their messages count.
Counted per person (enrollment), by the funnel's rules (campaigns.reporting.funnels):
  reached         got at least one message the provider took (campaigns.reporting.sent)
  reached_last    got the campaign file's last step (None: the file is not loaded)
  opened, clicked opened / clicked at least one of their messages, machines left out
  asked           asked for a call from one of their messages
  completed, exited   where their enrollment stands now
Rates: opened, clicked and asked per person reached (as the funnel divides by sent),
the others per person enrolled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from campaigns.engagement import engagement
from campaigns.models import ContactRequest, Enrollment, Message
from campaigns.reporting.days import day_of, to_day, week_of
from campaigns.reporting.filters import Filters, people_clauses
from campaigns.reporting.rates import rate
from campaigns.reporting.sent import accepted
from campaigns.sequences.campaign import Campaign
from campaigns.states import EnrollmentStatus, EventType

COUNTS = (
    *("enrolled", "reached", "reached_last", "opened"),
    *("clicked", "asked", "completed", "exited"),
)


@dataclass
class Cohort:
    week: date  # the Monday starting the ISO week they joined
    enrolled: int = 0
    reached: int = 0
    reached_last: int | None = 0
    opened: int = 0
    clicked: int = 0
    asked: int = 0
    completed: int = 0
    exited: int = 0

    @property
    def iso_week(self) -> str:
        year, week, _ = self.week.isocalendar()
        return f"{year}-W{week:02d}"

    def share(self, count: str) -> float | None:
        value = getattr(self, count)
        if value is None:
            return None
        base = self.reached if count in ("opened", "clicked", "asked") else self.enrolled
        return rate(value, base)


@dataclass
class CohortReport:
    last_step: str | None
    rows: list[Cohort] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "last_step": self.last_step,
            "rows": [{**asdict(r), "iso_week": r.iso_week} for r in self.rows],
        }


def cohorts(
    session: Session, campaign: Campaign | None, campaign_key: str, filters: Filters
) -> CohortReport:
    last = campaign.steps[-1].key if campaign is not None and campaign.steps else None
    theirs = [Message.campaign_key == campaign_key]
    if filters.channel is not None:
        theirs.append(Message.channel == filters.channel)
    sent = select(Message.enrollment_id).where(*theirs, accepted())

    def engaged(kind: str):
        # Raw events and the rollups of pruned ones (campaigns.engagement).
        ev = engagement((kind,))
        return (
            select(Message.enrollment_id)
            .join(ev, ev.c.message_id == Message.id)
            .where(*theirs, ev.c.automated.is_(False))
        )

    def count(condition):
        return func.sum(case((condition, 1), else_=0))

    asked = select(Message.enrollment_id).join(
        ContactRequest, ContactRequest.message_id == Message.id
    )
    day = day_of(session, Enrollment.created_at)
    rows = session.execute(
        select(
            day,
            func.count(),
            count(Enrollment.id.in_(sent)),
            count(Enrollment.id.in_(sent.where(Message.step_key == last))),
            count(Enrollment.id.in_(engaged(EventType.OPENED))),
            count(Enrollment.id.in_(engaged(EventType.CLICKED))),
            count(Enrollment.id.in_(asked.where(*theirs))),
            count(Enrollment.status == EnrollmentStatus.COMPLETED),
            count(Enrollment.status == EnrollmentStatus.EXITED),
        )
        .where(
            Enrollment.campaign_key == campaign_key,
            *filters.in_range(Enrollment.created_at),
            *people_clauses(filters),
        )
        .group_by(day)
    ).all()
    weeks: dict[date, Cohort] = {}
    for joined, *numbers in rows:
        week = week_of(to_day(joined))
        cohort = weeks.setdefault(week, Cohort(week))
        for name, n in zip(COUNTS, numbers, strict=True):
            setattr(cohort, name, getattr(cohort, name) + int(n or 0))
    report = CohortReport(last, [weeks[w] for w in sorted(weeks)])
    if last is None:
        for cohort in report.rows:
            cohort.reached_last = None
    return report
