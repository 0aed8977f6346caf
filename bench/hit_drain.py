"""Draining queued opens and clicks: the cost per hit of recording them one by one, as
the drainer did (portal.engage and a flush per hit, a batch per transaction), beside a
batch at a time (campaigns.tracking.queued_hits.record_hits), in one run.

    .venv/bin/python bench/hit_drain.py [--hits 20000] [--messages 5000]
                                        [--batches 200,1000] [--profile]

One database is loaded in bulk (`INSERT .. SELECT` over generate_series): `--messages`
people enrolled in the shipped course, each sent one lesson an hour ago with its
delivery report, one in ten waiting for that lesson to be opened, one in a hundred erased.
Each run gets a copy of it (`CREATE DATABASE .. TEMPLATE`). `--hits` QueuedHits are drawn
once (seeded): opens and clicks from browsers, Apple's privacy proxy, Gmail's image
proxy, scanners, HEAD requests and prefetches, some seconds after sending, clicks on
several links of a message within a second or two, the same hit twice, unknown tokens.
Each run pushes them onto a Redis list under a prefix of its own and times the real
drainer (workers.hit_queue.HitQueue.drain) until the list is empty: the one-by-one path
at the drainer's old batch of 200, then the batch path at each of `--batches`. Printed:
hits/s, this process's CPU per hit (time.process_time: the drainer's Python side,
Redis client included) and the PostgreSQL backends' (/proc schedstat; 0 when the server
is not on this machine), their sum and the ratio to the one-by-one path. The bench fails
if a run's events (kind, verdict, reason, payload, times) or enrollments differ from the
one-by-one run's. `--profile` adds a cProfile of each run (top 20 by own time).
PostgreSQL from BENCH_POSTGRES_URL or TEST_POSTGRES_URL (an admin URL), Redis from
BENCH_REDIS_URL or TEST_REDIS_URL; every database and key it made is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg
import redis
from sqlalchemy import event, select

from campaigns.clock import FixedClock
from campaigns.db import make_engine, make_session_factory
from campaigns.migrate import upgrade
from campaigns.models import Enrollment, Event, Message, Subscriber
from campaigns.states import EventType
from campaigns.tracking import portal
from campaigns.tracking.machine import Rules
from campaigns.tracking.queued_hits import Outcome, QueuedHit
from workers import hit_queue
from workers.hit_queue import HitQueue

CAMPAIGN = "hip_and_back"
SENT = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
NOW = SENT + timedelta(hours=2)  # when the drainer runs
BROWSERS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.6045.163 Mobile Safari/537.36",
]
SCANNERS = ["Barracuda Sentinel (EE)", "python-requests/2.31.0", "curl/8.4.0"]


def sa_url(admin_url: str, name: str) -> str:
    return "postgresql+psycopg://" + f"{admin_url.rsplit('/', 1)[0]}/{name}".split("://", 1)[1]


def load(url: str, messages: int) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        args = {"n": messages, "sent": SENT, "campaign": CAMPAIGN, "later": NOW + timedelta(days=2)}
        conn.execute(
            """
            INSERT INTO subscribers (id, email, first_name, status, public_token,
                                     created_at, updated_at, erased_at)
            SELECT i, 'p' || i || '@example.com', 'P' || i, 'active',
                   'bench' || lpad(i::text, 38, '0'), %(sent)s, %(sent)s,
                   CASE WHEN i %% 100 = 7 THEN %(sent)s END
            FROM generate_series(1, %(n)s) AS i
            """,
            args,
        )
        conn.execute(
            """
            INSERT INTO enrollments (id, subscriber_id, campaign_key, campaign_version,
                                     cursor_base_at, steps_done, status, source, created_at,
                                     updated_at, next_step_key, next_due_at, waiting_for)
            SELECT i, i, %(campaign)s, 1, %(sent)s, 9, 'active', 'bench', %(sent)s,
                   %(sent)s, 'diagnosis_by_text', %(later)s,
                   CASE WHEN i %% 10 = 3 THEN 'opened:diagnosis>diagnosis_by_text' END
            FROM generate_series(1, %(n)s) AS i
            """,
            args,
        )
        conn.execute(
            """
            INSERT INTO messages (id, enrollment_id, subscriber_id, campaign_key,
                                  campaign_version, step_key, channel, public_token, status,
                                  attempts, due_at, provider, provider_message_id, sent_at,
                                  created_at, updated_at)
            SELECT i, i, i, %(campaign)s, 1, 'diagnosis', 'email',
                   'h' || lpad(i::text, 21, '0'), 'delivered', 1, %(sent)s, 'sendgrid',
                   'bench-' || i, %(sent)s, %(sent)s, %(sent)s
            FROM generate_series(1, %(n)s) AS i
            """,
            args,
        )
        conn.execute(
            """
            INSERT INTO events (message_id, subscriber_id, type, provider, provider_event_id,
                                occurred_at, received_at, payload)
            SELECT i, i, 'delivered', 'sendgrid', 'd-' || i,
                   %(sent)s + (i %% 20) * interval '1 second',
                   %(sent)s + (i %% 20) * interval '1 second', '{}'::json
            FROM generate_series(1, %(n)s) AS i
            """,
            args,
        )
        for table in ("subscribers", "enrollments", "messages", "events"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        conn.execute("VACUUM ANALYZE")


def draw_hits(n: int, messages: int, seed: int = 7) -> list[QueuedHit]:
    """A storm after a send: most hits within minutes of it, machines among them, some
    people clicking two links at once, some items delivered twice."""
    rnd = random.Random(seed)
    hits: list[QueuedHit] = []
    while len(hits) < n:
        if hits and rnd.random() < 0.01:
            hits.append(rnd.choice(hits[-500:]))  # delivered twice
            continue
        i = rnd.randint(1, messages)
        token = "h" + str(i).rjust(21, "0") if rnd.random() > 0.005 else "nobody" + str(i)
        at = SENT + timedelta(seconds=rnd.expovariate(1 / 900))
        agent, method, purpose = rnd.choice(BROWSERS), "GET", ""
        roll = rnd.random()
        if roll < 0.15:
            agent = "Mozilla/5.0"  # Apple's proxy
        elif roll < 0.25:
            agent = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (GoogleImageProxy)"
        elif roll < 0.33:
            agent = rnd.choice(SCANNERS)
        elif roll < 0.36:
            method = "HEAD"
        elif roll < 0.38:
            purpose = "prefetch"
        if rnd.random() < 0.55:
            hits.append(hit(token, "o", at, agent, method, purpose))
            continue
        link = rnd.choice(["m", "l:1", "l:2", "l:3"])
        hits.append(hit(token, link, at, agent, method, purpose))
        if rnd.random() < 0.2:  # another link within a second or two
            other = rnd.choice(["m", "l:1", "l:2", "l:3"])
            later = at + timedelta(milliseconds=rnd.randint(100, 3000))
            hits.append(hit(token, other, later, agent, method, purpose))
    # Queued as they come: in the order of their requests.
    return sorted(hits[:n], key=lambda h: h.at)


def hit(token, link, at, agent, method, purpose) -> QueuedHit:
    route = link.split(":")[0]
    detail = {"route": route}
    if route == "l":
        detail |= {"link": link[2:], "url": f"https://example.org/story/{link[2:]}"}
    kind = EventType.OPENED if link == "o" else EventType.CLICKED
    return QueuedHit(token, kind, link, at, method, agent, purpose, "198.51.100.20", detail=detail)


def one_by_one(session, clock, hits: list[QueuedHit], rules: Rules) -> list[Outcome]:
    """The drainer's recording before batches: its messages locked in one statement,
    the ids seen before read in another, then portal.engage (judge, event, wake, flush)
    per hit."""
    tokens = sorted({h.token for h in hits})
    found = session.execute(
        select(Message, Subscriber)
        .join(Subscriber, Subscriber.id == Message.subscriber_id)
        .where(Message.public_token.in_(tokens))
        .order_by(Message.id)
        .with_for_update(of=Message)
    ).all()
    visits = {m.public_token: portal.Visit(m, sub) for m, sub in found}
    seen = set(
        session.scalars(
            select(Event.provider_event_id).where(
                Event.provider == "tracking", Event.provider_event_id.in_([h.id for h in hits])
            )
        )
    )
    outcomes = []
    for h in sorted(hits, key=lambda h: h.at):
        visit = visits.get(h.token)
        if visit is None:
            outcomes.append(Outcome.UNKNOWN_MESSAGE)
        elif visit.subscriber.erased_at is not None:
            outcomes.append(Outcome.ERASED)
        elif h.id in seen:
            outcomes.append(Outcome.DUPLICATE)
        else:
            seen.add(h.id)
            portal.engage(
                session, clock, visit, h.machine_hit(), rules, dict(h.detail),
                at=h.at, event_id=h.id, locked=True,
            )  # fmt: skip
            outcomes.append(Outcome.RECORDED)
    return outcomes


class Backends:
    """CPU seconds of an engine's PostgreSQL backends (/proc schedstat, nanoseconds)."""

    def __init__(self, engine):
        self.pids: set[int] = set()
        event.listen(engine, "connect", self._remember)

    def _remember(self, dbapi_conn, _record) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.pids.add(cur.fetchone()[0])

    def cpu(self) -> float:
        total = 0
        for pid in self.pids:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        return total / 1e9


def run(url: str, redis_url: str, hits: list[QueuedHit], batch: int, old: bool, profile: bool):
    engine = make_engine(url)
    backends = Backends(engine)
    factory = make_session_factory(engine)
    with factory() as s:  # connect (and count the backend) before timing
        s.execute(select(1))
    prefix = f"drip-bench-drain-{uuid.uuid4().hex[:8]}:"
    queue = HitQueue(redis_url, prefix)
    pipe = queue.redis.pipeline(transaction=False)
    for h in hits:
        pipe.rpush(queue.pending, h.dumps())
    pipe.execute()
    recorder = hit_queue.record_hits
    if old:
        hit_queue.record_hits = one_by_one
    profiler = cProfile.Profile() if profile else None
    try:
        server0, cpu0, wall0 = backends.cpu(), time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        counts = queue.drain(factory, FixedClock(NOW), Rules(), budget=3600, batch=batch)
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        server = backends.cpu() - server0
    finally:
        hit_queue.record_hits = recorder
        keys = list(queue.redis.scan_iter(f"{prefix}*"))
        if keys:
            queue.redis.delete(*keys)
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
        print(out.getvalue())
    with factory() as s:
        events = s.execute(
            select(
                Event.provider_event_id, Event.type, Event.automated, Event.automated_reason,
                Event.payload, Event.occurred_at, Event.received_at,
            )
            .where(Event.provider == "tracking")
            .order_by(Event.provider_event_id)
        ).all()  # fmt: skip
        cursors = s.execute(
            select(Enrollment.id, Enrollment.next_due_at).order_by(Enrollment.id)
        ).all()
    engine.dispose()
    return counts, wall, cpu, server, [tuple(e) for e in events], [tuple(c) for c in cursors]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hits", type=int, default=20000)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batches", default=f"{hit_queue.BATCH},1000")
    parser.add_argument("--profile", action="store_true")
    a = parser.parse_args()
    admin_url = os.environ.get(
        "BENCH_POSTGRES_URL",
        os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    redis_url = os.environ.get(
        "BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    redis.Redis.from_url(redis_url).ping()
    hits = draw_hits(a.hits, a.messages)
    failed = False
    with databases(admin_url) as make:
        template = make("base")
        upgrade(template)
        load(template, a.messages)
        print(f"{a.hits:,} queued hits over {a.messages:,} messages", flush=True)
        plans = [("one by one", hit_queue.BATCH, True)]
        plans += [("batch", int(b), False) for b in a.batches.split(",")]
        first = None
        print(
            f"{'path':>10} {'batch':>6} {'hits/s':>8} {'Python':>10} {'PostgreSQL':>11} "
            f"{'sum':>10}  ratio  outcomes"
        )
        for i, (label, batch, old) in enumerate(plans):
            url = make(f"run{i}", template="base")
            counts, wall, cpu, server, events, cursors = run(
                url, redis_url, hits, batch, old, a.profile
            )
            per = (cpu + server) / len(hits)
            if first is None:
                first = (per, events, cursors)
            same = (events, cursors) == first[1:]
            failed |= not same
            shown = {k: v for k, v in counts.items() if v}
            print(
                f"{label:>10} {batch:>6} {len(hits) / wall:>8,.0f} "
                f"{cpu / len(hits) * 1000:>7.3f} ms {server / len(hits) * 1000:>8.3f} ms "
                f"{per * 1000:>7.3f} ms {first[0] / per:>5.2f}x  {shown}"
                + ("" if same else "  EVENTS DIFFER from the one-by-one run"),
                flush=True,
            )
        print("(CPU per hit; ratio: the one-by-one path's sum over this one's)")
    return 1 if failed else 0


@contextlib.contextmanager
def databases(admin_url: str):
    """`make(name, template=None)` creates a database of this run and gives its URL;
    every one made is dropped at the end."""
    prefix = f"drip_hit_drain_{os.getpid()}_{uuid.uuid4().hex[:6]}_"
    admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    made: list[str] = []

    def make(name: str, template: str | None = None) -> str:
        copy = f' TEMPLATE "{prefix}{template}"' if template else ""
        admin.execute(f'CREATE DATABASE "{prefix}{name}"{copy}')
        made.append(prefix + name)
        return sa_url(admin_url, prefix + name)

    try:
        yield make
    finally:
        for name in reversed(made):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    sys.exit(main())
