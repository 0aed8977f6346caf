"""Clocks. The domain never calls datetime.now() itself, so tests pin time, and the demo
runs four weeks in about a minute with the same code paths.

    SystemClock   production
    FixedClock    tests and `drip simulate` (one process): moved by hand
    ScaledClock   virtual time running N times faster than real time (TIME_SCALE)
    FileClock     the demo: virtual time shared by every process through a small file,
                  running at real speed and jumped forward by the demo's driver whenever
                  nothing is due (workers/demo.py)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path


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


class FileClock(Clock):
    """Virtual time every process of one machine reads from a small file (CLOCK_FILE).

    The file holds two numbers: a real instant (Unix seconds) and the virtual instant it
    stands for. From there virtual time runs at real speed, so everything the engine
    measures within a busy stretch (a lease, a retry's backoff, the reaper's re-queue
    delay) takes its true length; whoever owns the clock moves it forward by rewriting
    the pair (`jump_to`), which it does only when nothing is due before the new moment.
    The pair is written to a temporary file and renamed into place, so a reader sees the
    old pair or the new one, never half of one. Read on every call: a jump reaches every
    process at once, and a read is one small file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _pair(self) -> tuple[float, float]:
        real, virtual = self.path.read_text().split()[:2]
        return float(real), float(virtual)

    def now(self) -> datetime:
        real, virtual = self._pair()
        return datetime.fromtimestamp(virtual + time.time() - real, UTC)

    def set(self, when: datetime) -> datetime:
        """Make `when` the virtual now (any direction: for starting a run)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(f"{time.time():.6f} {when.timestamp():.6f}\n")
        os.replace(tmp, self.path)
        return when

    def jump_to(self, when: datetime) -> datetime:
        """Move virtual time forward to `when`; never back (a moment already passed
        stays passed). Returns the virtual now."""
        now = self.now()
        return self.set(when) if when > now else now


def clock_from_settings(settings) -> Clock:
    if getattr(settings, "clock_file", None):
        return FileClock(settings.clock_file)
    if settings.time_scale == 1.0 and settings.clock_virtual_epoch is None:
        return SystemClock()
    real = settings.clock_real_epoch if settings.clock_real_epoch is not None else time.time()
    virtual = settings.clock_virtual_epoch if settings.clock_virtual_epoch is not None else real
    return ScaledClock(real, virtual, settings.time_scale)
