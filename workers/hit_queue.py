"""The durable queue of opens and clicks (campaigns.tracking.queued_hits), on Redis.

    web process:  push(hit) ─► RPUSH <prefix>hits           (before the answer goes out)
    drainer:      LMOVE hits ─► hits:processing (a batch) ─► record_hit each, one commit
                  ─► LREM each from hits:processing          (only after the commit)

Never lost: an item is in `hits` or `hits:processing` until the transaction that recorded
it has committed. A drainer killed mid-batch leaves its batch in `hits:processing`; the
next drainer (one at a time, under a lock that expires, so a dead one's lock runs out)
records what it finds there first, and the hits already committed are found by their id
and skipped (record_hit: exactly once). An item that cannot be recorded for a reason of
its own (it does not parse) goes to `hits:failed`, kept for ops, so it cannot block the
rest; a database outage leaves the batch where it is for the next run.

Without Redis (the embedded defaults) there is no queue: `push` says False and the page
records the hit itself, in the request, as before. So does a web process whose Redis has
just failed: it stops trying for RETRY_AFTER seconds (a refused connection costs nothing,
but a Redis that hangs would cost each request its socket timeout) and says the outage
once (workers.outages). Either way the hit is recorded and the answer is never a 5xx.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

import redis
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock
from campaigns.db import transaction
from campaigns.tracking.machine import Rules
from campaigns.tracking.queued_hits import Outcome, QueuedHit, record_hit, record_hits
from workers.outages import Outage

log = logging.getLogger(__name__)
outage = Outage("redis (open and click queue)", log)

RETRY_AFTER = 2.0  # seconds a web process records hits itself after Redis failed
BATCH = 200  # hits recorded in one transaction
LOCK_MS = 30_000  # a drainer's lock; renewed every batch, runs out if the drainer dies
# Deletes the lock only if it is still ours (it may have run out and been taken).
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"


class HitQueue:
    def __init__(self, url: str, prefix: str = ""):
        # Short timeouts: the page waits on this before answering, and falls back to
        # recording the hit itself when Redis does not answer.
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        self.pending = f"{prefix}hits"
        self.processing = f"{prefix}hits:processing"
        self.failed = f"{prefix}hits:failed"
        self.lock = f"{prefix}hits:drainer"
        self._skip_until = 0.0
        self._guard = threading.Lock()

    # ------------------------------------------------------------ the web side
    def push(self, hit: QueuedHit) -> bool:
        """True once the hit is in Redis; False when the caller must record it itself."""
        if time.monotonic() < self._skip_until:
            return False
        try:
            self.redis.rpush(self.pending, hit.dumps())
        except redis.RedisError as exc:
            with self._guard:
                self._skip_until = time.monotonic() + RETRY_AFTER
            outage.failed("queueing an open or click", exc)
            return False
        outage.ok()
        return True

    def depth(self) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for key in (self.pending, self.processing, self.failed):
            pipe.llen(key)
        pending, processing, failed = pipe.execute()
        return {"pending": pending, "processing": processing, "failed": failed}

    # ------------------------------------------------------------ the drainer
    def drain(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        rules: Rules,
        *,
        budget: float = 5.0,
        batch: int = BATCH,
    ) -> dict[str, int] | None:
        """Record queued hits for up to `budget` seconds; None if another drainer runs."""
        me = secrets.token_hex(8)
        if not self.redis.set(self.lock, me, nx=True, px=LOCK_MS):
            return None
        counts = {o.value: 0 for o in Outcome} | {"failed": 0}
        try:
            # What a drainer that died left behind, first.
            leftovers = self.redis.lrange(self.processing, 0, -1)
            if leftovers:
                log.warning("hit queue: %d hit(s) left by a stopped drainer", len(leftovers))
                self._record(factory, clock, rules, leftovers, counts)
            deadline = time.monotonic() + budget
            while time.monotonic() < deadline:
                items = self._take(batch)
                if not items:
                    break
                self._record(factory, clock, rules, items, counts)
                self.redis.pexpire(self.lock, LOCK_MS)
        finally:
            self.redis.eval(_RELEASE, 1, self.lock, me)
        return counts

    def _take(self, n: int) -> list[bytes]:
        pipe = self.redis.pipeline(transaction=False)
        for _ in range(n):
            pipe.lmove(self.pending, self.processing, "LEFT", "RIGHT")
        return [item for item in pipe.execute() if item is not None]

    def _record(self, factory, clock, rules, items: list[bytes], counts: dict) -> None:
        hits, bad = [], []
        for raw in items:
            try:
                hits.append(QueuedHit.loads(raw))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("hit queue: not a hit (%s); kept in %s", exc, self.failed)
                bad.append(raw)
        try:
            with transaction(factory) as session:
                outcomes = record_hits(session, clock, hits, rules)
        except OperationalError:
            raise  # the database is away: the batch stays in processing for the next run
        except Exception:
            # One hit that cannot be recorded must not hold up the rest: one at a time.
            log.exception("hit queue: a batch failed; recording its hits one by one")
            outcomes = []
            for hit, raw in zip(hits, [r for r in items if r not in bad], strict=True):
                try:
                    with transaction(factory) as session:
                        outcomes.append(record_hit(session, clock, hit, rules))
                except OperationalError:
                    raise
                except Exception:
                    log.exception("hit queue: hit %s could not be recorded; kept", hit.id)
                    bad.append(raw)
        for outcome in outcomes:
            counts[outcome.value] += 1
        # Committed: only now may the items leave Redis.
        pipe = self.redis.pipeline(transaction=False)
        for raw in bad:
            pipe.rpush(self.failed, raw)
        for raw in items:
            pipe.lrem(self.processing, 1, raw)
        pipe.execute()
        counts["failed"] += len(bad)


def build_hit_queue(settings) -> HitQueue | None:
    """The queue when REDIS_URL is set; None (record in the request) otherwise."""
    if not settings.redis_url:
        return None
    return HitQueue(settings.redis_url, settings.redis_key_prefix)
