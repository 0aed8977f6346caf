"""Opens and clicks queued in Redis and recorded by a worker (web/hits.py,
workers/hit_queue.py, campaigns/tracking/queued_hits.py): on real PostgreSQL and Redis,
through the real FastAPI app, drained by real Celery workers.

An open queued reaches the events table exactly once, whether its item is delivered twice
or its drainer is killed mid-batch; with Redis down the page records it in the request; a
forged token queues nothing; reports count what the queue recorded."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.links import Signer, links_for
from campaigns.models import Event, Message
from campaigns.reporting.funnels import campaign_report
from campaigns.sequences.registry import Registry
from campaigns.states import MessageStatus
from campaigns.tracking.queued_hits import QueuedHit
from settings import load_settings
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from tests.stack import ROOT, Stack
from web.app import create_app
from workers.hit_queue import HitQueue

BASE = "https://care.example"
SECRET = "integration-test-secret-key-0123456789abcdef"
AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0"


@pytest.fixture
def prefix(redis_url):
    name = f"drip-test-hits-{uuid.uuid4().hex[:10]}:"
    yield name
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(f"{name}*"))
    if keys:
        r.delete(*keys)


STORY = "https://example.org/story"


@pytest.fixture
def course(tmp_path):
    """The fixture course, its first lesson with a link to another site (the redirect's)."""
    root = tmp_path / "course"
    shutil.copytree(FIXTURES / "definitions", root / "definitions")
    shutil.copytree(FIXTURES / "templates", root / "templates")
    hello = root / "templates" / "tiny" / "en" / "hello"
    with open(f"{hello}.html", "a") as f:
        f.write(f'<p><a href="{STORY}">A story</a></p>\n')
    with open(f"{hello}.txt", "a") as f:
        f.write(f"A story: {STORY}\n")
    return root


@pytest.fixture
def registry(course):
    return Registry(course / "definitions", course / "templates")


def app(factory, clock, redis_url: str | None, prefix: str, course) -> TestClient:
    settings = load_settings(
        environment="test",
        secret_key=SECRET,
        public_base_url=BASE,
        definitions_dir=course / "definitions",
        templates_dir=course / "templates",
        sequences_source="files",
        redis_url=redis_url,
        redis_key_prefix=prefix,
    )
    return TestClient(create_app(settings, factory=factory, clock=clock))


def sent(factory, clock, registry, policy, n: int = 1, campaign: str = "tiny") -> list[str]:
    """`n` people sent their first lesson of `campaign` an hour ago; their message tokens."""
    for i in range(n):
        add_and_enroll(factory, clock, registry, policy, campaign=campaign, email=f"p{i}@x.org")
    with transaction(factory) as s:
        ids = claim_due(s, clock, registry, policy, limit=n + 10).email
        s.execute(
            update(Message)
            .where(Message.id.in_(ids))
            .values(status=MessageStatus.SENT, sent_at=clock.now() - timedelta(hours=1))
        )
        return list(s.scalars(select(Message.public_token).where(Message.id.in_(ids))))


def links(token: str):
    return links_for("", Signer(SECRET.encode()), token)


def events(factory, **where) -> list[Event]:
    with factory() as s:
        q = select(Event)
        for k, v in where.items():
            q = q.where(getattr(Event, k) == v)
        return list(s.scalars(q.order_by(Event.id)))


def drain(factory, clock, redis_url, prefix):
    from campaigns.tracking.machine import Rules

    return HitQueue(redis_url, prefix).drain(factory, clock, Rules(), budget=10)


def test_an_open_delivered_twice_or_left_by_a_killed_drainer_is_one_event(
    pg_factory, clock, registry, policy, redis_url, prefix, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    client = app(pg_factory, clock, redis_url, prefix, course)
    got = client.get(links(token).open, headers={"User-Agent": AGENT})
    assert got.status_code == 200 and got.headers["content-type"] == "image/gif"
    queue = HitQueue(redis_url, prefix)
    assert queue.depth()["pending"] == 1 and events(pg_factory) == []  # answered first
    scraped = TestClient(client.app, client=("127.0.0.1", 40000)).get("/metrics").text
    assert 'drip_hit_queue_depth{list="pending"} 1' in scraped

    # Delivered twice: the same item twice in the queue.
    [raw] = queue.redis.lrange(queue.pending, 0, -1)
    queue.redis.rpush(queue.pending, raw)
    counts = drain(pg_factory, clock, redis_url, prefix)
    assert counts["recorded"] == 1 and counts["duplicate"] == 1
    # A drainer killed after its commit, before it removed the item: it is found again.
    queue.redis.rpush(queue.processing, raw)
    counts = drain(pg_factory, clock, redis_url, prefix)
    assert counts["duplicate"] == 1 and counts["recorded"] == 0
    assert queue.depth() == {"pending": 0, "processing": 0, "failed": 0}

    [event] = events(pg_factory)
    assert (event.type, event.provider, event.automated) == ("opened", "tracking", False)
    assert event.occurred_at == clock.now()  # when the request came, not when drained
    assert event.payload == {"route": "o"}


def test_a_machine_open_is_judged_from_what_the_queue_carried(
    pg_factory, clock, registry, policy, redis_url, prefix, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    client = app(pg_factory, clock, redis_url, prefix, course)
    client.get(links(token).open, headers={"User-Agent": "Mozilla/5.0"})  # Apple's proxy
    client.head(links(token).open, headers={"User-Agent": AGENT})
    drain(pg_factory, clock, redis_url, prefix)
    reasons = sorted(e.automated_reason for e in events(pg_factory))
    assert reasons == ["apple_privacy_proxy", "head_request"]


def test_a_click_redirects_at_once_and_is_recorded_by_the_drainer(
    pg_factory, clock, registry, policy, redis_url, prefix, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    client = app(pg_factory, clock, redis_url, prefix, course)
    html = client.get(links(token).read_online, headers={"User-Agent": AGENT})
    assert html.status_code == 200
    link_id = html.text.split("/l/")[1].split('"')[0].split("/")[1]
    for _ in range(2):  # the second from the per-process cache, and a repeat: not queued
        got = client.get(
            f"{links(token).redirect}/{link_id}",
            headers={"User-Agent": AGENT},
            follow_redirects=False,
        )
        assert got.status_code == 302
        assert got.headers["location"] == "https://example.org/story"
    assert events(pg_factory) == []
    assert drain(pg_factory, clock, redis_url, prefix)["recorded"] == 2
    routes = sorted(e.payload["route"] for e in events(pg_factory, type="clicked"))
    assert routes == ["l", "m"]
    # A link id the message does not hold: the invalid-link page, nothing queued.
    got = client.get(f"{links(token).redirect}/AAAAAAAAAA", follow_redirects=False)
    assert got.status_code == 404
    assert HitQueue(redis_url, prefix).depth()["pending"] == 0


@pytest.mark.parametrize("page", ["open", "redirect", "read_online"])
def test_a_forged_token_queues_nothing(
    pg_factory, clock, registry, policy, redis_url, prefix, page, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    client = app(pg_factory, clock, redis_url, prefix, course)
    forged = links_for("", Signer(b"not-our-secret-key-0123456789abcdef"), token)
    url = getattr(forged, page) + ("/AAAAAAAAAA" if page == "redirect" else "")
    got = client.get(url, headers={"User-Agent": AGENT}, follow_redirects=False)
    # The pixel never shows an error page; the others are the invalid-link page.
    assert got.status_code == (200 if page == "open" else 404)
    assert HitQueue(redis_url, prefix).depth()["pending"] == 0
    assert events(pg_factory) == []


def test_with_redis_down_every_page_records_in_the_request(
    pg_factory, clock, registry, policy, course
):
    [token] = sent(pg_factory, clock, registry, policy)
    # Nothing listens on port 1: every push fails at once.
    client = app(pg_factory, clock, "redis://127.0.0.1:1/0", "down:", course)
    assert client.get(links(token).open, headers={"User-Agent": AGENT}).status_code == 200
    page = client.get(links(token).read_online, headers={"User-Agent": AGENT})
    assert page.status_code == 200
    link_id = page.text.split("/l/")[1].split('"')[0].split("/")[1]
    got = client.get(f"{links(token).redirect}/{link_id}", follow_redirects=False)
    assert got.status_code == 302
    kinds = sorted((e.type, e.payload["route"]) for e in events(pg_factory))
    assert kinds == [("clicked", "l"), ("clicked", "m"), ("opened", "o")]
    # Each under the id it was offered to the queue with: a late push is the same hit.
    assert all(e.provider_event_id.startswith("hit:") for e in events(pg_factory))


def test_reports_count_the_opens_and_clicks_once_drained(
    pg_factory, clock, registry, policy, redis_url, prefix, course
):
    tokens = sent(pg_factory, clock, registry, policy, n=3)
    client = app(pg_factory, clock, redis_url, prefix, course)
    for token in tokens:
        client.get(links(token).open, headers={"User-Agent": AGENT})
    client.get(links(tokens[0]).read_online, headers={"User-Agent": AGENT})
    with pg_factory() as s:
        before = campaign_report(s, registry, "tiny").steps[0]
    assert (before.opens, before.clicks) == (0, 0)
    drain(pg_factory, clock, redis_url, prefix)
    with pg_factory() as s:
        after = campaign_report(s, registry, "tiny").steps[0]
    assert (after.opens, after.clicks) == (3, 1)


@pytest.fixture
def stack(tmp_path, clean_pg_url, redis_url):
    s = Stack(tmp_path, clean_pg_url, redis_url)
    yield s
    s.stop_all()


def test_a_worker_killed_mid_drain_loses_no_hit_and_records_none_twice(
    stack, pg_factory, clock, registry, policy, course
):
    """Real Celery workers with beat drain the queue; the first is SIGKILLed while the
    events are still coming in, the second finishes (after the first's lock runs out)."""
    tokens = sent(pg_factory, clock, registry, policy, n=40)
    total = 1500
    queue = HitQueue(stack.redis_url, stack.redis_prefix)
    # Straight into the list: through the pages, repeats of one open would be one.
    at = clock.now()
    queue.redis.rpush(
        queue.pending,
        *(QueuedHit(tokens[i % len(tokens)], "opened", "o", at).dumps() for i in range(total)),
    )
    assert queue.depth()["pending"] == total

    def recorded() -> int:
        with pg_factory() as s:
            return s.scalar(select(func.count()).select_from(Event))

    first = stack.start_worker("w1", HIT_DRAIN_SECONDS="0.2")
    deadline = time.monotonic() + 90
    while recorded() == 0:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.01)
    stack.kill(first)
    partly = recorded()
    assert partly < total, "the drain finished before the kill: make the queue longer"
    stack.start_worker("w2", HIT_DRAIN_SECONDS="0.2")
    deadline = time.monotonic() + 120
    while sum(queue.depth().values()) or recorded() < total:
        assert time.monotonic() < deadline, (recorded(), queue.depth(), stack.logs())
        time.sleep(0.2)
    with pg_factory() as s:
        ids = s.scalars(select(Event.provider_event_id)).all()
    assert len(ids) == len(set(ids)) == total


def test_drip_web_workers_starts_that_many_serving_processes(tmp_path, clean_pg_url, redis_url):
    """`drip web --workers 2` on the database-sourced sequences (both processes seed and
    refresh them) and Redis: two app processes under uvicorn's supervisor, both serving."""
    stack = Stack(tmp_path, clean_pg_url, redis_url)
    port = _free_port()
    env = stack.env(SEQUENCES_SOURCE="database", PUBLISH_REQUIRES_REVIEW="false")
    with open(tmp_path / "web.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "web", "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while len(_children(proc.pid)) < 2 or not _answers(port):
            assert proc.poll() is None, (tmp_path / "web.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()
            time.sleep(0.3)
        workers = _children(proc.pid)
        assert len(workers) == 2
        for _ in range(40):  # every request answered, whichever process took it
            assert _answers(port)
        # Both seeded at once: one published, the other found it done; neither failed.
        log_text = (tmp_path / "web.log").read_text()
        assert "Traceback" not in log_text, log_text
        assert _children(proc.pid) == workers  # none died and was replaced
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """uvicorn's worker processes (spawned by multiprocessing; not its resource tracker)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    workers = []
    for child in found:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    workers.append(child)
        except OSError:  # it exited while we looked
            continue
    return sorted(workers)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False
