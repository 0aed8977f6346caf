"""A person event from outside, recorded and acted on: the one entry point the events API
(web/api.py) and `drip import-events` (campaigns.intake.event_imports) share, so an event
does the same whichever way it came.

    take_event ─► record it once per event id (campaigns.tracking.person_events)
               ─► the first time only: goals it reaches (campaigns.journeys.goals)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.journeys.goals import GoalOutcome, campaigns_reached_by, reach_goals
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.tracking.person_events import PersonEventIn, Recorded, record_person_event


@dataclass
class Taken:
    recorded: Recorded
    goals: list[GoalOutcome] = field(default_factory=list)  # what this call changed
    reached_in: list[str] = field(default_factory=list)  # campaigns whose goal it reached

    @property
    def created(self) -> bool:
        return self.recorded.created


def take_event(
    session: Session,
    clock: Clock,
    registry: Registry,
    policy: Policy,
    event: PersonEventIn,
    *,
    source: str,
    source_ref: str | None = None,
) -> Taken:
    """Record `event` and apply it. Raises what record_person_event raises (UnknownPerson,
    EventConflict); a known event id changes nothing and answers with the original."""
    recorded = record_person_event(session, clock, event, source, source_ref)
    taken = Taken(recorded)
    if recorded.created:
        taken.goals = reach_goals(session, clock, registry, policy, recorded.event)
    taken.reached_in = campaigns_reached_by(session, recorded.event.id)
    return taken
