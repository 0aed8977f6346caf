"""How far each person got in a course, on which channels: what the demo prints and what
a marketer asks first ("did the text-only people get every lesson?")."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.emergency import country_of, emergency_number
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.states import HANDED_OVER


@dataclass
class Progress:
    subscriber_id: int
    first_name: str | None
    status: str  # the enrollment's: active, completed, exited...
    country: str | None
    emergency_number: str
    steps: dict[str, set[str]] = field(default_factory=dict)  # step key: channels it went on

    @property
    def channels(self) -> set[str]:
        return set().union(*self.steps.values()) if self.steps else set()


def course_progress(session: Session, campaign_key: str, default_country: str) -> list[Progress]:
    """One row per person enrolled in `campaign_key`, with the steps handed to a provider."""
    rows: dict[int, Progress] = {}
    for enrollment, subscriber in session.execute(
        select(Enrollment, Subscriber)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(Enrollment.campaign_key == campaign_key)
        .order_by(Enrollment.id)
    ):
        country = country_of(subscriber)
        rows[enrollment.id] = Progress(
            subscriber.id,
            subscriber.first_name,
            str(enrollment.status),
            country,
            emergency_number(country, default_country),
        )
    for enrollment_id, step_key, channel in session.execute(
        select(Message.enrollment_id, Message.step_key, Message.channel).where(
            Message.campaign_key == campaign_key, Message.status.in_(HANDED_OVER)
        )
    ):
        if enrollment_id in rows:
            rows[enrollment_id].steps.setdefault(step_key, set()).add(channel)
    return list(rows.values())
