"""Which scheduler leads: a lease row in the database, and every scheduler's heartbeat.

Several schedulers may run (`drip beat` on several hosts). Each calls `take_turn` every
few seconds: it renews the lease if it holds it, takes it if it has expired, and writes
its own heartbeat row (leading or standby) in the same transaction. Only the holder of an
unexpired lease publishes beat's entries (workers/beat.py); the others take over once it
expires, within one renewal interval. `release` hands it over at once on a clean stop.

Times are wall-clock UTC from the clock given (the scheduler passes the system clock,
never the demo's virtual one): hosts are expected to keep their clocks in sync (NTP), and
the scheduler's own stop-publishing margin covers the skew left (workers/beat.py).

The take is one conditional UPDATE (`holder = me OR expires_at < now`), which PostgreSQL
re-checks on the row it locks and SQLite runs alone, so two standbys that see the same
expired lease cannot both take it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import SchedulerInstance, SchedulerLease

LEASE = "beat"
LEADING, STANDBY = "leading", "standby"
# Rows of schedulers not seen for this long are forgotten (each restart is a new pid).
FORGET_AFTER = timedelta(days=1)


def holder_id(host: str, pid: int) -> str:
    return f"{host}:{pid}"


def _take(session: Session, holder: str, now: datetime, lease: timedelta) -> bool:
    result = session.execute(
        update(SchedulerLease)
        .where(
            SchedulerLease.name == LEASE,
            or_(SchedulerLease.holder == holder, SchedulerLease.expires_at < now),
        )
        .values(
            term=case(
                (SchedulerLease.holder == holder, SchedulerLease.term),
                else_=SchedulerLease.term + 1,
            ),
            acquired_at=case(
                (SchedulerLease.holder == holder, SchedulerLease.acquired_at), else_=now
            ),
            holder=holder,
            renewed_at=now,
            expires_at=now + lease,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        return True
    if session.get(SchedulerLease, LEASE) is not None:
        return False
    # The first scheduler ever (or after the table was emptied): create the row. Another
    # doing the same at the same moment makes this insert fail, and that one leads.
    try:
        with session.begin_nested():
            session.add(
                SchedulerLease(
                    name=LEASE,
                    holder=holder,
                    term=1,
                    acquired_at=now,
                    renewed_at=now,
                    expires_at=now + lease,
                )
            )
    except IntegrityError:
        return False
    return True


def take_turn(session: Session, clock: Clock, host: str, pid: int, lease_seconds: float) -> bool:
    """Renew or take the lease if possible and write this scheduler's heartbeat; whether
    it now leads. The caller commits."""
    now = clock.now()
    holder = holder_id(host, pid)
    leading = _take(session, holder, now, timedelta(seconds=lease_seconds))
    role = LEADING if leading else STANDBY
    row = session.get(SchedulerInstance, holder)
    if row is None:
        session.add(
            SchedulerInstance(
                holder=holder, host=host, pid=pid, role=role, started_at=now, last_seen=now
            )
        )
    else:
        row.role, row.last_seen = role, now
    session.execute(
        delete(SchedulerInstance).where(SchedulerInstance.last_seen < now - FORGET_AFTER)
    )
    return leading


def record_tick(session: Session, clock: Clock, host: str, pid: int) -> None:
    """The leader published a tick: when, for `drip status` and the failover figures."""
    session.execute(
        update(SchedulerInstance)
        .where(SchedulerInstance.holder == holder_id(host, pid))
        .values(last_tick_at=clock.now())
    )


def release(session: Session, clock: Clock, host: str, pid: int) -> None:
    """A clean stop: the lease expires now, so a standby takes over at its next turn."""
    now = clock.now()
    holder = holder_id(host, pid)
    session.execute(
        update(SchedulerLease)
        .where(SchedulerLease.name == LEASE, SchedulerLease.holder == holder)
        .values(expires_at=now)
    )
    session.execute(
        update(SchedulerInstance)
        .where(SchedulerInstance.holder == holder)
        .values(role=STANDBY, last_seen=now)
    )


@dataclass(frozen=True)
class Instance:
    holder: str
    host: str
    pid: int
    role: str
    last_seen: datetime
    last_tick_at: datetime | None
    heartbeat_age_seconds: float
    # False once its heartbeat is older than a lease: the process is gone (or cut off),
    # whatever role its row last said.
    alive: bool


@dataclass(frozen=True)
class Leadership:
    """What everyone can read: who leads (None when the lease has expired or was never
    taken), since when, and every scheduler seen lately."""

    leader: str | None
    term: int | None
    expires_at: datetime | None
    instances: list[Instance]
    last_tick_age_seconds: float | None

    def fresh_on(self, host: str, within_seconds: float) -> list[Instance]:
        return [
            i
            for i in self.instances
            if i.host == host and i.heartbeat_age_seconds <= within_seconds
        ]

    @property
    def standby(self) -> list[Instance]:
        """Live schedulers ready to take over."""
        return [i for i in self.instances if i.alive and i.holder != self.leader]

    @property
    def leader_heartbeat_age_seconds(self) -> float | None:
        ages = [i.heartbeat_age_seconds for i in self.instances if i.holder == self.leader]
        return ages[0] if ages else None


def read_leadership(session: Session, clock: Clock, lease_seconds: float) -> Leadership:
    now = clock.now()
    lease = session.get(SchedulerLease, LEASE)
    rows = session.scalars(
        select(SchedulerInstance).order_by(SchedulerInstance.last_seen.desc())
    ).all()
    instances = []
    for r in rows:
        age = max((now - r.last_seen).total_seconds(), 0.0)
        instances.append(
            Instance(
                r.holder,
                r.host,
                r.pid,
                r.role,
                r.last_seen,
                r.last_tick_at,
                age,
                age <= lease_seconds,
            )
        )
    ticks = [i.last_tick_at for i in instances if i.last_tick_at is not None]
    last_tick_age = max((now - max(ticks)).total_seconds(), 0.0) if ticks else None
    live = lease is not None and lease.expires_at >= now
    return Leadership(
        lease.holder if live else None,
        lease.term if lease is not None else None,
        lease.expires_at if lease is not None else None,
        instances,
        last_tick_age,
    )
