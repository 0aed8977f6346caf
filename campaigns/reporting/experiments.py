"""Experiments in the campaign report: each arm of a step's variants side by side, and the
holdout against the people who were messaged.

    experiment_report(session, campaign, key, since, until) ─► ExperimentReport | None

Per step that has arms (in the file now, or on outbox rows: messages.variant) and per
channel, per arm, counted as the step funnel counts them (campaigns.reporting.funnels):

  sent             messages the provider took
  opens, clicks    unique: messages a person opened / clicked a link of (events a
                   machine made are left out, as in the funnel)
  call requests    contact requests made from the arm's messages
  goals            people who got the arm's message and reached the campaign's goal after
                   it went out

Every rate divides by sent. Each rate has a 95% confidence interval (Wilson's score
interval) and, per measure, whether the arms differ: Pearson's chi-square test of the arms'
counts (k arms by yes/no, no continuity correction; with two arms the same p as the
two-proportion z-test), significant when p < 0.05. The test needs about five expected
in every cell to be trusted, so with fewer the verdict is "too few to tell", never a
p-value that looks better than it is. scipy.stats computes both (binomtest(...).
proportion_ci(method="wilson"), chi2_contingency): nothing statistical is written here.

Holdout (the campaign's `holdout` share, reason code `holdout` on their rows): the
enrollments created in the range that were held out, against those that got at least one
message, and how many of each reached the goal, with the same interval and test.

Looking at the result every day and stopping when it first reads "significant" finds
differences that are not there: decide the number of people before starting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from scipy.stats import binomtest, chi2_contingency
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from campaigns.engagement import engagement
from campaigns.models import ContactRequest, Enrollment, Message
from campaigns.reasons import Reason
from campaigns.reporting.filters import Filters, message_clauses, people_clauses
from campaigns.reporting.rates import rate
from campaigns.reporting.sent import accepted
from campaigns.sequences.campaign import Campaign
from campaigns.states import CHANNELS, EventType

CONFIDENCE = 0.95
SIGNIFICANT_BELOW = 0.05
MIN_EXPECTED = 5  # the usual rule for trusting the chi-square approximation
MEASURES = ("opens", "clicks", "call_requests", "goals")


@dataclass
class Rate:
    count: int
    base: int
    low: float | None = None  # the confidence interval; None without a base
    high: float | None = None

    @property
    def rate(self) -> float | None:
        return rate(self.count, self.base)

    def to_dict(self) -> dict:
        return {
            "count": self.count,
            "base": self.base,
            "rate": self.rate,
            "low": self.low,
            "high": self.high,
        }


@dataclass
class Verdict:
    significant: bool
    p_value: float | None
    sentence: str  # for people: "significant (p = 0.003)", "too few to tell", ...

    def to_dict(self) -> dict:
        return {"significant": self.significant, "p_value": self.p_value, "verdict": self.sentence}


@dataclass
class Arm:
    name: str
    weight: float | None  # None: an arm no longer in the file
    sent: int = 0
    opens: Rate | None = None
    clicks: Rate | None = None
    call_requests: Rate | None = None
    goals: Rate | None = None

    def to_dict(self) -> dict:
        return {
            "variant": self.name,
            "weight": self.weight,
            "sent": self.sent,
            **{m: getattr(self, m).to_dict() for m in MEASURES},
        }


@dataclass
class StepExperiment:
    step_key: str
    channel: str
    position: int | None
    arms: list[Arm] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # per measure

    def to_dict(self) -> dict:
        return {
            "step": self.step_key,
            "channel": self.channel,
            "arms": [a.to_dict() for a in self.arms],
            "differences": {m: v.to_dict() for m, v in self.verdicts.items()},
        }


@dataclass
class Holdout:
    share: float  # as the file says now
    held_out: Rate  # goals among the held-out enrollments
    messaged: Rate  # goals among those who got at least one message
    verdict: Verdict

    def to_dict(self) -> dict:
        return {
            "share": self.share,
            "held_out": self.held_out.to_dict(),
            "messaged": self.messaged.to_dict(),
            "difference": self.verdict.to_dict(),
        }


@dataclass
class ExperimentReport:
    steps: list[StepExperiment] = field(default_factory=list)
    holdout: Holdout | None = None
    goal_event: str | None = None

    def to_dict(self) -> dict:
        return {
            "goal": self.goal_event,
            "steps": [s.to_dict() for s in self.steps],
            "holdout": self.holdout.to_dict() if self.holdout else None,
        }


def interval(count: int, base: int) -> Rate:
    """The count over its base with Wilson's 95% interval (scipy)."""
    if base <= 0:
        return Rate(count, base)
    ci = binomtest(count, base).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Rate(count, base, float(ci.low), float(ci.high))


def compare(rates: list[Rate]) -> Verdict:
    """Whether the rates differ by more than chance: chi-square over the arms (scipy)."""
    rows = [[r.count, r.base - r.count] for r in rates if r.base > 0]
    if len(rows) < 2:
        return Verdict(False, None, "nothing to compare yet")
    yes = sum(r[0] for r in rows)
    no = sum(r[1] for r in rows)
    if yes == 0 or no == 0:
        return Verdict(False, None, "no difference (the same on every arm)")
    result = chi2_contingency(rows, correction=False)
    if result.expected_freq.min() < MIN_EXPECTED:
        return Verdict(False, None, "too few to tell")
    p = float(result.pvalue)
    if p < SIGNIFICANT_BELOW:
        return Verdict(True, p, f"significant (p = {p:.3g})")
    return Verdict(False, p, f"not significant (p = {p:.3g})")


def experiment_report(
    session: Session,
    campaign: Campaign | None,
    campaign_key: str,
    since: datetime | None = None,
    until: datetime | None = None,
    filters: Filters | None = None,
) -> ExperimentReport | None:
    """None when the campaign has no experiment and no holdout, in its file or its rows."""
    where = [Message.campaign_key == campaign_key]
    if since is not None:
        where.append(Message.created_at >= since)
    if until is not None:
        where.append(Message.created_at < until)
    where += message_clauses(filters, campaign_key)
    arm_rows = [*where, Message.variant.is_not(None), accepted()]
    key = (Message.step_key, Message.channel, Message.variant)

    counts: dict[tuple, dict[str, int]] = {}

    def add(rows, measure: str) -> None:
        for step_key, channel, variant, n in rows:
            counts.setdefault((step_key, channel, variant), {})[measure] = n

    add(session.execute(select(*key, func.count()).where(*arm_rows).group_by(*key)), "sent")
    for kind, measure in ((EventType.OPENED, "opens"), (EventType.CLICKED, "clicks")):
        ev = engagement((kind,))  # raw events and the rollups of pruned ones
        add(
            session.execute(
                select(*key, func.count(distinct(ev.c.message_id)))
                .join(Message, ev.c.message_id == Message.id)
                .where(*arm_rows, ev.c.automated.is_(False))
                .group_by(*key)
            ),
            measure,
        )
    add(
        session.execute(
            select(*key, func.count(distinct(ContactRequest.message_id)))
            .join(Message, ContactRequest.message_id == Message.id)
            .where(*arm_rows)
            .group_by(*key)
        ),
        "call_requests",
    )
    add(
        session.execute(
            select(*key, func.count(distinct(Message.enrollment_id)))
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(
                *arm_rows,
                Enrollment.goal_reached_at.is_not(None),
                Enrollment.goal_reached_at >= func.coalesce(Message.sent_at, Message.created_at),
            )
            .group_by(*key)
        ),
        "goals",
    )

    steps: dict[tuple[str, str], StepExperiment] = {}
    weights: dict[tuple[str, str], float] = {}
    if campaign is not None:
        for step in campaign.steps:
            for v in step.variants:
                weights[(step.key, v.name)] = v.weight
            if step.variants:
                for channel in step.sends_on:
                    steps[(step.key, channel)] = StepExperiment(step.key, channel, step.index + 1)
                    for v in step.variants:
                        steps[(step.key, channel)].arms.append(Arm(v.name, v.weight))
    for step_key, channel, variant in sorted(counts):
        row = steps.get((step_key, channel))
        if row is None:
            step = campaign.step(step_key) if campaign is not None else None
            row = steps[(step_key, channel)] = StepExperiment(
                step_key, channel, step.index + 1 if step else None
            )
        if not any(a.name == variant for a in row.arms):
            row.arms.append(Arm(variant, weights.get((step_key, variant))))
    for (step_key, channel), row in steps.items():
        for arm in row.arms:
            got = counts.get((step_key, channel, arm.name), {})
            arm.sent = got.get("sent", 0)
            for measure in MEASURES:
                setattr(arm, measure, interval(got.get(measure, 0), arm.sent))
        row.verdicts = {m: compare([getattr(a, m) for a in row.arms]) for m in MEASURES}

    holdout = _holdout(session, campaign, campaign_key, since, until, filters)
    if not steps and holdout is None:
        return None

    def order(item: StepExperiment):
        rank = CHANNELS.index(item.channel) if item.channel in CHANNELS else len(CHANNELS)
        return (item.position is None, item.position or 0, item.step_key, rank)

    return ExperimentReport(
        steps=sorted(steps.values(), key=order),
        holdout=holdout,
        goal_event=campaign.goal.event if campaign is not None and campaign.goal else None,
    )


def _holdout(session, campaign, campaign_key, since, until, filters) -> Holdout | None:
    in_range = [Enrollment.campaign_key == campaign_key]
    if since is not None:
        in_range.append(Enrollment.created_at >= since)
    if until is not None:
        in_range.append(Enrollment.created_at < until)
    if filters is not None:
        in_range += people_clauses(filters)
    reached = Enrollment.goal_reached_at.is_not(None)

    def count(*where) -> tuple[int, int]:
        people = select(Message.enrollment_id).where(Message.campaign_key == campaign_key, *where)
        query = select(Enrollment.id).where(*in_range, Enrollment.id.in_(people))
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        goals = session.scalar(select(func.count()).select_from(query.where(reached).subquery()))
        return goals or 0, total or 0

    held_goals, held = count(Message.reason_code == Reason.HOLDOUT.value)
    share = campaign.holdout if campaign is not None else 0.0
    if not held and not share:
        return None
    messaged_goals, messaged = count(accepted())
    held_rate, messaged_rate = interval(held_goals, held), interval(messaged_goals, messaged)
    return Holdout(share, held_rate, messaged_rate, compare([held_rate, messaged_rate]))
