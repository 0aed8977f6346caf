"""A campaign's goal reached: what it does to the person's course.

A campaign file may name a goal (campaigns.sequences.journey):

    goal: {event: visit_booked, then: exit}
    goal: {event: visit_booked, then: {jump: preparing_for_your_visit}}

When a person event of that name is recorded for someone enrolled in the campaign, the
enrollment records the goal once (`goal_event_id`, `goal_reached_at`: when the person did
it) and then:

    active or paused, then: exit  ─► exited, exit_reason "reached the goal visit_booked";
                                     messages already queued are skipped at the send with
                                     that reason (campaigns.audience.eligibility.recheck)
    active or paused, then: jump  ─► the cursor moves to that step, due now (at the next
                                     moment its send window allows); a paused course stays
                                     paused and goes there when it resumes. The claim's
                                     order rules still hold (campaigns.delivery.ordering):
                                     a message of the previous step still on its way goes
                                     first, then the jumped-to step at once (not its own
                                     delay after it: claiming.py asks
                                     campaigns.sequences.journey.jumped_to). A step the person
                                     already had is never sent again: the cursor stays.
    completed                     ─► the goal is recorded (for the report), nothing moves
    exited                        ─► nothing: the person had left the course

Where a campaign lets people join again, only their latest entry counts. An event that
happened before the person joined the campaign is not its goal (they had
booked before the course could have had anything to do with it). The enrollment's row is
locked while it changes (FOR UPDATE on PostgreSQL; SQLite serialises writers), so a claim
running at the same moment either finishes first or skips the person for a tick.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.eligibility import reachable_channels
from campaigns.clock import Clock
from campaigns.models import Enrollment, PersonEvent, Subscriber
from campaigns.reasons import goal_reached
from campaigns.sequences.campaign import Campaign
from campaigns.sequences.registry import Registry
from campaigns.sequences.revisions import received_steps
from campaigns.sequences.timing import Policy, step_window
from campaigns.sequences.windows import next_allowed
from campaigns.states import EnrollmentStatus

_S = EnrollmentStatus
MOVABLE = (_S.ACTIVE, _S.PAUSED)


@dataclass(frozen=True)
class GoalOutcome:
    campaign_key: str
    enrollment_id: int
    did: str  # "exited", "jumped to <step>", or "recorded" (nothing to move)


def reach_goals(
    session: Session, clock: Clock, registry: Registry, policy: Policy, event: PersonEvent
) -> list[GoalOutcome]:
    """Apply `event` to every enrollment of its person whose campaign has it as goal."""
    campaigns = {
        key: c
        for key, c in registry.campaigns().items()
        if c.goal is not None and c.goal.event == event.name
    }
    if not campaigns:
        return []
    query = (
        select(Enrollment)
        .where(
            Enrollment.subscriber_id == event.subscriber_id,
            Enrollment.campaign_key.in_(campaigns),
            Enrollment.goal_reached_at.is_(None),
            Enrollment.status.in_((*MOVABLE, _S.COMPLETED)),
            Enrollment.created_at <= event.occurred_at,
        )
        .order_by(Enrollment.entry.desc(), Enrollment.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    outcomes = []
    seen: set[str] = set()
    for enrollment in session.scalars(query).all():
        if enrollment.campaign_key in seen:
            continue  # an earlier entry of a campaign joined again: the latest one counts
        seen.add(enrollment.campaign_key)
        campaign = campaigns[enrollment.campaign_key]
        enrollment.goal_event_id = event.id
        enrollment.goal_reached_at = event.occurred_at
        enrollment.updated_at = clock.now()
        did = "recorded"
        if enrollment.status in MOVABLE:
            did = _move(session, clock, policy, campaign, enrollment, event)
        outcomes.append(GoalOutcome(campaign.key, enrollment.id, did))
    session.flush()
    return outcomes


def _move(session, clock, policy, campaign: Campaign, enrollment: Enrollment, event) -> str:
    goal = campaign.goal
    now = clock.now()
    if goal.jump is None:
        enrollment.status = _S.EXITED
        enrollment.exit_reason = goal_reached(event.name)
        return "exited"
    step = campaign.step(goal.jump)
    if step is None or step.key in received_steps(session, enrollment.id):
        return "recorded"
    subscriber = session.get(Subscriber, enrollment.subscriber_id)
    channels = step.channels_for(reachable_channels(session, subscriber))
    enrollment.next_step_key = step.key
    enrollment.cursor_base_at = now
    enrollment.next_due_at = next_allowed(
        now, step_window(campaign, channels, policy), policy.zone(subscriber)
    )
    return f"jumped to {step.key}"


def campaigns_reached_by(session: Session, event_id: int) -> list[str]:
    """The campaigns whose goal this event reached (for the API's answer, first or again)."""
    return list(
        session.scalars(
            select(Enrollment.campaign_key)
            .where(Enrollment.goal_event_id == event_id)
            .order_by(Enrollment.campaign_key)
        )
    )
