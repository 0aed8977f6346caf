"""Throughput: due messages per second, end to end, beside Celery's raw per-task rate.

    .venv/bin/python bench/throughput.py [--emails 6000] [--texts 3000] [--noops 2000]
                                         [--sms-batch 250]

Everything is real except the providers: PostgreSQL and Redis on loopback, Celery worker
processes (with beat) started here, and the official SendGrid/Twilio SDKs talking to the
fake servers from tests/fakes. Three phases, each on its own database and Redis prefix,
with the same worker concurrency:

  no-op  a worker runs `bench.noop` (bench/noop_app.py: the drip's Celery settings, a
         task that does nothing); rate = tasks / time from the first publish until the
         worker has taken the last one. The ceiling for "one message per task".
  email  people enrolled in the fixture course "quick" with an address only, two emails
         each, due at once; rate = emails / time from the commit until the last was
         recorded sent. Batched: shared bodies, up to EMAIL_BATCH_SIZE per mail/send.
  sms    the same with a phone number only (two texts each), Twilio rate limit set high.

Goal (issue 3): email at least 3x the no-op rate, SMS at least 1x. Bounded: every phase
has a deadline, and the process groups, databases and Redis keys are removed at the end.
Needs PostgreSQL (BENCH_POSTGRES_URL or TEST_POSTGRES_URL, an admin URL) and Redis
(BENCH_REDIS_URL or TEST_REDIS_URL); defaults are the test defaults on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg
import redis
from sqlalchemy import func, select

from campaigns.audience.subscribers import upsert_subscriber
from campaigns.clock import ScaledClock
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.delivery.enrollment import enroll
from campaigns.migrate import upgrade
from campaigns.models import Message
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.states import TERMINAL, MessageStatus
from settings import load_settings
from tests.fakes import FakeSendGrid, FakeTwilio
from workers.app import make_app

FIXTURES = ROOT / "tests" / "fixtures"
VIRTUAL_EPOCH = 1772463600.0  # Monday 2 March 2026, 10:00 in New York: texts allowed
SID, TOKEN, SG_KEY = "AC" + "b" * 32, "bench-token", "SG.bench-key"


class Bench:
    def __init__(
        self,
        admin_url: str,
        redis_url: str,
        concurrency: int,
        email_batch: int,
        deadline: float,
        sms_batch: int = 250,
    ):
        self.admin_url, self.redis_url = admin_url, redis_url
        self.concurrency, self.email_batch, self.deadline = concurrency, email_batch, deadline
        self.sms_batch = sms_batch
        self.run = f"drip-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.tmp = Path(tempfile.mkdtemp(prefix="drip-bench-"))
        self.real_epoch = time.time()
        self.clock = ScaledClock(self.real_epoch, VIRTUAL_EPOCH, 1.0)
        self.procs: list[subprocess.Popen] = []
        self.databases: list[str] = []
        self.stack = ExitStack()

    def __enter__(self) -> Self:
        self.admin = psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)
        self.sendgrid = self.stack.enter_context(FakeSendGrid(api_key=SG_KEY))
        self.twilio = self.stack.enter_context(FakeTwilio(account_sid=SID, auth_token=TOKEN))
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            _stop(proc)
        self.stack.close()
        for name in self.databases:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.close()
        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter(match=f"{self.run}*", count=1000):
            client.delete(key)
        if exc[0] is None:  # on a failure the logs stay: the message names the folder
            shutil.rmtree(self.tmp, ignore_errors=True)

    # set-up ------------------------------------------------------------------------
    def database(self, phase: str) -> str:
        name = f"{self.run}-{phase}".replace("-", "_")
        self.admin.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        url = (
            "postgresql+psycopg://"
            + f"{self.admin_url.rsplit('/', 1)[0]}/{name}".split("://", 1)[1]
        )
        upgrade(url)
        return url

    def env(self, phase: str, database_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
        env.update(
            ENVIRONMENT="test",
            SECRET_KEY="bench-secret-key-0123456789abcdef-0123456789",
            DATABASE_URL=database_url,
            REDIS_URL=self.redis_url,
            REDIS_KEY_PREFIX=f"{self.run}-{phase}:",
            # The fixture course is read from its file (the product's default source, the
            # database, would have no revision of it: every claim would find no step).
            SEQUENCES_SOURCE="files",
            DEFINITIONS_DIR=str(FIXTURES / "definitions"),
            TEMPLATES_DIR=str(FIXTURES / "templates"),
            OUTBOX_DIR=str(self.tmp / "outbox"),
            TICK_SECONDS="0.2",
            REAP_SECONDS="5",
            CLOCK_REAL_EPOCH=str(self.real_epoch),
            CLOCK_VIRTUAL_EPOCH=str(VIRTUAL_EPOCH),
            PYTHONPATH=str(ROOT),
            NO_PROXY="127.0.0.1,localhost",
            EMAIL_PROVIDER="sendgrid",
            SENDGRID_API_KEY=SG_KEY,
            SENDGRID_API_HOST=self.sendgrid.url,
            SMS_PROVIDER="twilio",
            TWILIO_ACCOUNT_SID=SID,
            TWILIO_AUTH_TOKEN=TOKEN,
            TWILIO_FROM_NUMBER="+15557650002",
            TWILIO_API_BASE_URL=self.twilio.url,
            EMAIL_BATCH_SIZE=str(self.email_batch),
            SMS_BATCH_SIZE=str(self.sms_batch),
            # The fakes have no limit to respect; the bench measures the pipeline.
            EMAIL_RATE_PER_SECOND="1000000",
            EMAIL_RATE_BURST="1000000",
            SMS_RATE_PER_SECOND="1000000",
            SMS_RATE_BURST="1000000",
        )
        return env

    def start_worker(
        self, phase: str, app: str, queues: str, env: dict, beat: bool, concurrency=None
    ) -> str:
        node = f"{phase}@{self.run}"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency or self.concurrency),
            "-n",
            node,
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-l",
            "info",
        ]
        if beat:
            args += ["-B", "-s", str(self.tmp / f"beat-{phase}")]
        log = open(self.tmp / f"{phase}.log", "ab")  # noqa: SIM115 - the child keeps it open
        self.procs.append(
            subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
            )
        )
        log.close()
        return node

    def control_app(self, phase: str):
        return make_app(
            load_settings(redis_url=self.redis_url, redis_key_prefix=f"{self.run}-{phase}:")
        )

    def wait_ready(self, app, node: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if app.control.inspect(destination=[node], timeout=0.5, limit=1).ping():
                return
            if self.procs[-1].poll() is not None:
                break
        raise SystemExit(f"worker {node} did not start; see {self.tmp}")

    # phases --------------------------------------------------------------------------
    def noop_rate(self, n: int, phase: str = "noop") -> dict:
        env = self.env(phase, self.database(phase))
        node = self.start_worker(phase, "bench.noop_app", "schedule", env, beat=False)
        app = self.control_app(phase)
        self.wait_ready(app, node)
        inspect = app.control.inspect(destination=[node], timeout=0.5, limit=1)
        t0 = time.perf_counter()
        for _ in range(n):
            app.send_task("bench.noop", queue="schedule")
        # The worker counts a task when a pool process takes it: at most `concurrency`
        # short of done, each a no-op.
        while True:
            stats = (inspect.stats() or {}).get(node, {})
            if stats.get("total", {}).get("bench.noop", 0) >= n:
                break
            if time.perf_counter() - t0 > self.deadline:
                raise SystemExit(f"no-op phase missed its deadline; see {self.tmp}")
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        _stop(self.procs.pop())
        return {"count": n, "seconds": seconds, "rate": n / seconds}

    def drip_rate(
        self, channel: str, n: int, workers: int = 1, split: bool = False, **extra_env
    ) -> dict:
        """`workers` processes of `self.concurrency` each, the first with beat; with
        `split`, one more process (-c 1, with beat) takes only the schedule and events
        queues and the others only email and sms. `extra_env` overrides settings (the
        rate limits, for one)."""
        phase = f"{channel}{len(self.databases)}"  # a database and Redis prefix per run
        url = self.database(phase)
        env = self.env(phase, url)
        env.update({k: str(v) for k, v in extra_env.items()})
        app = self.control_app(phase)
        started_procs = len(self.procs)
        fake = self.sendgrid if channel == "email" else self.twilio
        requests_before = len(fake.requests)
        layout = [("schedule,events", True, 1)] if split else []
        layout += [("email,sms" if split else "schedule,email,sms,events", not split, None)]
        layout += [("email,sms" if split else "schedule,email,sms,events", False, None)] * (
            workers - 1
        )
        for i, (queues, beat, concurrency) in enumerate(layout):
            node = self.start_worker(
                f"{phase}-{i}", "workers.app", queues, env, beat=beat, concurrency=concurrency
            )
            self.wait_ready(app, node)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        registry = Registry(FIXTURES / "definitions", FIXTURES / "templates")
        people = n // 2  # "quick" sends each person two emails (or two texts)
        with transaction(factory) as session:
            for i in range(people):
                contact = (
                    {"email": f"bench{i}@example.com"}
                    if channel == "email"
                    else {"phone": f"+1202{2000000 + i:07d}"}
                )
                sub = upsert_subscriber(
                    session, self.clock, consent=(channel,), first_name=f"P{i}", **contact
                )
                enroll(session, self.clock, registry, sub, "quick", Policy())
        started, t0 = self.clock.now(), time.perf_counter()  # due from this commit on
        while True:
            with factory() as session:
                done, last = session.execute(
                    select(func.count(Message.id), func.max(Message.sent_at)).where(
                        Message.channel == channel, Message.status.in_(TERMINAL)
                    )
                ).one()
            if done >= people * 2:
                break
            if time.perf_counter() - t0 > self.deadline:
                raise SystemExit(
                    f"{channel} phase missed its deadline ({done}/{people * 2}); see {self.tmp}"
                )
            time.sleep(0.1)
        with factory() as session:
            by_status = dict(
                session.execute(
                    select(Message.status, func.count(Message.id))
                    .where(Message.channel == channel)
                    .group_by(Message.status)
                ).all()
            )
        engine.dispose()
        while len(self.procs) > started_procs:
            _stop(self.procs.pop())
        sent = by_status.get(MessageStatus.SENT, 0)
        seconds = (_aware(last) - started).total_seconds()
        requests = len(fake.requests) - requests_before
        return {
            "count": sent,
            "seconds": seconds,
            "rate": sent / seconds,
            "statuses": by_status,
            "requests": requests,
        }


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noops", type=int, default=2000)
    parser.add_argument("--emails", type=int, default=6000)
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--email-batch", type=int, default=500, help="EMAIL_BATCH_SIZE (max 1000)")
    parser.add_argument("--sms-batch", type=int, default=250, help="SMS_BATCH_SIZE")
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds allowed per phase")
    a = parser.parse_args()
    admin = os.environ.get(
        "BENCH_POSTGRES_URL",
        os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    redis_url = os.environ.get(
        "BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    with Bench(admin, redis_url, a.concurrency, a.email_batch, a.deadline, a.sms_batch) as bench:
        noop = bench.noop_rate(a.noops)
        email = bench.drip_rate("email", a.emails)
        sms = bench.drip_rate("sms", a.texts)
    print(
        f"machine: {os.cpu_count()} cores; workers: prefork -c {a.concurrency}; "
        f"Redis + PostgreSQL on loopback; EMAIL_BATCH_SIZE={a.email_batch}, "
        f"SMS_BATCH_SIZE={a.sms_batch}"
    )
    print(
        f"raw Celery no-op tasks  {noop['count']:6d} in {noop['seconds']:6.2f} s = "
        f"{noop['rate']:8.1f} tasks/s"
    )
    for name, r in (("email (SendGrid fake)", email), ("sms (Twilio fake)", sms)):
        extra = {k: v for k, v in r["statuses"].items() if k != MessageStatus.SENT}
        print(
            f"{name:22s}  {r['count']:6d} in {r['seconds']:6.2f} s = {r['rate']:8.1f} msgs/s"
            f"  = {r['rate'] / noop['rate']:5.2f}x no-op  ({r['requests']} provider requests"
            + (f"; not sent: {extra}" if extra else "")
            + ")"
        )
    met = email["rate"] >= 3 * noop["rate"] and sms["rate"] >= noop["rate"]
    print(f"goal email >= 3x and sms >= 1x the no-op rate: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
