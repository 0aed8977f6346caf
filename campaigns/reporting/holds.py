"""What the frequency cap held back in a campaign (campaigns.delivery.frequency_cap), from
the `cap_holds` rows: for `drip report` and the admin campaign page.

    cap_hold_report(session, campaign, key, since, until) ─► CapHoldReport

A hold is one step of one person held once; a step held on two days is two holds and
one person. "Still held" counts people whose cursor is still on a held step with nothing
of it sent yet: held, not dropped, it goes on the day the cap leaves room for it.
The date range filters on when the step was held; `until` is exclusive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import and_, distinct, exists, func, select
from sqlalchemy.orm import Session

from campaigns.models import CapHold, Enrollment, Message
from campaigns.reporting.filters import Filters, enrollment_ids
from campaigns.sequences.campaign import Campaign
from campaigns.states import EnrollmentStatus


@dataclass
class StepHolds:
    position: int | None  # 1-based place in the campaign file; None: no longer in it
    step_key: str
    holds: int = 0
    people: int = 0
    still_held: int = 0


@dataclass
class CapHoldReport:
    holds: int = 0
    people: int = 0
    still_held: int = 0
    by_cap: dict[str, int] = field(default_factory=dict)  # "day" / "week" -> holds
    steps: list[StepHolds] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def cap_hold_report(
    session: Session,
    campaign: Campaign | None,
    campaign_key: str,
    since: datetime | None = None,
    until: datetime | None = None,
    filters: Filters | None = None,
) -> CapHoldReport:
    where = [CapHold.campaign_key == campaign_key]
    if since is not None:
        where.append(CapHold.held_at >= since)
    if until is not None:
        where.append(CapHold.held_at < until)
    if filters is not None and filters.narrows_people:  # a hold is per step, not per channel
        where.append(CapHold.enrollment_id.in_(enrollment_ids(filters, campaign_key)))
    report = CapHoldReport()
    rows = session.execute(
        select(
            CapHold.step_key,
            CapHold.cap,
            func.count(),
            func.count(distinct(CapHold.subscriber_id)),
        )
        .where(*where)
        .group_by(CapHold.step_key, CapHold.cap)
    ).all()
    if not rows:
        return report
    steps: dict[str, StepHolds] = {}
    for step_key, cap, n, _ in rows:
        step = campaign.step(step_key) if campaign else None
        row = steps.setdefault(step_key, StepHolds(step.index + 1 if step else None, step_key))
        row.holds += n
        report.holds += n
        report.by_cap[cap] = report.by_cap.get(cap, 0) + n
    for step_key, people in session.execute(
        select(CapHold.step_key, func.count(distinct(CapHold.subscriber_id)))
        .where(*where)
        .group_by(CapHold.step_key)
    ):
        steps[step_key].people = people
    report.people = session.scalar(
        select(func.count(distinct(CapHold.subscriber_id))).where(*where)
    )
    nothing_sent = ~exists().where(
        Message.enrollment_id == CapHold.enrollment_id, Message.step_key == CapHold.step_key
    )
    for step_key, people in session.execute(
        select(CapHold.step_key, func.count(distinct(CapHold.enrollment_id)))
        .join(
            Enrollment,
            and_(
                Enrollment.id == CapHold.enrollment_id,
                Enrollment.next_step_key == CapHold.step_key,
                Enrollment.status == EnrollmentStatus.ACTIVE,
            ),
        )
        .where(*where, nothing_sent)
        .group_by(CapHold.step_key)
    ):
        steps[step_key].still_held = people
        report.still_held += people
    report.steps = sorted(
        steps.values(),
        key=lambda s: (s.position is None, s.position or 0, s.step_key),
    )
    return report
