"""Parameter types the commands share, for what click's own types let through."""

from __future__ import annotations

import math

import click


class Seconds(click.FloatRange):
    """A number of seconds between `min` and `max`. click's FloatRange alone accepts
    "nan" (every comparison with it is false), and "inf" when there is no `max`."""

    name = "seconds"

    def __init__(self, min: float, max: float) -> None:
        super().__init__(min=min, max=max)

    def convert(self, value, param, ctx):
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return seconds
