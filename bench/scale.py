"""Tick cost at scale: one tick that claims 1,000 due people, among 10,000 and among
1,000,000 enrolled, side by side in one run.

    .venv/bin/python bench/scale.py [--sizes 10000,1000000] [--ticks 9] [--due 1000]
                                    [--plans] [--profile]

Each size gets a PostgreSQL database of its own, created here and dropped at the end
(never the `test` database the tests truncate), migrated, and loaded in bulk by INSERT ..
SELECT over generate_series: people (one in ten on texts only, half with a phone), their
consent, one enrollment each in the shipped course `hip_and_back` (70% active and waiting
for a step up to 30 days ahead, 20% completed, 10% paused by ops) and the outbox rows of
the steps the active and paused ones have had (0 to 3 each); then a CHECKPOINT, so the
ticks do not run beside the one the load's WAL started. Then, alternating between the
sizes so machine noise falls on both alike, each round makes `--due` people due and times
the real `scheduler.tick` (reconcile, release of waiting retries, claims in batches of
CLAIM_BATCH_SIZE) with a dispatch that drops the work. At a million the clock moves on to
the moment the next `--due` waiting people fall due: rows nobody has touched since the
load, scattered over the tables, as on a real day. Ten thousand enrolled hold too few
waiting people for that, so there their cursors are moved to a minute ago by an untimed
UPDATE (at that size every page is in memory anyway). The medians, the 1M/10k ratio, and
per tick the CPU time of this process (the Python side) and of the PostgreSQL backends,
and the bytes those read and wrote through system calls (pages from the OS cache, dirty
pages and WAL out), are printed.

Last, one more tick per size runs with every SQL statement captured, and each statement
is EXPLAINed with its own parameters: the bench prints the scans of each plan (all of
them with --plans) and fails if, at the largest size, any reaches enrollments or messages
by a Seq Scan (at 10,000 the planner may rightly read a small table whole).

Goal (issue 10): the 1M tick at most 60 ms median, and within 1.3x the 10k tick.
PostgreSQL comes from BENCH_POSTGRES_URL or TEST_POSTGRES_URL (an admin URL that may
create databases).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import os
import pstats
import random
import re
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg
from sqlalchemy import event

from campaigns.clock import FixedClock
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.delivery import scheduler
from campaigns.migrate import upgrade
from campaigns.sequences.registry import Registry
from campaigns.sequences.revisions import ensure_revision
from campaigns.sequences.timing import Policy
from settings import load_settings

CAMPAIGN = "hip_and_back"
# A Tuesday, 14:00 UTC: inside the course's window in the Americas and Europe.
START = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
ZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London"]
HOT_TABLES = ("enrollments", "messages")


class Size:
    """One loaded database and the enrollments it can still make due."""

    def __init__(self, admin: psycopg.Connection, admin_url: str, run: str, people: int):
        self.people = people
        self.name = f"{run}_{people}"
        admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = (
            "postgresql+psycopg://"
            + f"{admin_url.rsplit('/', 1)[0]}/{self.name}".split("://", 1)[1]
        )
        upgrade(self.url)
        self.engine = make_engine(self.url)
        self.factory = make_session_factory(self.engine)
        self.backends: set[int] = set()  # server processes of this engine's connections
        event.listen(self.engine, "connect", self._remember_backend)
        self.clock = FixedClock(START)
        # How a round makes `--due` people due. "fresh": the clock moves on to the moment
        # the next `--due` waiting people fall due (`slots`), so the tick meets rows nobody
        # has touched since the load, scattered, as in a real day. "moved": their cursor is
        # set to a minute ago (an UPDATE, untimed), for a size too small to hold enough
        # fresh people; every page of it is in memory anyway.
        self.fresh = False
        self.slots: list[datetime] = []
        self.ready: list[int] = []
        self.next_due = 0  # where the next round's due people start in `ready`
        self.ticks: list[float] = []
        self.cpu: list[float] = []  # this process's CPU time per tick: the Python side
        self.server: list[float] = []  # the PostgreSQL backends' CPU time per tick
        self.io: list[tuple[int, int]] = []  # the backends' bytes read and written per tick
        self.held: list[int] = []  # cursors read and held back per tick (order per person)
        self.claimed: list[int] = []  # cursors claimed per tick (due, and due at once since)

    def _remember_backend(self, dbapi_conn, _record) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.backends.add(cur.fetchone()[0])

    def server_cpu(self) -> float:
        """Seconds on a CPU so far, summed over this engine's backends (/proc schedstat:
        nanoseconds, unlike the 10 ms ticks of /proc/<pid>/stat). Needs the server on this
        machine; 0 when it is not."""
        total = 0
        for pid in self.backends:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        return total / 1e9

    def server_io(self) -> tuple[int, int]:
        """Bytes the backends have read and written through system calls so far (/proc io:
        rchar, wchar): pages fetched from the OS cache and dirty pages and WAL written out
        (plus the little the client socket carries)."""
        read = written = 0
        for pid in self.backends:
            with contextlib.suppress(OSError, ValueError):
                fields = dict(
                    line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines()
                )
                read += int(fields["rchar"])
                written += int(fields["wchar"])
        return read, written

    def close(self) -> None:
        self.engine.dispose()


def load(size: Size, registry: Registry, rounds: int, due: int) -> float:
    """Fill the database in bulk; returns the seconds it took."""
    t0 = time.perf_counter()
    campaign = registry.get(CAMPAIGN)
    steps = [s.key for s in campaign.steps]
    with transaction(size.factory) as session:
        rev = ensure_revision(session, size.clock, campaign)
    n, now = size.people, size.clock.now()
    with psycopg.connect(size.url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO subscribers (id, email, phone, first_name, locale, timezone, status,
                                     public_token, created_at, updated_at)
            SELECT i,
                   CASE WHEN i %% 10 <> 0 THEN 'p' || i || '@example.com' END,
                   CASE WHEN i %% 2 = 0 THEN '+1202' || lpad(i::text, 7, '0') END,
                   'P' || i, 'en', (%(zones)s::text[])[1 + i %% 4], 'active',
                   'bench' || lpad(i::text, 38, '0'), %(now)s, %(now)s
            FROM generate_series(1, %(n)s) AS i
            """,
            {"n": n, "now": now - timedelta(days=40), "zones": ZONES},
        )
        conn.execute(
            """
            INSERT INTO consent_records (subscriber_id, channel, action, source, created_at)
            SELECT id, 'email', 'granted', 'bench', created_at FROM subscribers
             WHERE email IS NOT NULL
            UNION ALL
            SELECT id, 'sms', 'granted', 'bench', created_at FROM subscribers
             WHERE phone IS NOT NULL
            """
        )
        # Active people wait on step k (0..3) having had the k steps before it; the
        # completed have finished; the paused were stopped by ops mid-course.
        conn.execute(
            """
            INSERT INTO enrollments (id, subscriber_id, campaign_key, campaign_version,
                                     campaign_revision, cursor_base_at, next_step_key,
                                     next_due_at, steps_done, status, exit_reason, source,
                                     created_at, updated_at)
            SELECT i, i, %(campaign)s, 1, %(rev)s, %(now)s - interval '1 day',
                   CASE WHEN i %% 10 IN (7, 8) THEN NULL ELSE (%(steps)s::text[])[1 + i %% 4] END,
                   CASE WHEN i %% 10 < 7
                        THEN %(now)s + interval '1 hour'
                             + (i::bigint * 7919 %% 2592000) * interval '1 second'
                        WHEN i %% 10 = 9 THEN %(now)s - interval '2 days' END,
                   CASE WHEN i %% 10 IN (7, 8) THEN %(nsteps)s ELSE i %% 4 END,
                   CASE WHEN i %% 10 < 7 THEN 'active' WHEN i %% 10 = 9 THEN 'paused'
                        ELSE 'completed' END,
                   CASE WHEN i %% 10 = 9 THEN 'paused by ops' END,
                   'bench', %(now)s - interval '40 days', %(now)s - interval '1 day'
            FROM generate_series(1, %(n)s) AS i
            """,
            {
                "n": n,
                "now": now,
                "campaign": CAMPAIGN,
                "rev": rev,
                "steps": steps,
                "nsteps": len(steps),
            },
        )
        conn.execute(
            """
            INSERT INTO messages (enrollment_id, subscriber_id, campaign_key, campaign_version,
                                  step_key, channel, public_token, status, attempts, due_at,
                                  provider, provider_message_id, sent_at, created_at,
                                  updated_at)
            SELECT e.id, e.subscriber_id, e.campaign_key, 1, (%(steps)s::text[])[1 + s],
                   CASE WHEN e.id %% 10 = 0 THEN 'sms' ELSE 'email' END,
                   'm' || lpad(e.id::text, 8, '0') || lpad(s::text, 2, '0'), 'delivered', 1,
                   %(now)s - (4 - s) * interval '3 days',
                   CASE WHEN e.id %% 10 = 0 THEN 'twilio' ELSE 'sendgrid' END,
                   'bench-' || e.id || '-' || s,
                   %(now)s - (4 - s) * interval '3 days',
                   %(now)s - (4 - s) * interval '3 days',
                   %(now)s - (4 - s) * interval '3 days'
            FROM enrollments e CROSS JOIN generate_series(0, 2) AS s
            WHERE e.status IN ('active', 'paused') AND s < e.steps_done
            """,
            {"now": now, "steps": steps},
        )
        for table in ("subscribers", "enrollments", "messages", "consent_records"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        conn.execute("VACUUM ANALYZE")
        # The moments at which `due` more waiting people fall due, one per round. Fresh
        # rounds need them ahead of anyone a claim moves on (a step waits days at least).
        size.slots = [
            row[0]
            for row in conn.execute(
                "SELECT next_due_at FROM (SELECT next_due_at, row_number() OVER "
                "(ORDER BY next_due_at) AS n FROM enrollments WHERE status = 'active') x "
                "WHERE n %% %s = 0 ORDER BY n LIMIT %s",
                (due, rounds),
            )
        ]
        size.fresh = len(size.slots) == rounds and size.slots[-1] < now + timedelta(days=1)
        if not size.fresh:
            size.ready = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM enrollments WHERE status = 'active' ORDER BY id"
                )
            ]
            random.Random(size.people).shuffle(size.ready)  # scattered, not a run
        # Start from a checkpoint, not in the middle of the one the load's WAL began.
        try:
            conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            print("(no CHECKPOINT: the bench's role may not; the load's may still be running)")
    return time.perf_counter() - t0


def make_due(size: Size, count: int) -> None:
    if size.fresh:
        size.clock.current = size.slots.pop(0)
        return
    # A cycle: someone claimed before waits on their next step (never their last: 11
    # steps, at most a handful of claims each), so they can be made due again.
    clock = size.clock
    clock.advance(seconds=1)
    n = len(size.ready)
    ids = [size.ready[(size.next_due + k) % n] for k in range(count)]
    size.next_due = (size.next_due + count) % n
    with psycopg.connect(size.url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(
            "UPDATE enrollments SET next_due_at = %s WHERE id = ANY(%s)",
            (clock.now() - timedelta(minutes=1), ids),
        )


def run_tick(size: Size, registry: Registry, policy: Policy) -> tuple:
    clock = size.clock
    io, server, cpu, t0 = (
        size.server_io(),
        size.server_cpu(),
        time.process_time(),
        time.perf_counter(),
    )
    work = scheduler.tick(size.factory, clock, registry, policy, lambda work: None)
    seconds = time.perf_counter() - t0
    size.cpu.append(time.process_time() - cpu)
    size.server.append(size.server_cpu() - server)
    size.io.append(
        tuple(after - before for before, after in zip(io, size.server_io(), strict=True))
    )
    deliver(size, work)
    return seconds, work


def deliver(size: Size, work) -> None:
    """What the send workers would do with the tick's work, untimed: record it sent. Left
    queued, a person made due again in a later round would be held by the order check
    (their previous step still in flight), and that round would time holds, not claims."""
    ids = list(work.email) + list(work.sms)
    if not ids:
        return
    # Recorded as sent a week ago: at 10,000 people come round again every seven rounds,
    # all within a minute of bench time, and the shipped frequency cap (2 a day, 5 a week)
    # would rightly hold them; the tick is to meet them as a real day would, capped by
    # nothing. (The cap's count is still read: it is part of the tick.)
    with psycopg.connect(size.url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(
            "UPDATE messages SET status = 'sent', sent_at = %s, attempts = 1 WHERE id = ANY(%s)",
            (size.clock.now() - timedelta(days=8), ids),
        )


def capture(size: Size, registry, policy) -> list[tuple[str, object]]:
    """Every statement one tick sends, with its parameters."""
    statements: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, executemany):
        first = parameters[0] if executemany and parameters else parameters
        statements.append((statement, first))

    event.listen(size.engine, "before_cursor_execute", record)
    try:
        run_tick(size, registry, policy)
    finally:
        event.remove(size.engine, "before_cursor_execute", record)
    return statements


def timed(size: Size, registry, policy) -> tuple[float, list[tuple[float, str]]]:
    """One tick's time and each statement's time in it (commits are the rest)."""
    spans: list[tuple[float, str]] = []
    started: list[float] = []

    def before(*_args):
        started.append(time.perf_counter())

    def after(_conn, _cursor, statement, *_args):
        spans.append((time.perf_counter() - started.pop(), statement))

    event.listen(size.engine, "before_cursor_execute", before)
    event.listen(size.engine, "after_cursor_execute", after)
    try:
        seconds, _work = run_tick(size, registry, policy)
    finally:
        event.remove(size.engine, "before_cursor_execute", before)
        event.remove(size.engine, "after_cursor_execute", after)
    return seconds, spans


def explain(size: Size, statements: list[tuple[str, object]]) -> list[tuple[str, str]]:
    """(statement, plan) for each statement that reads or writes a table."""
    out = []
    raw = size.engine.raw_connection()
    try:
        cur = raw.cursor()
        for statement, params in statements:
            head = statement.lstrip().split(None, 1)[0].upper()
            if head not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
                continue
            cur.execute("EXPLAIN " + statement, params or None)
            out.append((statement, "\n".join(r[0] for r in cur.fetchall())))
        raw.rollback()
    finally:
        raw.close()
    return out


SCAN = re.compile(
    r"((?:Parallel )?(?:Seq|Index Only|Index|Bitmap Heap|Bitmap Index) Scan)"
    r"(?: using (\S+))? on (\S+)"
)


def scans(plan: str) -> list[str]:
    found = []
    for kind, index, table in SCAN.findall(plan):
        found.append(f"{kind} {table}" + (f" ({index})" if index else ""))
    for kind, index in re.findall(r"(Bitmap Index Scan) on (\S+)", plan):
        found.append(f"{kind} {index}")
    return found


def short(statement: str) -> str:
    return " ".join(statement.split())[:110]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000", help="people enrolled, comma-separated")
    parser.add_argument("--ticks", type=int, default=9, help="timed ticks per size (median)")
    parser.add_argument("--due", type=int, default=1000, help="fresh due people per tick")
    parser.add_argument("--plans", action="store_true", help="print every query plan")
    parser.add_argument("--profile", action="store_true", help="cProfile one tick per size")
    a = parser.parse_args()
    admin_url = os.environ.get(
        "BENCH_POSTGRES_URL",
        os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    sizes = [int(s) for s in a.sizes.split(",")]
    registry = Registry(ROOT / "campaigns" / "definitions", ROOT / "templates")
    # The shipped scheduling settings (CLAIM_BATCH_SIZE and the rest may be set as usual).
    policy = Policy.from_settings(load_settings())
    rounds = 1 + a.ticks + (2 if a.profile else 0) + 1  # warm-up, timed, profiles, plans
    run = f"drip_scale_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    loaded: list[Size] = []
    failed = False
    try:
        for people in sizes:
            size = Size(admin, admin_url, run, people)
            loaded.append(size)
            seconds = load(size, registry, rounds, a.due)
            how = "fresh people each round" if size.fresh else "people moved due each round"
            print(f"loaded {people:>9,} enrolled in {seconds:6.1f} s ({how})", flush=True)
            if not size.fresh and len(size.ready) < a.due:
                raise SystemExit(f"{people:,} enrolled hold fewer than {a.due} active people")
        # The lists of ids above are the bench's, not the tick's: out of the collector's
        # way, or every young-generation pass of a tick walks a million of them.
        gc.collect()
        gc.freeze()
        for size in loaded:  # a first tick warms caches and the registry; not counted
            make_due(size, a.due)
            run_tick(size, registry, policy)
        for _ in range(a.ticks):
            for size in loaded:
                make_due(size, a.due)
                seconds, work = run_tick(size, registry, policy)
                # Held ones are people whose next step is due at once (a question right
                # after the welcome, 0m): read again in the same tick, behind the message
                # just claimed (order per person), and held; a later tick claims them
                # beside the next round's due people (at a million the clock jumps minutes
                # a round, so they are due by then). Both are part of a real tick.
                if work.claimed - work.held < a.due:
                    raise SystemExit(
                        f"tick read {work.claimed} due and held {work.held}: "
                        f"{work.claimed - work.held} claimed, fewer than {a.due}"
                    )
                size.held.append(work.held)
                size.claimed.append(work.claimed - work.held)
                size.ticks.append(seconds)
        for size in loaded:
            size.cpu, size.server, size.io = (
                size.cpu[-a.ticks :],
                size.server[-a.ticks :],
                size.io[-a.ticks :],
            )
        if a.profile:
            for size in loaded:
                make_due(size, a.due)
                profiler = cProfile.Profile()
                profiler.enable()
                run_tick(size, registry, policy)
                profiler.disable()
                buf = io.StringIO()
                pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(30)
                print(f"\nprofile of one tick among {size.people:,}:\n{buf.getvalue()}")
                make_due(size, a.due)
                seconds, spans = timed(size, registry, policy)
                in_sql = sum(t for t, _ in spans)
                print(
                    f"statements of one tick among {size.people:,}: tick {seconds * 1000:.1f} ms, "
                    f"{in_sql * 1000:.1f} ms in {len(spans)} statements"
                )
                for t, statement in spans:
                    print(f"  {t * 1000:7.2f} ms  {short(statement)}")
        print()
        for size in loaded:
            make_due(size, a.due)
            plans = explain(size, capture(size, registry, policy))
            print(f"queries of one tick among {size.people:,} enrolled ({len(plans)}):")
            largest = size.people == max(sizes)
            for statement, plan in plans:
                found = scans(plan)
                seq = [s for s in found if s.startswith("Seq Scan") and s.split()[2] in HOT_TABLES]
                # A small table may rightly be read whole (the planner finds it cheaper);
                # at the largest size every row must come through an index.
                failed = failed or bool(seq and largest)
                print(f"  {'SEQ SCAN ' if seq else ''}{short(statement)}")
                print(f"      {'; '.join(found) or 'no table scan'}")
                if a.plans:
                    print("      " + plan.replace("\n", "\n      "))
            print()
    finally:
        for size in loaded:
            size.close()
            admin.execute(f'DROP DATABASE IF EXISTS "{size.name}" WITH (FORCE)')
        admin.close()
    with psycopg.connect(admin_url, connect_timeout=5) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"PostgreSQL {version}; CLAIM_BATCH_SIZE={policy.claim_batch_size}; "
        f"{a.due} due people per tick, median of {a.ticks} ticks"
    )
    medians = {}
    for size in loaded:
        medians[size.people] = statistics.median(size.ticks)
        ms = [f"{t * 1000:.0f}" for t in size.ticks]
        print(
            f"tick among {size.people:>9,} enrolled: median {medians[size.people] * 1000:7.1f} ms"
            f"  (ticks: {' '.join(ms)} ms)\n"
            f"{'':>30}CPU per tick (median): Python {statistics.median(size.cpu) * 1000:.1f} ms"
            f" + PostgreSQL {statistics.median(size.server) * 1000:.1f} ms; PostgreSQL I/O per "
            f"tick (median): {statistics.median(r for r, _ in size.io) / 1e6:.1f} MB read, "
            f"{statistics.median(w for _, w in size.io) / 1e6:.1f} MB written\n"
            f"{'':>30}claimed per tick (median) {statistics.median(size.claimed or [0]):.0f}; "
            f"read and held back (a step due at once behind one just claimed) "
            f"{statistics.median(size.held or [0]):.0f}"
        )
    if len(sizes) >= 2:
        small, big = medians[min(sizes)], medians[max(sizes)]
        ratio = big / small
        met = big <= 0.060 and ratio <= 1.3
        print(f"ratio {max(sizes):,} / {min(sizes):,} = {ratio:.2f}x")
        print(
            f"goal: {max(sizes):,} tick <= 60 ms median and within 1.3x: "
            f"{'met' if met else 'NOT met'}"
        )
    if failed:
        print(f"a tick query among {max(sizes):,} read enrollments or messages by a Seq Scan")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
