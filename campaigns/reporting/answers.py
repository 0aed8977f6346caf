"""Check-in answers in the report: how people scored at each question of a course, and
the change from the course's first question to its last for people who answered both.

    per question step: answered, how many chose each value (0..10), the median
    change: from the first question step to the last, per person who answered both:
            the median change, and how many went lower (less pain), stayed, went higher

A person's answer is their latest to that step (answering again replaces it). Only
counts and medians leave here: no row names a person.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Answer, Message
from campaigns.reporting.filters import Filters, message_clauses
from campaigns.sequences.campaign import Campaign
from campaigns.sequences.questions import QUESTIONS


@dataclass
class StepAnswers:
    step_key: str
    position: int | None  # the step's place in the course; None: no longer in it
    question: str
    counts: list[int]  # how many chose each value of the scale, low to high
    low: int = 0
    median: float | None = None

    @property
    def answered(self) -> int:
        return sum(self.counts)

    def to_dict(self) -> dict:
        return {
            "step": self.step_key,
            "position": self.position,
            "question": self.question,
            "answered": self.answered,
            "counts": {str(self.low + i): n for i, n in enumerate(self.counts)},
            "median": self.median,
        }


@dataclass
class Change:
    first_step: str
    last_step: str
    people: int  # answered both
    median: float | None  # of last minus first: below zero is less pain
    lower: int
    same: int
    higher: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class AnswerReport:
    steps: list[StepAnswers] = field(default_factory=list)
    change: Change | None = None

    @property
    def values(self) -> list[int]:
        if not self.steps:
            return []
        first = self.steps[0]
        return list(range(first.low, first.low + len(first.counts)))

    def to_dict(self) -> dict:
        return {
            "steps": [s.to_dict() for s in self.steps],
            "change": self.change.to_dict() if self.change else None,
        }


def answer_report(
    session: Session,
    campaign: Campaign | None,
    campaign_key: str,
    since: datetime | None = None,
    until: datetime | None = None,
    filters: Filters | None = None,
) -> AnswerReport | None:
    """None for a course that asks nothing and holds no answers."""
    query = select(Answer.enrollment_id, Answer.step_key, Answer.question, Answer.value).where(
        Answer.campaign_key == campaign_key
    )
    if since is not None:
        query = query.where(Answer.answered_at >= since)
    if until is not None:
        query = query.where(Answer.answered_at < until)
    if narrow := message_clauses(filters, campaign_key):  # the question's message's
        query = query.where(Answer.message_id.in_(select(Message.id).where(*narrow)))
    rows = session.execute(query).all()
    asking = [s for s in campaign.steps if s.question is not None] if campaign else []
    if not rows and not asking:
        return None
    order = {s.key: s.index for s in campaign.steps} if campaign else {}
    by_step: dict[str, dict[int, int]] = {s.key: {} for s in asking}
    kinds = {s.key: s.question.key for s in asking if s.question}
    for enrollment_id, step_key, kind, value in rows:
        by_step.setdefault(step_key, {})[enrollment_id] = value
        kinds.setdefault(step_key, kind)
    keys = sorted(by_step, key=lambda k: (order.get(k, len(order)), k))
    report = AnswerReport()
    for key in keys:
        q = QUESTIONS.get(kinds[key], QUESTIONS["pain_score"])
        values = list(by_step[key].values())
        counts = [0] * len(q.values)
        for v in values:
            if q.low <= v <= q.high:
                counts[v - q.low] += 1
        report.steps.append(
            StepAnswers(
                key,
                order[key] + 1 if key in order else None,
                q.key,
                counts,
                q.low,
                statistics.median(values) if values else None,
            )
        )
    answered = [k for k in keys if by_step[k]]
    if len(answered) >= 2:
        first, last = by_step[answered[0]], by_step[answered[-1]]
        both = [last[e] - first[e] for e in first if e in last]
        report.change = Change(
            answered[0],
            answered[-1],
            len(both),
            statistics.median(both) if both else None,
            sum(d < 0 for d in both),
            sum(d == 0 for d in both),
            sum(d > 0 for d in both),
        )
    return report
