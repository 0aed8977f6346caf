"""The frequency cap: how many messages one person may get a day and a week, across every
campaign. Settings give the default (FREQUENCY_CAP_PER_DAY, FREQUENCY_CAP_PER_WEEK); a
campaign file may override either for its own steps:

    frequency_cap: {per_day: 1, per_week: 3}   # 0: no cap of that kind for this campaign

A field left out of the file keeps the setting's value. The cap a due step is judged by
is its own campaign's; what it counts is everything the person got from every campaign
(campaigns.delivery.frequency_cap counts and holds).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator


@dataclass(frozen=True)
class Cap:
    """At most `per_day` messages on one local day and `per_week` over seven local days
    (today and the six before); 0 is no cap of that kind."""

    per_day: int = 0
    per_week: int = 0

    @property
    def active(self) -> bool:
        return bool(self.per_day or self.per_week)

    def over(self, other: CapOverride | None) -> Cap:
        """This cap with a campaign's overrides applied."""
        if other is None:
            return self
        return Cap(
            self.per_day if other.per_day is None else other.per_day,
            self.per_week if other.per_week is None else other.per_week,
        )

    def describe(self) -> str:
        spans = ((self.per_day, "day"), (self.per_week, "week"))
        return ", ".join(f"{n} a {span}" for n, span in spans if n) or "no cap"


def cap_problem(per_day: int | None, per_week: int | None) -> str | None:
    """Why a day and a week cap do not fit together, or None."""
    if per_day and per_week and per_week < per_day:
        return f"per_week ({per_week}) must be 0 (no cap) or at least per_day ({per_day})"
    return None


@dataclass(frozen=True)
class CapOverride:
    """What a campaign file says; None keeps the setting."""

    per_day: int | None = None
    per_week: int | None = None


class FrequencyCapSpec(BaseModel):
    """`frequency_cap:` in a campaign file."""

    model_config = ConfigDict(extra="forbid")
    per_day: int | None = Field(None, ge=0, le=100)
    per_week: int | None = Field(None, ge=0, le=700)

    @model_validator(mode="after")
    def _fits(self) -> FrequencyCapSpec:
        if self.per_day is None and self.per_week is None:
            raise ValueError("give per_day, per_week or both (0 is no cap)")
        problem = cap_problem(self.per_day, self.per_week)
        if problem:
            raise ValueError(problem)
        return self

    def override(self) -> CapOverride:
        return CapOverride(self.per_day, self.per_week)
