"""A campaign's goal in its report: how many reached it, after which step, and how long
it took. The per-step funnel (campaigns.reporting.funnels) calls `goal_report`.

    goal_report(session, campaign, key, since, until) ─► GoalReport | None

Counted over the enrollments created in the range (as the enrollment funnel is):

  reached        enrollments that recorded the goal (campaigns.journeys.goals): people
                 who did the goal's event after they joined
  per step and channel
    received     enrollments that got the step on that channel: a message the provider
                 took (sent or delivered; not failed, bounced, skipped or suppressed)
    goals        of those who reached the goal, the ones whose last step received before
                 the goal (by the moment the provider took it) was this step, and who got
                 that step on this channel; someone who got it by email and by text counts
                 on both rows, once in `reached`
    rate         goals / received: of the people who got this step, how many reached the
                 goal with nothing after it
  before any step   reached the goal before any step reached them
  time to goal   from joining to the goal (when the person did it): the median and the
                 quartiles (Python's statistics module, the "inclusive" method: the
                 quartiles of these people, not an estimate for a larger population),
                 and how many fall in each span
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from campaigns.models import Enrollment, Message, PersonEvent
from campaigns.reporting.filters import Filters, people_clauses
from campaigns.reporting.rates import rate
from campaigns.sequences.campaign import Campaign
from campaigns.states import CHANNELS, MessageStatus

RECEIVED = (MessageStatus.SENT, MessageStatus.DELIVERED)
SPANS: tuple[tuple[str, timedelta | None], ...] = (
    ("under 1 day", timedelta(days=1)),
    ("1 to 3 days", timedelta(days=3)),
    ("3 to 7 days", timedelta(days=7)),
    ("1 to 2 weeks", timedelta(days=14)),
    ("2 to 4 weeks", timedelta(days=28)),
    ("4 weeks or more", None),
)


@dataclass
class GoalStep:
    step_key: str
    channel: str
    position: int | None  # 1-based place in the campaign file; None: no longer in it
    received: int = 0
    goals: int = 0

    @property
    def rate(self) -> float | None:
        return rate(self.goals, self.received)


@dataclass
class TimeToGoal:
    count: int = 0
    median: timedelta | None = None
    lower_quartile: timedelta | None = None
    upper_quartile: timedelta | None = None
    spans: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class GoalReport:
    event: str
    then: str  # "exit", "jump to <step>", or "not in the campaign file now"
    enrolled: int = 0
    reached: int = 0
    before_any_step: int = 0
    steps: list[GoalStep] = field(default_factory=list)
    time_to_goal: TimeToGoal = field(default_factory=TimeToGoal)

    @property
    def rate(self) -> float | None:
        return rate(self.reached, self.enrolled)

    def to_dict(self) -> dict:
        def seconds(value: timedelta | None) -> float | None:
            return None if value is None else value.total_seconds()

        t = self.time_to_goal
        return {
            "event": self.event,
            "then": self.then,
            "enrolled": self.enrolled,
            "reached": self.reached,
            "rate": self.rate,
            "before_any_step": self.before_any_step,
            "steps": [{**asdict(s), "rate": s.rate} for s in self.steps],
            "time_to_goal_seconds": {
                "count": t.count,
                "median": seconds(t.median),
                "lower_quartile": seconds(t.lower_quartile),
                "upper_quartile": seconds(t.upper_quartile),
                "spans": [{"span": label, "count": n} for label, n in t.spans],
            },
        }


def goal_report(
    session: Session,
    campaign: Campaign | None,
    campaign_key: str,
    since: datetime | None = None,
    until: datetime | None = None,
    filters: Filters | None = None,
) -> GoalReport | None:
    """The goal's figures, or None when the campaign has no goal and nobody reached one."""
    in_range = [Enrollment.campaign_key == campaign_key]
    if since is not None:
        in_range.append(Enrollment.created_at >= since)
    if until is not None:
        in_range.append(Enrollment.created_at < until)
    if filters is not None:
        in_range += people_clauses(filters)
    goal = campaign.goal if campaign is not None else None
    reached = session.execute(
        select(Enrollment.id, Enrollment.created_at, Enrollment.goal_reached_at, PersonEvent.name)
        .join(PersonEvent, PersonEvent.id == Enrollment.goal_event_id)
        .where(*in_range, Enrollment.goal_reached_at.is_not(None))
    ).all()
    if goal is None and not reached:
        return None
    if goal is not None:
        report = GoalReport(goal.event, goal.then)
    else:
        names = sorted({name for *_, name in reached})
        report = GoalReport(", ".join(names), "not in the campaign file now")
    report.enrolled = session.scalar(select(func.count()).select_from(Enrollment).where(*in_range))
    report.reached = len(reached)

    rows: dict[tuple[str, str], GoalStep] = {}
    if campaign is not None:
        for step in campaign.steps:
            for channel in step.sends_on:
                rows[(step.key, channel)] = GoalStep(step.key, channel, step.index + 1)

    def row(step_key: str, channel: str) -> GoalStep:
        if (step_key, channel) not in rows:
            step = campaign.step(step_key) if campaign is not None else None
            rows[(step_key, channel)] = GoalStep(
                step_key, channel, step.index + 1 if step else None
            )
        return rows[(step_key, channel)]

    went = [Message.status.in_(RECEIVED), Message.sent_at.is_not(None)]
    if filters is not None and filters.channel is not None:
        went.append(Message.channel == filters.channel)
    for step_key, channel, n in session.execute(
        select(Message.step_key, Message.channel, func.count(distinct(Message.enrollment_id)))
        .join(Enrollment, Enrollment.id == Message.enrollment_id)
        .where(*in_range, *went)
        .group_by(Message.step_key, Message.channel)
    ):
        row(step_key, channel).received = n

    # Everything the goal-reachers received before their goal: last step, and its channels.
    goal_at = {eid: at for eid, _, at, _ in reached}
    before: dict[int, list[tuple[datetime, str, str]]] = {eid: [] for eid in goal_at}
    for eid, step_key, channel, sent_at in session.execute(
        select(Message.enrollment_id, Message.step_key, Message.channel, Message.sent_at)
        .join(Enrollment, Enrollment.id == Message.enrollment_id)
        .where(*in_range, Enrollment.goal_reached_at.is_not(None), *went)
    ):
        if sent_at <= goal_at[eid]:
            before[eid].append((sent_at, step_key, channel))
    for got in before.values():
        if not got:
            report.before_any_step += 1
            continue
        last_step = max(got)[1]
        for channel in sorted({c for _, k, c in got if k == last_step}):
            row(last_step, channel).goals += 1

    def order(item: GoalStep):
        rank = CHANNELS.index(item.channel) if item.channel in CHANNELS else len(CHANNELS)
        return (item.position is None, item.position or 0, item.step_key, rank)

    report.steps = sorted(rows.values(), key=order)
    report.time_to_goal = time_to_goal(
        [max(timedelta(0), at - joined) for _, joined, at, _ in reached]
    )
    return report


def time_to_goal(durations: list[timedelta]) -> TimeToGoal:
    out = TimeToGoal(count=len(durations))
    spans = dict.fromkeys((label for label, _ in SPANS), 0)
    for d in durations:
        label = next(label for label, upper in SPANS if upper is None or d < upper)
        spans[label] += 1
    out.spans = list(spans.items())
    if not durations:
        return out
    seconds = sorted(d.total_seconds() for d in durations)
    out.median = timedelta(seconds=statistics.median(seconds))
    if len(seconds) >= 2:
        low, _, high = statistics.quantiles(seconds, n=4, method="inclusive")
        out.lower_quartile, out.upper_quartile = timedelta(seconds=low), timedelta(seconds=high)
    return out
