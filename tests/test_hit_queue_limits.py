"""The hit queue's bounds and failure paths (workers/hit_queue.py, web/hits.py), on real
PostgreSQL and Redis (a private redis-server where a test stalls it):

repeats of one open or click are queued once; past its cap the page records in the
request; a Redis slower than the page's timeout does not record a hit twice; a database
that refuses writes leaves the batch for later; a hit that fails for itself is retried,
then kept without its client's address; the drainer's lock outlives a slow batch; nothing
is recorded for an erased person, whose lesson page is never served from the cache."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import replace

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import event, select, update

from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.links import Signer, links_for
from campaigns.models import Message, Subscriber
from campaigns.people.erasure import erase
from campaigns.staff.audit import Actor
from campaigns.tracking import machine, portal
from campaigns.tracking.machine import Rules
from campaigns.tracking.queued_hits import QueuedHit, record_hits
from settings import load_settings
from tests import services
from tests import test_hit_queue as base
from tests.test_hit_queue import AGENT, SECRET, app, events, links, sent
from web.hits import Lookups
from workers.cli import main
from workers.cli.context import Drip
from workers.hit_queue import ATTEMPTS, COLLAPSE_SECONDS, HitQueue

# The fixtures of tests/test_hit_queue.py: a key prefix of the test's own, the course.
prefix, course, registry = base.prefix, base.course, base.registry


def drain(factory, clock, queue: HitQueue):
    return queue.drain(factory, clock, Rules(), budget=10)


def test_repeats_of_one_open_are_queued_once_get_and_head_apart(
    pg_factory, clock, registry, policy, redis_url, prefix, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    client = app(pg_factory, clock, redis_url, prefix, course)
    for _ in range(5):
        assert client.get(links(token).open, headers={"User-Agent": AGENT}).status_code == 200
        assert client.head(links(token).open, headers={"User-Agent": AGENT}).status_code == 200
    queue = HitQueue(redis_url, prefix)
    assert queue.depth()["pending"] == 2  # one GET, one HEAD
    assert int(queue.redis.get(queue.repeats)) == 8
    [seen] = [k for k in queue.redis.scan_iter(f"{prefix}hits:seen:GET:*")]
    assert 0 < queue.redis.ttl(seen) <= COLLAPSE_SECONDS  # the next one after it is queued
    queue.redis.delete(*queue.redis.scan_iter(f"{prefix}hits:seen:*"))  # as if it ran out
    client.get(links(token).open, headers={"User-Agent": AGENT})
    assert queue.depth()["pending"] == 3
    assert drain(pg_factory, clock, queue)["recorded"] == 3


def test_past_the_cap_the_page_records_the_hit_itself(
    pg_factory, clock, registry, policy, redis_url, prefix, course, monkeypatch
):
    monkeypatch.setenv("HIT_QUEUE_MAX", "2")
    tokens = sent(pg_factory, clock, registry, policy, n=3)
    client = app(pg_factory, clock, redis_url, prefix, course)
    for token in tokens:
        assert client.get(links(token).open, headers={"User-Agent": AGENT}).status_code == 200
    queue = HitQueue(redis_url, prefix)
    assert queue.depth()["pending"] == 2
    [now] = events(pg_factory)  # the third, in the request
    assert now.provider_event_id.startswith("hit:")
    assert drain(pg_factory, clock, queue)["recorded"] == 2
    assert len(events(pg_factory)) == 3


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, to stall."""
    port = services.free_port()
    proc = subprocess.Popen(
        [services.redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", str(tmp_path), "--busy-reply-threshold", "10000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not services.answers(f"127.0.0.1:{port}"):
        assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
        time.sleep(0.05)
    yield url
    proc.kill()
    proc.wait(timeout=10)


def stall(url: str, seconds: float) -> threading.Thread:
    """Redis busy in a Lua loop for `seconds`: every other command waits behind it."""
    script = (
        "local t=redis.call('TIME') local e=t[1]+t[2]/1e6+ARGV[1] "
        "repeat t=redis.call('TIME') until t[1]+t[2]/1e6>=e"
    )
    busy = redis.Redis.from_url(url, socket_timeout=seconds + 10)
    thread = threading.Thread(target=busy.eval, args=(script, 0, seconds))
    thread.start()
    time.sleep(0.1)
    return thread


def test_a_redis_slower_than_the_timeout_records_the_hit_once(
    pg_factory, clock, registry, policy, own_redis, course
):
    first, token = sent(pg_factory, clock, registry, policy, n=2)
    # One event loop for both requests, as in a web process: the push goes out on the
    # connection the first one opened (a new one would time out in its handshake, and
    # its push would never be sent at all).
    with app(pg_factory, clock, own_redis, "", course) as client:
        # An open queued as usual first (Redis has the page's script from then on).
        assert client.get(links(first).open, headers={"User-Agent": AGENT}).status_code == 200
        busy = stall(own_redis, 1.5)
        # The push times out after 0.5 s: the page records the open itself...
        assert client.get(links(token).open, headers={"User-Agent": AGENT}).status_code == 200
        [now] = events(pg_factory)
        busy.join()
    # ...and the push, read by Redis once it is free again, lands all the same.
    queue = HitQueue(own_redis)
    deadline = time.monotonic() + 5
    while queue.depth()["pending"] < 2:
        assert time.monotonic() < deadline, "the late push never landed"
        time.sleep(0.05)
    counts = drain(pg_factory, clock, queue)
    assert (counts["recorded"], counts["duplicate"]) == (1, 1)
    ids = [e.provider_event_id for e in events(pg_factory)]
    assert len(ids) == 2 and now.provider_event_id in ids


def read_only(url: str):
    """A session factory whose every transaction is read-only, as after a failover."""
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _ro(dbapi_conn, _record):
        dbapi_conn.autocommit = True
        dbapi_conn.execute("SET default_transaction_read_only = on")
        dbapi_conn.autocommit = False

    return engine, make_session_factory(engine)


def test_a_read_only_database_leaves_the_batch_for_the_next_drain(
    pg_factory, clean_pg_url, clock, registry, policy, redis_url, prefix, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    client = app(pg_factory, clock, redis_url, prefix, course)
    client.get(links(token).open, headers={"User-Agent": AGENT})
    queue = HitQueue(redis_url, prefix)
    engine, ro = read_only(clean_pg_url)
    try:
        with pytest.raises(Exception, match="read-only"):
            drain(ro, clock, queue)
    finally:
        engine.dispose()
    assert queue.depth() == {"pending": 0, "processing": 1, "failed": 0}
    assert drain(pg_factory, clock, queue)["recorded"] == 1
    assert queue.depth() == {"pending": 0, "processing": 0, "failed": 0}


def test_a_hit_that_fails_itself_is_retried_then_kept_without_its_address(
    pg_factory, clock, registry, policy, redis_url, prefix, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    queue = HitQueue(redis_url, prefix, retry_failed_seconds=0)
    # An id longer than provider_event_id's column: a DataError of its own.
    bad = QueuedHit(token, "opened", "o", clock.now(), user_agent=AGENT, client="17.0.0.9")
    bad = replace(bad, id="hit:" + "x" * 200)
    good = QueuedHit(token, "opened", "o", clock.now(), user_agent=AGENT)
    queue.redis.rpush(queue.pending, bad.dumps(), good.dumps())
    counts = drain(pg_factory, clock, queue)
    assert (counts["recorded"], counts["failed"]) == (1, 1)
    for attempt in range(2, ATTEMPTS + 1):  # back in line each drain (0 s to wait here)
        counts = drain(pg_factory, clock, queue)
        assert (counts["retried"], counts["failed"]) == (1, 1), attempt
    assert drain(pg_factory, clock, queue)["retried"] == 0  # given up: kept for ops
    [(_, entry)] = queue.failures()
    assert entry["attempts"] == ATTEMPTS and entry["reason"] == "DataError"
    kept = QueuedHit.loads(entry["item"])
    assert (kept.client, kept.user_agent, kept.id) == (None, "", bad.id)
    assert len(events(pg_factory)) == 1

    settings = load_settings(
        environment="test", secret_key=base.SECRET, redis_url=redis_url, redis_key_prefix=prefix
    )
    shown = CliRunner().invoke(main, ["hits"], obj=Drip(settings))
    assert shown.exit_code == 0, shown.output
    assert "pending 0, processing 0, failed 1" in shown.output and "DataError" in shown.output
    moved = CliRunner().invoke(main, ["hits", "requeue"], obj=Drip(settings))
    assert moved.exit_code == 0 and "requeued 1 failed hit(s)" in moved.output
    [again] = queue.redis.lrange(queue.pending, 0, -1)
    assert QueuedHit.loads(again).attempts == 0


def test_drip_hits_without_redis_is_a_one_line_error():
    plain = load_settings(environment="test", secret_key=base.SECRET)
    got = CliRunner().invoke(main, ["hits"], obj=Drip(plain))
    assert got.exit_code == 1 and "REDIS_URL is not set" in got.output
    down = load_settings(
        environment="test", secret_key=base.SECRET, redis_url="redis://127.0.0.1:1/0"
    )
    got = CliRunner().invoke(main, ["hits", "requeue"], obj=Drip(down))
    assert got.exit_code == 1 and "redis does not answer" in got.output
    assert "Traceback" not in got.output


def test_the_drainers_lock_outlives_a_batch_slower_than_it(
    pg_factory, clock, registry, policy, redis_url, prefix
):
    [token] = sent(pg_factory, clock, registry, policy)
    queue = HitQueue(redis_url, prefix, lock_ms=300)
    queue.redis.rpush(queue.pending, QueuedHit(token, "opened", "o", clock.now()).dumps())
    holder = pg_factory()
    holder.execute(select(Message).where(Message.public_token == token).with_for_update())
    first = threading.Thread(target=drain, args=(pg_factory, clock, queue))
    first.start()
    try:
        time.sleep(1.0)  # the batch waits on the row lock, three lock lifetimes
        assert queue.redis.exists(queue.lock)
        assert drain(pg_factory, clock, HitQueue(redis_url, prefix, lock_ms=300)) is None
    finally:
        holder.rollback()
        holder.close()
        first.join(timeout=30)
    assert len(events(pg_factory)) == 1 and not queue.redis.exists(queue.lock)


def erase_all(factory, clock):
    with transaction(factory) as s:
        for sub_id in s.scalars(select(Message.subscriber_id).distinct()):
            erase(s, clock, Actor("ops", "admin"), sub_id)


def test_nothing_is_recorded_for_an_erased_person_nor_their_name_served(
    pg_factory, clock, registry, policy, redis_url, prefix, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    with transaction(pg_factory) as s:
        s.execute(update(Subscriber).values(first_name="Anabel"))
    client = app(pg_factory, clock, redis_url, prefix, course)
    page = client.get(links(token).read_online, headers={"User-Agent": AGENT})
    assert "Anabel" in page.text
    erase_all(pg_factory, clock)
    again = client.get(links(token).read_online, headers={"User-Agent": "Other/1.0"})
    assert again.status_code in (200, 404) and "Anabel" not in again.text
    queue = HitQueue(redis_url, prefix)
    counts = drain(pg_factory, clock, queue)
    assert counts["erased"] == 1 and events(pg_factory) == []  # the second, a repeat
    # Recorded in the request (no Redis): nothing either.
    offline = app(pg_factory, clock, None, prefix, course)
    offline.get(links(token).open, headers={"User-Agent": AGENT})
    assert events(pg_factory) == []


def test_erasure_removes_the_user_agent_kept_beside_a_machines_hit(
    pg_factory, clock, registry, policy, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    client = app(pg_factory, clock, None, "", course)
    client.head(links(token).open, headers={"User-Agent": AGENT})
    [machine] = events(pg_factory)
    assert machine.payload["agent"] == AGENT[:200]
    erase_all(pg_factory, clock)
    [machine] = events(pg_factory)
    assert "agent" not in machine.payload and machine.payload["route"] == "o"


def test_the_lookup_cache_is_bounded_by_bytes(registry):
    lookups = Lookups(max_bytes=100_000)
    campaign = registry.keys()[0] if hasattr(registry, "keys") else "tiny"
    for i in range(100):
        lookups.put(registry, ("m", str(i)), campaign, ("en", "x" * 10_000))
    size = lookups._cache.currsize
    assert 80_000 < size <= 100_000 and len(lookups._cache) < 10


def test_a_page_recording_a_hit_the_drainer_has_already_recorded_records_nothing(
    pg_factory, clock, registry, policy
):
    """Redis ran a push whose reply came too late: the page records the hit itself under
    its id, after the drainer already did. One event, and no error for the page."""
    [token] = sent(pg_factory, clock, registry, policy)
    hit = QueuedHit(token=token, kind="opened", link="o", at=clock.now(), user_agent=AGENT)
    with pg_factory.begin() as session:
        record_hits(session, clock, [hit], Rules())
    signer = Signer(SECRET.encode())
    signed = links_for("", signer, token).open.rsplit("/", 1)[1]
    with pg_factory.begin() as session:
        visit = portal.resolve(session, signer, "o", signed)
        page_hit = machine.Hit.from_request("opened", "o", "GET", {"user-agent": AGENT}, None)
        portal.engage(session, clock, visit, page_hit, Rules(), {"route": "o"}, event_id=hit.id)
    assert [e.provider_event_id for e in events(pg_factory)] == [hit.id]
