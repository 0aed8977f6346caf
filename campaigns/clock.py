"""Clocks. The domain never calls datetime.now() itself, so tests pin time and the demo
compresses four weeks into about a minute with the same code paths."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class Clock:
    def now(self) -> datetime:  # pragma: no cover - interface
        raise NotImplementedError


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FixedClock(Clock):
    """A clock tests move by hand."""

    current: datetime

    def now(self) -> datetime:
        return self.current

    def advance(self, **kwargs) -> datetime:
        self.current = self.current + timedelta(**kwargs)
        return self.current


@dataclass(frozen=True)
class ScaledClock(Clock):
    """Virtual time running `scale` times faster than real time from a shared epoch.

    Every process of a demo reads the same epochs from the environment, so the
    scheduler, the workers and the demo driver agree on what "now" is.
    """

    real_epoch: float
    virtual_epoch: float
    scale: float

    def now(self) -> datetime:
        elapsed = (time.time() - self.real_epoch) * self.scale
        return datetime.fromtimestamp(self.virtual_epoch + elapsed, UTC)


def clock_from_settings(settings) -> Clock:
    if settings.time_scale == 1.0 and settings.clock_virtual_epoch is None:
        return SystemClock()
    real = settings.clock_real_epoch if settings.clock_real_epoch is not None else time.time()
    virtual = settings.clock_virtual_epoch if settings.clock_virtual_epoch is not None else real
    return ScaledClock(real, virtual, settings.time_scale)
