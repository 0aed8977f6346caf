"""Triggers: a campaign that enrolls people by itself when something happens (its file's
`enroll_on`, campaigns.sequences.journey), such as a check-in two weeks after a course.

    completed X       X's last lesson was claimed (the moment its cursor finished)
    goal_reached X    the person reached X's goal (campaigns.journeys.goals)
    call_requested X  the person asked for a call from a message of X ("any": any campaign)
    event NAME        a person event of that name (the events API, `drip import-events`)

each `after` a delay (default none). A periodic pass (`enroll_triggered`, run by the
workers' beat every REAP_SECONDS) reads, for every campaign with triggers, the moments
that have come and enrolls each person once:

  - never twice for one moment: the enrollment records what made it (`trigger_ref`, e.g.
    "completed:12", unique per campaign), so a pass that runs twice, or two workers at
    once, enroll once;
  - never twice in the campaign, unless it says `reentry: true`; then someone whose
    enrollment there has ended (completed or exited) joins again as its next entry, and
    someone still in it is left alone;
  - only moments since the campaign was first deployed (its first recorded revision), and
    only those of the last LOOKBACK: shipping a check-in does not reach everyone who ever
    finished a course, and a pass that did not run for a while catches up on a week;
  - only subscribers whose status is active (not waiting for a confirmation, not
    unsubscribed); the claim still checks each channel's consent at every step.

Polling rather than a hook in each place a moment happens: completing a course, a call
request and an event come from three parts of the domain that must not know about
campaigns they do not belong to, and a delay (`after: 14d`) needs a clock in any case.
Each query reads one kind of moment in a bounded window and leaves out, in SQL, the
moments already enrolled, so a pass with nothing to do costs a few index probes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import String, cast, exists, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from campaigns.clock import Clock
from campaigns.delivery.enrollment import enroll
from campaigns.models import CampaignRevision, ContactRequest, Enrollment, PersonEvent, Subscriber
from campaigns.sequences.campaign import Campaign
from campaigns.sequences.journey import Trigger
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.states import EnrollmentStatus, SubscriberStatus

LOOKBACK = timedelta(days=7)
LIVE = (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)


@dataclass
class TriggerReport:
    enrolled: dict[str, int] = field(default_factory=dict)  # campaign key -> people

    @property
    def total(self) -> int:
        return sum(self.enrolled.values())


def deployed_at(session: Session, campaign_key: str) -> datetime | None:
    """When the campaign was first seen deployed (the scheduler records each shape)."""
    return session.scalar(
        select(func.min(CampaignRevision.created_at)).where(
            CampaignRevision.campaign_key == campaign_key
        )
    )


def enroll_triggered(
    session: Session, clock: Clock, registry: Registry, policy: Policy, limit: int = 500
) -> TriggerReport:
    """Enroll everyone whose trigger moment has come, for every campaign with triggers."""
    report = TriggerReport()
    now = clock.now()
    for campaign in registry.campaigns().values():
        if not campaign.enroll_on:
            continue
        first = deployed_at(session, campaign.key)
        if first is None:
            continue  # the scheduler's next tick records it
        floor = max(first, now - LOOKBACK)
        for trigger in campaign.enroll_on:
            for ref, subscriber_id in _moments(
                session, campaign, trigger, floor - trigger.after, now - trigger.after, limit
            ):
                if _enroll(session, clock, registry, policy, campaign, ref, subscriber_id):
                    report.enrolled[campaign.key] = report.enrolled.get(campaign.key, 0) + 1
    session.flush()
    return report


def _moments(session, campaign: Campaign, trigger: Trigger, start, end, limit: int):
    """(trigger_ref, subscriber id) of the moments in [start, end] not yet enrolled."""
    source = trigger.source
    if trigger.kind == "event":
        row_id, person, at = PersonEvent.id, PersonEvent.subscriber_id, PersonEvent.occurred_at
        where = [PersonEvent.name == source]
    elif trigger.kind == "call_requested":
        row_id, person = ContactRequest.id, ContactRequest.subscriber_id
        at = ContactRequest.created_at
        where = [] if source == "any" else [ContactRequest.campaign_key == source]
    else:
        row_id, person = Enrollment.id, Enrollment.subscriber_id
        where = [Enrollment.campaign_key == source]
        if trigger.kind == "completed":
            at = Enrollment.cursor_base_at  # set when the last step was claimed
            where.append(Enrollment.status == EnrollmentStatus.COMPLETED)
        else:
            at = Enrollment.goal_reached_at
    ref = literal(f"{trigger.kind}:") + cast(row_id, String)
    here = aliased(Enrollment)
    done = exists().where(here.campaign_key == campaign.key, here.trigger_ref == ref)
    if campaign.reentry:
        # Someone still in the campaign waits; their moment is read again next pass.
        busy = exists().where(
            here.campaign_key == campaign.key,
            here.subscriber_id == person,
            here.status.in_(LIVE),
        )
    else:
        busy = exists().where(here.campaign_key == campaign.key, here.subscriber_id == person)
    query = (
        select(ref, person)
        .join(Subscriber, Subscriber.id == person)
        .where(
            *where,
            at >= start,
            at <= end,
            Subscriber.status == SubscriberStatus.ACTIVE,
            ~done,
            ~busy,
        )
        .order_by(at)
        .limit(limit)
    )
    return session.execute(query).all()


def _enroll(session, clock, registry, policy, campaign: Campaign, ref: str, subscriber_id) -> bool:
    subscriber = session.get(Subscriber, subscriber_id)
    try:
        with session.begin_nested():
            enrollment = enroll(
                session,
                clock,
                registry,
                subscriber,
                campaign.key,
                policy,
                source="trigger",
                trigger_ref=ref,
                again=campaign.reentry,
            )
    except IntegrityError:  # another pass enrolled this moment at the same time
        return False
    return enrollment.trigger_ref == ref
