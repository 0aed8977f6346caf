"""The link pages' reads on the event loop (web/page_pool.py), on real PostgreSQL: the
reads of one loop turn are one query and each page gets its own row; a database the pool
cannot reach fails the reads quickly, and the pages then read the usual way and still
answer; a message that does not exist is None, not an error."""

from __future__ import annotations

import asyncio
import time

from campaigns.db import postgres_conninfo
from tests import services
from tests import test_hit_queue as base
from tests.test_hit_queue import AGENT, app, links, sent
from web.page_pool import PagePool, Unavailable

# The fixtures of tests/test_hit_queue.py: the course and its registry.
course, registry = base.course, base.registry


def read_all(pool: PagePool, publics: list[str]):
    async def together():
        try:
            return await asyncio.gather(*(pool.visit(p) for p in publics))
        finally:
            stats = pool._reads.pool.get_stats() if pool._reads else {}
            await pool.close()
            together.stats = stats

    found = asyncio.run(together())
    return found, together.stats


def test_the_reads_of_one_turn_are_one_query_each_page_its_own_row(
    pg_factory,
    clock,
    registry,
    policy,
):
    tokens = sent(pg_factory, clock, registry, policy, n=12)
    pool = PagePool(postgres_conninfo(pg_factory))
    asked = [*tokens, tokens[0], "no-such-token"]
    found, stats = read_all(pool, asked)
    assert stats["requests_num"] == 1  # one connection taken: one query for all 14
    assert [v.message.public_token for v in found[:12]] == tokens
    assert found[12].message.public_token == tokens[0]  # the same one twice: both answered
    assert found[13] is None
    assert len({v.message.id for v in found[:12]}) == 12
    assert all(v.subscriber.erased_at is None for v in found[:12])


def test_a_database_the_pool_cannot_reach_fails_the_reads_quickly():
    pool = PagePool(f"postgresql://postgres@127.0.0.1:{services.free_port()}/nowhere")

    async def one():
        try:
            await pool.visit("anything")
        except Unavailable as exc:
            return exc
        finally:
            await pool.close()

    started = time.monotonic()
    assert isinstance(asyncio.run(one()), Unavailable)
    assert time.monotonic() - started < 5


def test_when_the_pool_cannot_answer_the_pages_read_the_usual_way(
    pg_factory,
    clock,
    registry,
    policy,
    course,
):
    [token] = sent(pg_factory, clock, registry, policy)
    client = app(pg_factory, clock, None, "", course)
    client.app.state.page_pool = PagePool(
        f"postgresql://postgres@127.0.0.1:{services.free_port()}/nowhere"
    )
    lesson = client.get(links(token).read_online, headers={"User-Agent": AGENT})
    assert lesson.status_code == 200 and "<html" in lesson.text.lower()
    # After a failure the pages leave the pool alone for a while: no wait for it each time.
    started = time.monotonic()
    for _ in range(3):
        again = client.get(links(token).read_online, headers={"User-Agent": AGENT})
        assert again.status_code == 200 and again.text == lesson.text
    assert time.monotonic() - started < 1.5
    forged = client.get(links(token).read_online + "x", headers={"User-Agent": AGENT})
    assert forged.status_code == 404
