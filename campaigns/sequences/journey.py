"""A campaign file's `goal` and `enroll_on` blocks: the person event the course works
towards and what reaching it does (campaigns.journeys.goals carries it out), and what
enrolls people in the campaign by itself (campaigns.journeys.triggers).

    goal: {event: visit_booked, then: exit}              # leave the course
    goal: {event: visit_booked, then: {jump: next_step}} # go straight to that step, due now

    enroll_on:                                 # any of these enrolls the person
      - {completed: hip_and_back, after: 14d}  # that course's last lesson, 14 days on
      - {goal_reached: hip_and_back}           # that course's goal reached
      - {call_requested: hip_and_back}         # a call asked for from that course (or: any)
      - {event: class_attended, after: 1d}     # a person event of this name
    reentry: false                             # true: a person whose enrollment here has
                                               # ended may be enrolled again by a trigger

`event` is a person event's name as the events API and `drip import-events` take it
(lower case, digits and _). Parsed here, beside campaign.py, so the campaign file's
schema keeps one home per block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


def jumped_to(campaign, step, goal_event_id: int | None) -> bool:
    """Whether a cursor waiting on `step` was put there by the campaign's goal: it reached
    the goal, and the goal jumps to this step (a step it already had is never jumped to,
    so the cursor stands here only once). Such a step is due as soon as the lesson before
    it has gone (campaigns.delivery.claiming), not its own delay after that lesson."""
    goal = campaign.goal
    return goal_event_id is not None and goal is not None and goal.jump == step.key


def goal_problems(path: Path, spec: GoalSpec | None, step_keys: list[str]) -> list[str]:
    """What the schema cannot see: a jump must name one of the campaign's steps."""
    if spec is None or not isinstance(spec.then, JumpSpec) or spec.then.jump in step_keys:
        return []
    return [
        f"{path.name}: field goal.then.jump: no step {spec.then.jump!r} in this campaign "
        f"(steps: {', '.join(step_keys)})"
    ]


# ---------------------------------------------------------------- enroll_on

KINDS = ("completed", "goal_reached", "call_requested", "event")
_CAMPAIGN = r"^[a-z][a-z0-9_]{0,62}$"


class TriggerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    completed: str | None = Field(None, pattern=_CAMPAIGN)
    goal_reached: str | None = Field(None, pattern=_CAMPAIGN)
    call_requested: str | None = Field(None, pattern=_CAMPAIGN)  # a campaign key, or "any"
    event: str | None = Field(None, pattern=EVENT_NAME)
    after: str | int = "0m"

    @model_validator(mode="after")
    def _one_kind(self) -> TriggerSpec:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a trigger names exactly one of {', '.join(KINDS)}")
        if "any" in (self.completed, self.goal_reached):
            raise ValueError("only call_requested may say any; name the campaign")
        return self


@dataclass(frozen=True)
class Trigger:
    kind: str  # one of KINDS
    source: str  # the campaign key ("any" for call_requested), or the event's name
    after: timedelta = timedelta(0)

    def describe(self) -> str:
        what = {
            "completed": f"completed {self.source}",
            "goal_reached": f"reached the goal of {self.source}",
            "call_requested": (
                "asked for a call"
                if self.source == "any"
                else f"asked for a call from {self.source}"
            ),
            "event": f"did {self.source}",
        }[self.kind]
        if not self.after:
            return what
        hours, minutes = divmod(self.after.seconds // 60, 60)
        parts = [(self.after.days, "d"), (hours, "h"), (minutes, "m")]
        return f"{what}, {' '.join(f'{n}{unit}' for n, unit in parts if n)} later"


Delay = Callable[[str | int], timedelta]


def trigger_problems(path: Path, specs: list[TriggerSpec], delay: Delay) -> list[str]:
    """What the schema cannot see: each `after` must be a delay like '14d'."""
    problems = []
    for i, spec in enumerate(specs):
        try:
            delay(spec.after)
        except ValueError as exc:
            problems.append(f"{path.name}: field enroll_on.{i}.after: {exc}")
    return problems


def triggers_of(specs: list[TriggerSpec], delay: Delay) -> tuple[Trigger, ...]:
    """The triggers, with their delays read by `delay` (campaign.py's parse_delay, handed
    in so this module need not import the one that imports it)."""
    out = []
    for spec in specs:
        kind = next(k for k in KINDS if getattr(spec, k) is not None)
        out.append(Trigger(kind, getattr(spec, kind), delay(spec.after)))
    return tuple(out)
