"""Retention prune at scale: events deleted per second, the longest batch (how long one
transaction holds its row locks), and the campaign report's figures and read time before
and after, for three batch sizes side by side.

    .venv/bin/python bench/retention.py [--people 20000] [--events-per-message 5]
                                        [--batches 1000,5000,20000]

One database is loaded in bulk (`INSERT .. SELECT` over generate_series): people, one
enrollment each in the shipped course, three delivered messages each (some with a
provider error and a lease left behind), and per message a delivery receipt plus opens
and clicks (a tenth by machines) spread over the last 400 days. Each batch size then gets
a copy of it (`CREATE DATABASE .. TEMPLATE`), where the real
campaigns.reporting.retention.prune runs with EVENT_RETENTION_DAYS=180 and
MESSAGE_DETAIL_RETENTION_DAYS=90. The bench fails if a report's figures differ after the
prune. PostgreSQL from BENCH_POSTGRES_URL or TEST_POSTGRES_URL (an admin URL); every
database it made is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg

from campaigns.clock import FixedClock
from campaigns.db import make_engine, make_session_factory
from campaigns.migrate import upgrade
from campaigns.reporting import retention
from campaigns.reporting.funnels import campaign_report
from campaigns.sequences.registry import Registry

CAMPAIGN = "hip_and_back"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def sa_url(admin_url: str, name: str) -> str:
    return "postgresql+psycopg://" + f"{admin_url.rsplit('/', 1)[0]}/{name}".split("://", 1)[1]


def load(url: str, people: int, per_message: int, steps: list[str]) -> int:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        args = {"n": people, "now": NOW, "campaign": CAMPAIGN, "steps": steps}
        conn.execute(
            """
            INSERT INTO subscribers (id, email, first_name, status, public_token,
                                     created_at, updated_at)
            SELECT i, 'p' || i || '@example.com', 'P' || i, 'active',
                   'bench' || lpad(i::text, 38, '0'), %(now)s, %(now)s
            FROM generate_series(1, %(n)s) AS i
            """,
            args,
        )
        conn.execute(
            """
            INSERT INTO enrollments (id, subscriber_id, campaign_key, campaign_version,
                                     cursor_base_at, steps_done, status, source, created_at,
                                     updated_at)
            SELECT i, i, %(campaign)s, 1, %(now)s, 3, 'completed', 'bench',
                   %(now)s - (i %% 400) * interval '1 day', %(now)s
            FROM generate_series(1, %(n)s) AS i
            """,
            args,
        )
        conn.execute(
            """
            INSERT INTO messages (enrollment_id, subscriber_id, campaign_key, campaign_version,
                                  step_key, channel, public_token, status, attempts, due_at,
                                  provider, provider_message_id, last_error, lease_token,
                                  sent_at, created_at, updated_at)
            SELECT e.id, e.id, %(campaign)s, 1, (%(steps)s::text[])[1 + s], 'email',
                   'm' || lpad(e.id::text, 8, '0') || lpad(s::text, 2, '0'),
                   CASE WHEN e.id %% 17 = 0 THEN 'failed' ELSE 'delivered' END, 1,
                   e.created_at + s * interval '2 days', 'sendgrid', 'bench-' || e.id || '-' || s,
                   CASE WHEN e.id %% 17 = 0 THEN '550 5.1.1 mailbox unavailable' END,
                   'lease-' || e.id, e.created_at + s * interval '2 days',
                   e.created_at + s * interval '2 days', e.created_at + s * interval '2 days'
            FROM enrollments e CROSS JOIN generate_series(0, 2) AS s
            """,
            args,
        )
        # Per message: a receipt, then opens and clicks over the following days.
        conn.execute(
            """
            INSERT INTO events (message_id, subscriber_id, type, provider, provider_event_id,
                                occurred_at, received_at, payload, automated,
                                automated_reason)
            SELECT m.id, m.subscriber_id,
                   CASE WHEN k = 0 THEN 'delivered' WHEN k %% 3 = 0 THEN 'clicked'
                        ELSE 'opened' END,
                   'sendgrid', 'ev-' || m.id || '-' || k,
                   m.sent_at + (k * 7 + m.id %% 5) * interval '1 hour',
                   m.sent_at + (k * 7 + m.id %% 5) * interval '1 hour',
                   CASE WHEN k %% 3 = 0 THEN jsonb_build_object(
                        'route', 'l', 'link', 'link' || (m.id %% 4),
                        'url', 'https://care.example/l/' || (m.id %% 4))::json
                        ELSE '{"event": "open"}'::json END,
                   (m.id + k) %% 10 = 0,
                   CASE WHEN (m.id + k) %% 10 = 0 THEN 'scanner_burst' END
            FROM messages m CROSS JOIN generate_series(0, %(k)s - 1) AS k
            WHERE m.sent_at + (k * 7 + m.id %% 5) * interval '1 hour' < %(now)s
            """,
            {**args, "k": per_message},
        )
        for table in ("subscribers", "enrollments", "messages", "events"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        conn.execute("VACUUM ANALYZE")
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def report(factory, registry) -> tuple[dict, float]:
    t0 = time.perf_counter()
    with factory() as s:
        r = campaign_report(s, registry, CAMPAIGN)
    return asdict(r), time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=20000)
    parser.add_argument("--events-per-message", type=int, default=5)
    parser.add_argument("--batches", default="1000,5000,20000")
    a = parser.parse_args()
    admin_url = os.environ.get(
        "BENCH_POSTGRES_URL",
        os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    registry = Registry(ROOT / "campaigns" / "definitions", ROOT / "templates")
    steps = [s.key for s in registry.get(CAMPAIGN).steps][:3]
    run = f"drip_retention_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    made: list[str] = []
    failed = False
    try:
        admin.execute(f'CREATE DATABASE "{run}"')
        made.append(run)
        upgrade(sa_url(admin_url, run))
        t0 = time.perf_counter()
        events = load(sa_url(admin_url, run), a.people, a.events_per_message, steps)
        print(
            f"loaded {events:,} events of {a.people * 3:,} messages in "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        clock = FixedClock(NOW)
        policy = retention.Policy(event_days=180, message_days=90)
        print(
            f"{'batch':>7} {'deleted':>9} {'rolled':>9} {'rollups':>8} {'msgs':>7} "
            f"{'seconds':>8} {'events/s':>9} {'longest batch':>14} "
            f"{'report before':>14} {'after':>8} same"
        )
        rates = {}
        for size in (int(b) for b in a.batches.split(",")):
            name = f"{run}_b{size}"
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{run}"')
            made.append(name)
            engine = make_engine(sa_url(admin_url, name))
            factory = make_session_factory(engine)
            before, read_before = report(factory, registry)
            longest = 0.0
            last = time.perf_counter()

            def lap(_session, _batch) -> None:
                nonlocal longest, last
                now = time.perf_counter()
                longest, last = max(longest, now - last), now

            with factory() as s:
                last = time.perf_counter()
                out = retention.prune(
                    s,
                    clock,
                    retention.Policy(policy.event_days, policy.message_days, size),
                    on_batch=lap,
                )
            after, read_after = report(factory, registry)
            with psycopg.connect(sa_url(admin_url, name).replace("+psycopg", "")) as conn:
                kept_rows, kept_events = conn.execute(
                    "SELECT count(*), coalesce(sum(events), 0) FROM event_rollups"
                ).fetchone()
            same = before == after
            failed |= not same or kept_events != out.events_rolled
            rate = out.events_deleted / out.seconds if out.seconds else 0.0
            rates[size] = rate
            print(
                f"{size:>7,} {out.events_deleted:>9,} {out.events_rolled:>9,} "
                f"{kept_rows:>8,} {out.messages_cleared:>7,} {out.seconds:>8.1f} "
                f"{rate:>9,.0f} {longest * 1000:>11.0f} ms {read_before * 1000:>11.0f} ms "
                f"{read_after * 1000:>5.0f} ms {'yes' if same else 'NO'}",
                flush=True,
            )
            engine.dispose()
        base = min(rates)
        for size, rate in rates.items():
            print(f"events/s at batch {size:,} vs {base:,}: {rate / rates[base]:.2f}x")
    finally:
        admin.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in reversed(made):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if failed:
        print("FAILED: a report read differently after the prune")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
