"""The web side of the hit queue on the event loop (workers/offer_batch.py,
HitQueue.offer_async), on real Redis: the pushes of one turn go as one pipeline and each
page hears its own reply; a script Redis lost is loaded again and nothing is pushed
twice; a Redis that is away or too slow fails every push of the pipeline, quickly."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import redis

from campaigns.tracking.queued_hits import QueuedHit
from tests import services
from tests.test_hit_queue import prefix  # noqa: F401 - a key prefix of the test's own
from tests.test_hit_queue_limits import own_redis, stall  # noqa: F401 - fixtures
from workers.hit_queue import HitQueue, Offer

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def hit(n: int, link: str = "o") -> QueuedHit:
    return QueuedHit(token=f"token{n:04d}", kind="opened", link=link, at=AT)


def offer_all(queue: HitQueue, hits: list[QueuedHit]) -> list[Offer]:
    async def together():
        try:
            return await asyncio.gather(*(queue.offer_async(h) for h in hits))
        finally:
            await queue.aclose()

    return asyncio.run(together())


def commands(client: redis.Redis, name: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{name}", {})
    return int(stats.get("calls", 0))


def test_the_pushes_of_one_turn_are_one_pipeline_each_heard_apart(redis_url, prefix):  # noqa: F811
    queue = HitQueue(redis_url, prefix)
    hits = [hit(n) for n in range(40)] + [hit(0)]  # the last a repeat of the first
    offers = offer_all(queue, hits)
    assert offers[:40] == [Offer.QUEUED] * 40
    assert offers[40] is Offer.REPEAT
    assert queue.depth()["pending"] == 40
    ids = [QueuedHit.loads(raw).id for raw in queue.redis.lrange(queue.pending, 0, -1)]
    assert ids == [h.id for h in hits[:40]]  # in the order the pages offered them


def test_a_script_redis_lost_is_loaded_again_and_nothing_is_pushed_twice(own_redis):  # noqa: F811
    queue = HitQueue(own_redis)
    queue.redis.script_flush()
    calls_before = commands(queue.redis, "evalsha")
    offers = offer_all(queue, [hit(n) for n in range(10)])
    assert offers == [Offer.QUEUED] * 10
    assert queue.depth()["pending"] == 10
    assert commands(queue.redis, "evalsha") - calls_before == 20  # refused, then run
    assert commands(queue.redis, "script|load") >= 1


def test_a_redis_that_is_away_fails_every_push_quickly(tmp_path):
    queue = HitQueue(f"redis://127.0.0.1:{services.free_port()}/0")
    started = time.monotonic()
    assert offer_all(queue, [hit(n) for n in range(5)]) == [Offer.RECORD] * 5
    assert time.monotonic() - started < 2
    # For RETRY_AFTER seconds the pages record without asking Redis again.
    assert offer_all(queue, [hit(9)]) == [Offer.RECORD]


def test_a_redis_slower_than_the_timeout_fails_the_pipeline_not_the_page(own_redis):  # noqa: F811
    queue = HitQueue(own_redis)

    async def scene():
        try:
            assert await queue.offer_async(hit(1)) is Offer.QUEUED  # connection opened
            busy = await asyncio.to_thread(stall, own_redis, 1.5)
            started = time.monotonic()
            slow = await asyncio.gather(*(queue.offer_async(hit(n)) for n in range(2, 6)))
            waited = time.monotonic() - started
            await asyncio.to_thread(busy.join)
            return slow, waited
        finally:
            await queue.aclose()

    slow, waited = asyncio.run(scene())
    assert slow == [Offer.RECORD] * 4
    assert waited < 1.2  # the timeout (0.5 s), not the stall


def test_pushes_over_many_turns_use_one_connection_not_one_each(redis_url, prefix):  # noqa: F811
    """While a pipeline is out, the next turns' pushes wait for it: a slow Redis gets
    bigger pipelines, never a connection per turn."""
    queue = HitQueue(redis_url, prefix)

    async def spread():
        try:
            pending = []
            for n in range(60):
                pending.append(asyncio.ensure_future(queue.offer_async(hit(n))))
                await asyncio.sleep(0)  # the next push in another turn of the loop
            offers = await asyncio.gather(*pending)
            pool = queue._aio.client.connection_pool
            return offers, len(pool._available_connections) + len(pool._in_use_connections)
        finally:
            await queue.aclose()

    offers, connections = asyncio.run(spread())
    assert offers == [Offer.QUEUED] * 60
    assert connections == 1
