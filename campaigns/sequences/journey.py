"""A campaign file's `goal`: the person event the course works towards, and what reaching
it does to the person's course (campaigns.journeys.goals carries it out).

    goal: {event: visit_booked, then: exit}              # leave the course
    goal: {event: visit_booked, then: {jump: next_step}} # go straight to that step, due now

`event` is a person event's name as the events API and `drip import-events` take it
(lower case, digits and _). Parsed here, beside campaign.py, so the campaign file's
schema keeps one home per block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# A person event's name: the shape of a step key, so it reads the same in every file.
EVENT_NAME = r"^[a-z][a-z0-9_]{0,62}$"


class JumpSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jump: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")


class GoalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: str = Field(pattern=EVENT_NAME)
    then: Literal["exit"] | JumpSpec = "exit"


@dataclass(frozen=True)
class Goal:
    event: str
    jump: str | None = None  # None: reaching the goal ends the course

    @property
    def then(self) -> str:
        return f"jump to {self.jump}" if self.jump else "exit"


def goal_of(spec: GoalSpec | None) -> Goal | None:
    if spec is None:
        return None
    jump = spec.then.jump if isinstance(spec.then, JumpSpec) else None
    return Goal(spec.event, jump)


def goal_problems(path: Path, spec: GoalSpec | None, step_keys: list[str]) -> list[str]:
    """What the schema cannot see: a jump must name one of the campaign's steps."""
    if spec is None or not isinstance(spec.then, JumpSpec) or spec.then.jump in step_keys:
        return []
    return [
        f"{path.name}: field goal.then.jump: no step {spec.then.jump!r} in this campaign "
        f"(steps: {', '.join(step_keys)})"
    ]
