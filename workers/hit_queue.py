"""The durable queue of opens and clicks (campaigns.tracking.queued_hits), on Redis.

    web process:  offer(hit) ─► one script: a repeat within COLLAPSE_SECONDS? answered, not
                  queued; `pending` at its cap? the page records it itself; else RPUSH
    drainer:      LMOVE hits ─► hits:processing (a batch) ─► record_hits, one commit
                  ─► LREM each from hits:processing          (only after the commit)

Never lost: an item is in `hits` or `hits:processing` until the transaction that recorded
it has committed. A drainer killed mid-batch leaves its batch in `hits:processing`; the
next drainer (one at a time, under a lock that expires, so a dead one's lock runs out; a
live one renews it from a thread every third of its life, so a slow batch cannot lose
it) records what it finds there first, and the hits already committed are found by their
id and skipped (record_hit: exactly once).

Errors: a database error that is about the database (away, read-only after a failover,
a schema that does not match: any DBAPIError but an IntegrityError or DataError) leaves
the batch where it is for the next run. Only a hit that cannot be recorded for a reason
of its own (it does not parse, it breaks a constraint) goes to `hits:failed`, so it cannot
block the rest; the drainer puts it back in `hits` after RETRY_FAILED_SECONDS, up to
ATTEMPTS times; after the last it is logged with its reason and kept without the
client's address and user agent for ops (`drip hits requeue`).

Bounded: a repeat of the same open or click (token, link, method) within COLLAPSE_SECONDS
is answered and not queued (one SET NX with that TTL), and past `max_pending` items the
page records the hit itself in the request (slower, which slows a client that hammers
one link by itself); nothing is ever dropped.

Without Redis (the embedded defaults) there is no queue: `offer` says False and the page
records the hit itself, in the request, as before. So does a web process whose Redis has
just failed: it stops trying for RETRY_AFTER seconds (a refused connection costs nothing,
but a Redis that hangs would cost each request its socket timeout) and says the outage
once (workers.outages). Either way the hit is recorded and the answer is never a 5xx; it
is recorded under the id it was offered with, so a push that lands after its timeout is
the same hit, found and skipped by the drainer.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import secrets
import threading
import time
from dataclasses import replace

import redis
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock
from campaigns.db import transaction
from campaigns.tracking.machine import Rules
from campaigns.tracking.queued_hits import Outcome, QueuedHit, record_hit, record_hits
from workers.offer_batch import OfferBatch
from workers.outages import Outage

log = logging.getLogger(__name__)
outage = Outage("redis (open and click queue)", log)

RETRY_AFTER = 2.0  # seconds a web process records hits itself after Redis failed
BATCH = 200  # hits recorded in one transaction
LOCK_MS = 30_000  # a drainer's lock; renewed while it runs, runs out if the drainer dies
COLLAPSE_SECONDS = 5  # repeats of one open or click within this are one
MAX_PENDING = 1_000_000  # ~0.5 KB each in Redis (1.5 KB at most): ~0.5 GB at the cap
RETRY_FAILED_SECONDS = 300.0  # a failed hit goes back to `pending` after this
ATTEMPTS = 3  # times a hit is tried before it is kept for ops only

# Deletes the lock only if it is still ours (it may have run out and been taken).
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)
# KEYS: the repeat key, pending, the count of repeats. ARGV: the item, the repeat TTL,
# the cap. One round trip: 0 a repeat (counted, not queued), 1 queued, 2 full (the
# caller records it).
_OFFER = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('INCR', KEYS[3])
  return 0
end
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""
# Moves one entry from a list to another only if it is still there (a drainer and
# `drip hits requeue` may both try).
_MOVE = (
    "if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then "
    "return redis.call('RPUSH', KEYS[2], ARGV[2]) end return 0"
)


class Offer(enum.Enum):
    QUEUED = "queued"
    REPEAT = "repeat"  # the same open or click within COLLAPSE_SECONDS: answered only
    RECORD = "record"  # no queue, Redis away or the queue at its cap: record it now


class HitQueue:
    def __init__(
        self,
        url: str,
        prefix: str = "",
        *,
        max_pending: int = MAX_PENDING,
        lock_ms: int = LOCK_MS,
        retry_failed_seconds: float = RETRY_FAILED_SECONDS,
    ):
        # Short timeouts: the page waits on this before answering, and falls back to
        # recording the hit itself when Redis does not answer.
        self.url = url
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        self._aio: OfferBatch | None = None  # offer_async's, on its event loop
        self.prefix = prefix
        self.pending = f"{prefix}hits"
        self.processing = f"{prefix}hits:processing"
        self.failed = f"{prefix}hits:failed"
        self.lock = f"{prefix}hits:drainer"
        self.repeats = f"{prefix}hits:repeats"  # answered and not queued, ever (ops, bench)
        self.max_pending = max_pending
        self.lock_ms = lock_ms
        self.retry_failed_seconds = retry_failed_seconds
        self._move = self.redis.register_script(_MOVE)
        self._skip_until = 0.0
        self._guard = threading.Lock()

    # ------------------------------------------------------------ the web side
    async def offer_async(self, hit: QueuedHit) -> Offer:
        """Queue the hit, or say it is a repeat, or that the caller must record it. On
        the running event loop, with the other pushes of its turn (workers/offer_batch.py):
        the pages answer without a thread (web/hits.py)."""
        if time.monotonic() < self._skip_until:
            return Offer.RECORD
        repeat = f"{self.prefix}hits:seen:{hit.method}:{hit.link}:{hit.token}"
        keys = [repeat, self.pending, self.repeats]
        args = [hit.dumps(), COLLAPSE_SECONDS, self.max_pending]
        try:
            got = await self._batch().run(keys, args)
        except (TimeoutError, redis.RedisError, OSError) as exc:
            with self._guard:
                self._skip_until = time.monotonic() + RETRY_AFTER
            outage.failed("queueing an open or click", exc)
            return Offer.RECORD
        outage.ok()
        return {0: Offer.REPEAT, 1: Offer.QUEUED}.get(got, Offer.RECORD)

    def _batch(self) -> OfferBatch:
        """The running loop's batch: an asyncio connection belongs to the loop that opened
        it (one loop per web process; a test's client may run several in turn)."""
        loop = asyncio.get_running_loop()
        if self._aio is None or self._aio.loop is not loop:
            self._aio = OfferBatch(self.url, _OFFER, timeout=0.5)
        return self._aio

    async def aclose(self) -> None:
        """The event loop's client closed (the web app's shutdown)."""
        if self._aio is not None and self._aio.loop is asyncio.get_running_loop():
            await self._aio.aclose()
        self._aio = None

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
        if not self.redis.set(self.lock, me, nx=True, px=self.lock_ms):
            return None
        counts = {o.value: 0 for o in Outcome} | {"failed": 0, "retried": 0}
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(me, stop), daemon=True)
        renewer.start()
        try:
            counts["retried"] = self.retry_failed()
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
        finally:
            stop.set()
            renewer.join()
            self.redis.eval(_RELEASE, 1, self.lock, me)
        return counts

    def _renew(self, me: str, stop: threading.Event) -> None:
        """Keeps the lock ours while the drainer runs, a batch however slow included."""
        while not stop.wait(self.lock_ms / 3000):
            try:
                if not self.redis.eval(_RENEW, 1, self.lock, me, self.lock_ms):
                    log.error("hit queue: the drainer's lock was lost")
                    return
            except redis.RedisError as exc:  # the next beat finds out; say it here
                log.warning("hit queue: could not renew the drainer's lock: %s", exc)

    def _take(self, n: int) -> list[bytes]:
        pipe = self.redis.pipeline(transaction=False)
        for _ in range(n):
            pipe.lmove(self.pending, self.processing, "LEFT", "RIGHT")
        return [item for item in pipe.execute() if item is not None]

    def _record(self, factory, clock, rules, items: list[bytes], counts: dict) -> None:
        hits, bad = [], []  # bad: (raw, hit or None, reason)
        for raw in items:
            try:
                hits.append((raw, QueuedHit.loads(raw)))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("hit queue: not a hit (%s); kept in %s", exc, self.failed)
                bad.append((raw, None, f"not a hit: {exc}"))
        try:
            with transaction(factory) as session:
                outcomes = record_hits(session, clock, [h for _, h in hits], rules)
        except DBAPIError as exc:
            if not isinstance(exc, IntegrityError | DataError):
                # About the database, not a hit (away, read-only, another schema): the
                # batch stays in processing for the next run.
                raise
            outcomes = self._one_by_one(factory, clock, rules, hits, bad)
        except Exception:
            outcomes = self._one_by_one(factory, clock, rules, hits, bad)
        for outcome in outcomes:
            counts[outcome.value] += 1
        # Committed: only now may the items leave Redis.
        pipe = self.redis.pipeline(transaction=False)
        for raw, hit, reason in bad:
            pipe.rpush(self.failed, self._failure(raw, hit, reason))
        for raw in items:
            pipe.lrem(self.processing, 1, raw)
        pipe.execute()
        counts["failed"] += len(bad)

    def _one_by_one(self, factory, clock, rules, hits, bad) -> list[Outcome]:
        """One hit that cannot be recorded must not hold up the rest."""
        log.exception("hit queue: a batch failed; recording its hits one by one")
        outcomes = []
        for raw, hit in hits:
            try:
                with transaction(factory) as session:
                    outcomes.append(record_hit(session, clock, hit, rules))
            except DBAPIError as exc:
                if not isinstance(exc, IntegrityError | DataError):
                    raise
                log.exception("hit queue: hit %s could not be recorded", hit.id)
                bad.append((raw, hit, type(exc).__name__))
            except Exception as exc:
                log.exception("hit queue: hit %s could not be recorded", hit.id)
                bad.append((raw, hit, type(exc).__name__))
        return outcomes

    def _failure(self, raw: bytes, hit: QueuedHit | None, reason: str) -> str:
        """The `failed` entry: the item (its attempts counted), when and why."""
        if hit is None:  # never a hit: nothing to retry, kept for ops as it came
            item, attempts = raw.decode(errors="replace")[:2000], ATTEMPTS
        else:
            attempts = hit.attempts + 1
            if attempts >= ATTEMPTS:
                log.error(
                    "hit queue: hit %s (%s %s) given up after %d attempts: %s; kept in %s "
                    "without its client's address and user agent",
                    hit.id, hit.kind, hit.link, attempts, reason, self.failed,
                )  # fmt: skip
                hit = replace(hit, client=None, user_agent="")
            item = replace(hit, attempts=attempts).dumps()
        entry = {"item": item, "attempts": attempts, "at": time.time(), "reason": reason}
        return json.dumps(entry, separators=(",", ":"))

    def failures(self) -> list[tuple[bytes, dict]]:
        """The `failed` entries, each (as stored, parsed); an unreadable one as {}."""
        out = []
        for raw in self.redis.lrange(self.failed, 0, -1):
            try:
                entry = json.loads(raw)
                out.append((raw, entry if isinstance(entry, dict) else {}))
            except ValueError:
                out.append((raw, {}))
        return out

    def retry_failed(self, *, everything: bool = False) -> int:
        """Failed hits back to `pending`: those failed RETRY_FAILED_SECONDS ago with
        attempts left, or (`everything`, ops' `drip hits requeue`) every hit, its
        attempts counted from nought. Returns how many moved."""
        moved = 0
        now = time.time()
        for raw, entry in self.failures():
            try:
                hit = QueuedHit.loads(entry["item"])
            except (ValueError, KeyError, TypeError):
                continue  # not a hit: nothing could record it
            due = now - entry.get("at", now) >= self.retry_failed_seconds
            if everything:
                hit = replace(hit, attempts=0)
            elif entry.get("attempts", ATTEMPTS) >= ATTEMPTS or not due:
                continue
            moved += self._move(keys=[self.failed, self.pending], args=[raw, hit.dumps()]) > 0
        return moved


def build_hit_queue(settings) -> HitQueue | None:
    """The queue when REDIS_URL is set; None (record in the request) otherwise."""
    if not settings.redis_url:
        return None
    prefix, most = settings.redis_key_prefix, settings.hit_queue_max
    return HitQueue(settings.redis_url, prefix, max_pending=most)
