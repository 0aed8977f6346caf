"""Beat's scheduler: publishes only while it leads, and is quiet about a broker outage.

Leadership. Several schedulers may run (`drip beat` on several hosts, or a worker's
embedded one); each takes a turn every SCHEDULER_RENEW_SECONDS
(campaigns.delivery.leadership.take_turn: renew or take the lease, write its heartbeat).
Only the holder of the lease publishes beat's entries; the others keep their turns as
standbys and take over once a dead leader's lease has expired. The new leader's entries
are all due at once (its own schedule never advanced), so its first tick goes out at the
turn it takes the lease.

Why a leader that loses the database stops before anyone can take over: a turn starts at
monotonic time t0 and, if it renews, the row says `expires_at = now + LEASE` with a `now`
read after t0. Others take the lease only once their clock passes that expiry. The leader
trusts its lease only until t0 + LEASE - RENEW on its own monotonic clock, so it stops
publishing at least RENEW seconds before the lease can be taken, whatever happened to its
renewals meanwhile (database away, a renewal that hangs, the process paused by SIGSTOP or
a long GC: it checks the deadline right before every publish, after it wakes). Those
RENEW seconds are the margin for clock skew between hosts and for a publish in flight;
settings refuse LEASE < 3 x RENEW so a leader survives two failed renewals in a row. A
takeover after a crash therefore takes at most LEASE + RENEW (plus the time to publish).

The schedule lives in memory (Celery's plain Scheduler, no celerybeat-schedule file):
every entry repeats every few seconds, so a file saves nothing, and two schedulers on one
host would share it.

Broker outages: Celery's own scheduler logs a full traceback (and the stack) for every
due task it cannot publish, one every few seconds for as long as Redis is away. This one
says it once when publishing starts failing and once when it works again, with how many
runs were skipped; the schedule itself is unchanged (a tick missed during the outage is
not replayed: the next one claims everything due).
"""

from __future__ import annotations

import logging
import os
import socket
import time

from celery.beat import Scheduler
from kombu import Producer
from kombu.utils.objects import cached_property

from campaigns.clock import SystemClock
from campaigns.db import (
    impatient_transaction,
    make_scheduler_engine,
    make_session_factory,
    transaction,
)
from campaigns.delivery import leadership
from settings import get_settings
from workers.outages import Outage

log = logging.getLogger(__name__)
broker = Outage("broker", log)
database = Outage("database", log)


class NotLeading(Exception):
    """The lease's deadline passed between the entry's check and its publish."""


class LeaderOnlyProducer(Producer):
    """kombu's Producer, checking the scheduler still trusts its lease as the last thing
    before a message is handed to the broker (after the task message is built). What it
    cannot stop: a publish already past this check when the deadline passes (its network
    write, and the retries kombu makes inside it when the broker connection fails). No
    fencing token reaches Redis; the RENEW margin is what covers those (see README)."""

    leading = staticmethod(lambda: True)

    def publish(self, body, *args, **kwargs):
        if not self.leading():
            raise NotLeading()
        return super().publish(body, *args, **kwargs)


class QuietScheduler(Scheduler):
    def setup_schedule(self):
        super().setup_schedule()
        s = get_settings()
        self._lease = s.scheduler_lease_seconds
        self._renew = s.scheduler_renew_seconds
        self._engine = make_scheduler_engine(s.database_url, self._renew)
        self._factory = make_session_factory(self._engine)
        # Wall-clock time for the rows, never the demo's virtual clock: leases are real.
        self._clock = SystemClock()
        self._host = socket.gethostname()
        self._pid = None  # read at the first turn: an embedded beat is a forked process
        self._next_turn = 0.0
        self._trusted_until = 0.0  # monotonic; publishing only before this
        self._was_leading = False

    # ------------------------------------------------------------------ leadership

    def leading(self) -> bool:
        return time.monotonic() < self._trusted_until

    def _take_turn(self) -> None:
        self._pid = self._pid or os.getpid()
        started = time.monotonic()
        try:
            # Never waits on a lock longer than a turn: another scheduler's stalled turn
            # must not stall this one (it tries again at its next turn).
            with impatient_transaction(self._factory, self._renew) as session:
                won = leadership.take_turn(session, self._clock, self._host, self._pid, self._lease)
        except Exception as exc:  # said once per outage; the deadline decides the rest
            database.failed("the scheduler's lease renewal", exc)
        else:
            database.ok()
            if won:
                self._trusted_until = started + self._lease - self._renew
            else:
                self._trusted_until = 0.0
        now_leading = self.leading()
        if now_leading != self._was_leading:
            log.warning(
                "beat: %s %s",
                leadership.holder_id(self._host, self._pid),
                "leads: publishing the schedule" if now_leading else "is standby",
            )
            self._was_leading = now_leading

    def tick(self, *args, **kwargs):
        now = time.monotonic()
        if now >= self._next_turn:
            self._next_turn = now + self._renew
            self._take_turn()
        until_turn = max(self._next_turn - time.monotonic(), 0.01)
        if not self.leading():
            return min(until_turn, self.max_interval)
        return min(super().tick(*args, **kwargs), until_turn)

    def close(self):
        try:
            super().close()
        finally:
            # Runs in Celery's SIGTERM handler, maybe in the middle of this scheduler's own
            # turn, whose open transaction holds the lease row: so it never waits long.
            if getattr(self, "_pid", None) is not None and not self._release():
                log.warning(
                    "beat: could not release the lease (row locked or database away): "
                    "a standby takes over once it expires, within %gs",
                    self._lease,
                )
            if hasattr(self, "_engine"):
                self._engine.dispose()

    def _release(self) -> bool:
        try:
            return leadership.release_quickly(self._factory, self._clock, self._host, self._pid)
        except Exception:  # whatever it was, the lease runs out by itself
            return False

    # ------------------------------------------------------------------ publishing

    @cached_property
    def producer(self):
        producer = LeaderOnlyProducer(self._ensure_connected(), auto_declare=False)
        producer.leading = self.leading
        return producer

    def apply_entry(self, entry, producer=None):
        if not self.leading():  # the lease ran out between the turn and this entry
            return
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:  # what failed is said once per outage, by broker.failed
            if isinstance(exc.__context__, NotLeading):  # Celery wraps it in SchedulingError
                log.info("beat: %s not sent: the lease's deadline passed", entry.name)
                return
            broker.failed(f"publishing {entry.task}", exc.__cause__ or exc)
            return
        broker.ok()
        log.debug("beat: sent %s (%s)", entry.name, entry.task)
        if entry.name == "tick":
            try:
                with transaction(self._factory) as session:
                    leadership.record_tick(session, self._clock, self._host, self._pid)
            except Exception as exc:
                database.failed("recording a tick", exc)
