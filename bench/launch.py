"""A launch: 200,000 people enrolled at once, every first email drained through the real
workers, beside Celery's raw no-op task rate, in rounds of phases of at least 30 seconds.

    .venv/bin/python bench/launch.py [--people 200000] [--rounds 5] [--phase-seconds 30]
                                     [--concurrency 2] [--email-batch 500] [--sms-batch 250]

Everything is real except the providers, as in bench/throughput.py (whose Bench starts
the workers, the fakes and the databases here): PostgreSQL and Redis on loopback, a
Celery worker (prefork, with beat) per phase on its own database and Redis prefix, the
official SendGrid and Twilio SDKs talking to the fakes from tests/fakes. The course is
the shipped one (`hip_and_back`, its real templates); its first step is an email and a
text, so people with an address only get the email, people with a phone only the text.

Each round has three phases:

  no-op   a worker runs `bench.noop` (bench/noop_app.py); rate = tasks / time from the
          first publish until the worker has taken the last one (as bench/throughput.py).
          Sized from the previous rate to last at least --phase-seconds.
  launch  --people people with an email address, written in bulk (INSERT .. SELECT over
          generate_series: people, consent, enrollments due now) and committed at once;
          rate = emails / time from that commit until the last was recorded sent (as
          bench/throughput.py). The worker drains a warm-up launch of 2,000 first, so its
          RSS before (after the warm-up) and after the launch compare like with like.
  texts   people with a phone only, the same way, sized to last at least
          --phase-seconds; the Twilio rate limit is set high (the fake has none).

The ratios are each round's email and text rates over its own no-op rate; the medians of
the rounds are the figures. Goal (issue 10): email at least 4x and texts at least 1.5x
the no-op rate, worker RSS flat. Needs PostgreSQL (BENCH_POSTGRES_URL or
TEST_POSTGRES_URL, an admin URL that may create databases) and Redis (BENCH_REDIS_URL or
TEST_REDIS_URL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg
from sqlalchemy import text

from bench.throughput import Bench, _aware, _stop
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.sequences.registry import Registry
from campaigns.sequences.revisions import ensure_revision

CAMPAIGN = "hip_and_back"
DEFINITIONS, TEMPLATES = ROOT / "campaigns" / "definitions", ROOT / "templates"
WARM_UP = 2000
MiB = 1024 * 1024


class Launch(Bench):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.registry = Registry(DEFINITIONS, TEMPLATES)
        self.enrolled = 0  # people written so far in the current phase's database
        self.twilio_concurrency: int | None = None  # TWILIO_CONCURRENCY, when set

    def env(self, phase: str, database_url: str) -> dict[str, str]:
        env = super().env(phase, database_url)
        # The shipped course, as published in the database by `bulk_enroll` (the product's
        # source; throughput.py's fixture course is read from its file instead).
        env.update(
            DEFINITIONS_DIR=str(DEFINITIONS),
            TEMPLATES_DIR=str(TEMPLATES),
            SEQUENCES_SOURCE="database",
        )
        if self.twilio_concurrency:
            env["TWILIO_CONCURRENCY"] = str(self.twilio_concurrency)
        return env

    # people ---------------------------------------------------------------------------
    def bulk_enroll(self, url: str, channel: str, people: int) -> None:
        """`people` more people on `channel` only, all due now, in one transaction."""
        campaign = self.registry.get(CAMPAIGN)
        engine = make_engine(url)
        with transaction(make_session_factory(engine)) as session:
            rev = ensure_revision(session, self.clock, campaign)
        engine.dispose()
        first, last = self.enrolled + 1, self.enrolled + people
        self.enrolled = last
        now = self.clock.now()
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=False) as conn:
            conn.execute(
                """
                INSERT INTO subscribers (id, email, phone, first_name, locale, timezone,
                                         status, public_token, created_at, updated_at)
                SELECT i,
                       CASE WHEN %(channel)s = 'email' THEN 'launch' || i || '@example.com' END,
                       CASE WHEN %(channel)s = 'sms' THEN '+1202' || lpad(i::text, 7, '0') END,
                       'P' || i, 'en', 'America/New_York', 'active',
                       'launch' || lpad(i::text, 37, '0'), %(now)s, %(now)s
                FROM generate_series(%(first)s::int, %(last)s::int) AS i
                """,
                {"channel": channel, "now": now, "first": first, "last": last},
            )
            conn.execute(
                """
                INSERT INTO consent_records (subscriber_id, channel, action, source, created_at)
                SELECT i, %(channel)s, 'granted', 'bench', %(now)s
                FROM generate_series(%(first)s::int, %(last)s::int) AS i
                """,
                {"channel": channel, "now": now, "first": first, "last": last},
            )
            conn.execute(
                """
                INSERT INTO enrollments (id, subscriber_id, campaign_key, campaign_version,
                                         campaign_revision, cursor_base_at, next_step_key,
                                         next_due_at, steps_done, status, source,
                                         created_at, updated_at)
                SELECT i, i, %(campaign)s, %(version)s, %(rev)s, %(now)s, %(step)s, %(now)s,
                       0, 'active', 'bench', %(now)s, %(now)s
                FROM generate_series(%(first)s::int, %(last)s::int) AS i
                """,
                {
                    "campaign": campaign.key,
                    "version": campaign.version,
                    "rev": rev,
                    "step": campaign.steps[0].key,
                    "now": now,
                    "first": first,
                    "last": last,
                },
            )
            for table in ("subscribers", "enrollments"):
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", (last,))
            conn.commit()

    def drain(self, url: str, channel: str, total: int, started) -> dict:
        """Wait until `total` messages on `channel` are final; the rate counts `total`
        minus what was final before `started`."""
        engine = make_engine(url)
        t0 = time.perf_counter()
        try:
            with engine.connect() as conn:
                query = text(
                    "SELECT count(*) FILTER (WHERE status IN "
                    "('sent', 'delivered', 'failed', 'bounced', 'suppressed', 'skipped')), "
                    "count(*) FILTER (WHERE status = 'sent'), max(sent_at) "
                    "FROM messages WHERE channel = :channel"
                )
                while True:
                    done, sent, last = conn.execute(query, {"channel": channel}).one()
                    conn.commit()
                    if done >= total:
                        break
                    if time.perf_counter() - t0 > self.deadline:
                        raise SystemExit(
                            f"{channel} missed its deadline ({done}/{total}); see {self.tmp}"
                        )
                    time.sleep(0.5)
                before = conn.execute(
                    text(
                        "SELECT count(*) FROM messages WHERE channel = :channel "
                        "AND status = 'sent' AND sent_at < :started"
                    ),
                    {"channel": channel, "started": started},
                ).scalar()
        finally:
            engine.dispose()
        count = sent - before
        seconds = (_aware(last) - started).total_seconds()
        return {"count": count, "seconds": seconds, "rate": count / seconds, "final": done}

    # phases ---------------------------------------------------------------------------
    def launch_phase(self, channel: str, people: int, phase: str, warm_up: int = 0) -> dict:
        url = self.database(phase)
        self.enrolled = 0
        env = self.env(phase, url)
        node = self.start_worker(phase, "workers.app", "schedule,email,sms,events", env, True)
        worker = self.procs[-1]
        self.wait_ready(self.control_app(phase), node)
        rss_before = None
        if warm_up:
            self.bulk_enroll(url, channel, warm_up)
            self.drain(url, channel, warm_up, self.clock.now())
            rss_before = rss(worker.pid)
        self.bulk_enroll(url, channel, people)
        started = self.clock.now()  # due from this commit on
        result = self.drain(url, channel, warm_up + people, started)
        result["rss_before"], result["rss_after"] = rss_before, rss(worker.pid)
        result["requests"] = len((self.sendgrid if channel == "email" else self.twilio).requests)
        self.sendgrid.reset()  # the fakes keep every request: free them between phases
        self.twilio.reset()
        _stop(self.procs.pop())
        return result


def rss(pid: int) -> list[int]:
    """Resident set sizes, in bytes, of a worker's main process and its pool children."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    sizes = []
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) * 1024)
        except OSError:
            continue
    return sizes


def _rss(before: list[int] | None, after: list[int]) -> str:
    """Total RSS of the worker's processes before and after, and each process's."""
    if not before:
        return f"{sum(after) / MiB:.0f} MiB after"
    each = ", ".join(f"{b / MiB:.0f}->{a / MiB:.0f}" for b, a in zip(before, after, strict=False))
    growth = (sum(after) - sum(before)) / sum(before) * 100
    return (
        f"{sum(before) / MiB:.0f} MiB before, {sum(after) / MiB:.0f} MiB after "
        f"({growth:+.1f}%; main process, then each child: {each})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=200_000, help="people in each launch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phase-seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--email-batch", type=int, default=500, help="EMAIL_BATCH_SIZE (max 1000)")
    parser.add_argument("--sms-batch", type=int, default=250, help="SMS_BATCH_SIZE")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds allowed per phase")
    parser.add_argument("--twilio-concurrency", type=int, help="TWILIO_CONCURRENCY (default 8)")
    a = parser.parse_args()
    admin = os.environ.get(
        "BENCH_POSTGRES_URL",
        os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    redis_url = os.environ.get(
        "BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    # First guesses at the rates, to size the first round's phases; later rounds use the
    # rates measured in the round before.
    noop_rate, sms_rate = 700.0, 1000.0
    rounds = []
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    with Launch(admin, redis_url, a.concurrency, a.email_batch, a.deadline, a.sms_batch) as bench:
        bench.twilio_concurrency = a.twilio_concurrency
        for r in range(1, a.rounds + 1):
            noop = bench.noop_rate(int(noop_rate * a.phase_seconds * 1.3), f"noop{r}")
            email = bench.launch_phase("email", a.people, f"email{r}", warm_up=WARM_UP)
            sms = bench.launch_phase("sms", int(sms_rate * a.phase_seconds * 1.3), f"sms{r}")
            noop_rate, sms_rate = max(noop_rate, noop["rate"]), max(sms_rate, sms["rate"])
            rounds.append((noop, email, sms))
            short = [
                name
                for name, p in (("no-op", noop), ("email", email), ("texts", sms))
                if p["seconds"] < a.phase_seconds
            ]
            print(
                f"round {r}: no-op {noop['count']:6d} in {noop['seconds']:5.1f} s = "
                f"{noop['rate']:6.1f}/s | email {email['count']:6d} in {email['seconds']:5.1f} s"
                f" = {email['rate']:7.1f}/s = {email['rate'] / noop['rate']:4.2f}x | texts "
                f"{sms['count']:6d} in {sms['seconds']:5.1f} s = {sms['rate']:6.1f}/s = "
                f"{sms['rate'] / noop['rate']:4.2f}x\n         worker RSS over the launch: "
                f"{_rss(email['rss_before'], email['rss_after'])}"
                + (
                    f"\n         shorter than {a.phase_seconds:.0f} s: {', '.join(short)}"
                    if short
                    else ""
                ),
                flush=True,
            )
    with psycopg.connect(admin, connect_timeout=5) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    email_x = statistics.median(e["rate"] / n["rate"] for n, e, _ in rounds)
    sms_x = statistics.median(s["rate"] / n["rate"] for n, _, s in rounds)
    drains = [e["seconds"] for _, e, _ in rounds]
    print(
        f"machine: {os.cpu_count()} cores, load average {load_before[0]:.2f} before and "
        f"{os.getloadavg()[0]:.2f} after; PostgreSQL {version}; workers: prefork "
        f"-c {a.concurrency} with beat; EMAIL_BATCH_SIZE={a.email_batch}, "
        f"SMS_BATCH_SIZE={a.sms_batch}; {(time.perf_counter() - t_start) / 60:.1f} min"
    )
    print(
        f"launch of {a.people:,} emails: drained in {statistics.median(drains):.1f} s median "
        f"({', '.join(f'{d:.1f}' for d in drains)} s)"
    )
    print(
        f"median of {len(rounds)}: no-op {statistics.median(n['rate'] for n, _, _ in rounds):.1f}"
        f" tasks/s; email {statistics.median(e['rate'] for _, e, _ in rounds):.1f} msgs/s = "
        f"{email_x:.2f}x no-op; texts {statistics.median(s['rate'] for _, _, s in rounds):.1f}"
        f" msgs/s = {sms_x:.2f}x no-op"
    )
    met = email_x >= 4 and sms_x >= 1.5
    print(f"goal email >= 4x and texts >= 1.5x the no-op rate: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
