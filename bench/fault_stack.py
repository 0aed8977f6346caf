"""The real stack one fault scenario runs on, for bench/faults.py.

A fresh PostgreSQL database (copied from a migrated template, dropped afterwards), a
Redis server of the bench's own on a free port (so the shared 6379 that tests use is
never restarted), `drip beat`, `drip worker` processes and `drip web` started as the
deployment starts them, the fake SendGrid and Twilio servers from tests/fakes reached
through the official SDKs, and, standing in for the providers' webhooks, a pump that
posts a signed "delivered" status for every message the fakes accepted, a second after
they accepted it (Twilio's status callback to the URL each text names; SendGrid's signed
event webhook, in batches), retrying until the web app answers 2xx.

A sampler reads the outbox every half second straight from PostgreSQL (never through
the fault proxy), so the bench sees the backlog while the workers cannot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import redis
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

from campaigns.audience.subscribers import upsert_subscriber
from campaigns.clock import FixedClock, ScaledClock
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.delivery.enrollment import enroll
from campaigns.migrate import upgrade
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from settings import load_settings
from tests.fakes import FakeSendGrid, FakeTwilio
from tests.faultproxy import FaultProxy
from tests.services import redis_server
from workers.app import make_app
from workers.providers.sendgrid_webhook import REF_ARG, SIGNATURE_HEADER, TIMESTAMP_HEADER

ROOT = Path(__file__).resolve().parent.parent
SID, TOKEN, SG_KEY = "AC" + "f" * 32, "fault-bench-token", "SG.fault-bench-key"
FROM_NUMBER = "+15557650003"
SECRET = "fault-bench-secret-key-0123456789abcdef-0123456789"
LESSONS = 3
WEBHOOK_LAG = 1.0  # seconds between a provider accepting a message and its webhook


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the course


def write_course(folder: Path, delay: str) -> tuple[Path, Path]:
    """A three-lesson course, every lesson on email and text, the send window open all
    week so only the text hours (08:00-21:00 local) hold anything. Each lesson names its
    number in the subject and the text, so the fakes' logs say which lesson went where."""
    definitions, templates = folder / "definitions", folder / "templates"
    definitions.mkdir(parents=True, exist_ok=True)
    steps = "\n".join(
        f"  - {{key: l{n}, delay: {'0m' if n == 1 else delay}, channels: [email, sms], "
        f'template: lesson, subject: "Lesson {n}"}}'
        for n in range(1, LESSONS + 1)
    )
    (definitions / "faults.yaml").write_text(
        "key: faults\nversion: 1\nname: Fault run course\nlocales: [en]\n"
        'send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}\n'
        f"steps:\n{steps}\n"
    )
    lesson = templates / "faults" / "en"
    lesson.mkdir(parents=True, exist_ok=True)
    (lesson / "lesson.html").write_text("<p>This is lesson {{ step.number }}.</p>\n")
    (lesson / "lesson.txt").write_text("This is lesson {{ step.number }}.\n")
    (lesson / "lesson.sms.txt").write_text("lesson {{ step.number }}: {{ links.read_online }}\n")
    layout = templates / "_layout" / "en"
    layout.mkdir(parents=True, exist_ok=True)
    for source in (ROOT / "tests" / "fixtures" / "templates" / "_layout" / "en").iterdir():
        (layout / source.name).write_text(source.read_text())
    return definitions, templates


@dataclass(frozen=True)
class Person:
    number: int
    zone: str
    email: str | None
    phone: str | None

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, a in (("email", self.email), ("sms", self.phone)) if a)


# ---------------------------------------------------------------- Redis and PostgreSQL


class RedisServer:
    """redis-server on its own port, without persistence: a restart loses every queue,
    as a Redis without AOF does."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        args += ["no", "--daemonize", "no", "--logfile", str(self.folder / "redis.log")]
        self.proc = subprocess.Popen(
            [redis_server(), *args],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"redis-server did not start; see {self.folder}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # a shutdown without a save: the data is gone
            self.proc.wait(timeout=10)
        self.proc = None

    def flush(self) -> None:
        redis.Redis.from_url(self.url).flushall()


class Databases:
    """A migrated template database, copied for each scenario (much faster than
    migrating each) and dropped with every copy at the end."""

    def __init__(self, admin_url: str, run: str, keep: bool = False):
        self.admin_url, self.run, self.keep = admin_url, run, keep
        self.admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        self.template = f"{run}_template"
        self.made: list[str] = []
        self._create(self.template)
        upgrade(self.url(self.template))

    def url(self, name: str, port: int | None = None, driver: bool = True) -> str:
        """The admin URL with another database (and port: the fault proxy's)."""
        url = make_url(self.admin_url).set(
            drivername="postgresql+psycopg" if driver else "postgresql", database=name
        )
        if port is not None:
            url = url.set(port=port)
        return url.render_as_string(hide_password=False)

    @property
    def host_port(self) -> tuple[str, int]:
        url = make_url(self.admin_url)
        return url.host or "127.0.0.1", url.port or 5432

    def _create(self, name: str, template: str | None = None) -> None:
        self.admin.execute(
            f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        )
        self.made.append(name)

    def fresh(self, scenario: str) -> str:
        name = f"{self.run}_{scenario}"
        self._create(name, self.template)
        return name

    def drop(self, name: str) -> None:
        if self.keep and name != self.template:
            log(f"kept database {name}")
            return
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with contextlib.suppress(ValueError):
            self.made.remove(name)

    def close(self) -> None:
        for name in list(reversed(self.made)):
            self.drop(name)
        self.admin.close()


# ---------------------------------------------------------------- one scenario's stack


@dataclass
class Sample:
    at: float  # wall time
    pending: int  # due now and not yet handed over: queued, sending, retry, overdue deferred,
    # and enrollments whose next step is due but not claimed
    coming: int  # enrollments whose next step comes due within the horizon
    statuses: dict[str, int] = field(default_factory=dict)


SAMPLE_SQL = """
select status, count(*) filter (where status <> 'deferred' or next_attempt_at <= %(now)s),
       count(*)
from messages group by status
"""
# A person held behind an unconfirmed message (invariant 10) waits for ops or the
# provider, not for the engine: their cursor is re-read every minute, so it would always
# look "coming", and a run that left a message unconfirmed would wait out its deadline.
ENROLLMENTS_SQL = """
select count(*) filter (where next_due_at <= %(now)s),
       count(*) filter (where next_due_at > %(now)s and next_due_at <= %(horizon)s)
from enrollments e where status = 'active' and not exists (
    select 1 from messages m where m.enrollment_id = e.id and m.status = 'unconfirmed')
"""
PENDING_STATUSES = ("queued", "sending", "retry", "deferred")


class Stack:
    """Processes, fakes, pump and sampler for one scenario; a context manager that
    leaves nothing running (process groups SIGKILLed, database dropped, Redis flushed)."""

    def __init__(self, bench, scenario: str, env_overrides: dict[str, str], use_proxy: bool):
        self.bench, self.scenario = bench, scenario
        self.tmp = bench.tmp / scenario
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.overrides = env_overrides
        self.use_proxy = use_proxy
        self.procs: dict[str, subprocess.Popen] = {}
        self.samples: list[Sample] = []
        self.web_port = free_port()
        self.real_epoch = 0.0
        self.clock: ScaledClock | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.sg_private = ec.generate_private_key(ec.SECP256R1())
        self.pump = Pump(self)

    # set-up ------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        b = self.bench
        self.db_name = b.databases.fresh(self.scenario)
        self.db_direct = b.databases.url(self.db_name)
        self.proxy = None
        stack_db = self.db_direct
        if self.use_proxy:
            self.proxy = FaultProxy(*b.databases.host_port).start()
            stack_db = b.databases.url(self.db_name, port=self.proxy.port)
        self.stack_db = stack_db
        self.sendgrid = FakeSendGrid(api_key=SG_KEY).start()
        self.twilio = FakeTwilio(account_sid=SID, auth_token=TOKEN).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.kill(*self.procs)
        self.sendgrid.stop()
        self.twilio.stop()
        if self.proxy is not None:
            self.proxy.stop()
        self.bench.databases.drop(self.db_name)
        with contextlib.suppress(redis.RedisError):
            self.bench.redis.flush()

    def env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
        public_key = self.sg_private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        env.update(
            ENVIRONMENT="test",
            SECRET_KEY=SECRET,
            DATABASE_URL=self.stack_db,
            REDIS_URL=self.bench.redis.url,
            REDIS_KEY_PREFIX=f"{self.bench.run}-{self.scenario}:",
            BROKER_DIR=str(self.tmp / name / "broker"),  # beat keeps its schedule beside it
            DEFINITIONS_DIR=str(self.bench.definitions),
            TEMPLATES_DIR=str(self.bench.templates),
            OUTBOX_DIR=str(self.tmp / "outbox"),
            TIME_SCALE="1",
            CLOCK_REAL_EPOCH=repr(self.real_epoch),
            CLOCK_VIRTUAL_EPOCH=repr(self.bench.virtual_epoch),
            PYTHONPATH=str(ROOT),
            NO_PROXY="127.0.0.1,localhost",
            PUBLIC_BASE_URL=f"http://127.0.0.1:{self.web_port}",
            EMAIL_PROVIDER="sendgrid",
            SENDGRID_API_KEY=SG_KEY,
            SENDGRID_API_HOST=self.sendgrid.url,
            SENDGRID_WEBHOOK_PUBLIC_KEY=base64.b64encode(public_key).decode(),
            SMS_PROVIDER="twilio",
            TWILIO_ACCOUNT_SID=SID,
            TWILIO_AUTH_TOKEN=TOKEN,
            TWILIO_FROM_NUMBER=FROM_NUMBER,
            TWILIO_API_BASE_URL=self.twilio.url,
        )
        env.update(self.overrides)
        return env

    def enroll(self, people: list[Person], at: datetime) -> None:
        """Everyone joins at virtual time `at`, in one transaction, before any worker runs."""
        engine = make_engine(self.db_direct)
        factory = make_session_factory(engine)
        registry = Registry(self.bench.definitions, self.bench.templates)
        clock, policy = FixedClock(at), Policy()
        with transaction(factory) as session:
            for p in people:
                contact = {k: v for k, v in (("email", p.email), ("phone", p.phone)) if v}
                sub = upsert_subscriber(
                    session,
                    clock,
                    consent=p.channels,
                    first_name=f"P{p.number}",
                    timezone=p.zone,
                    **contact,
                )
                enroll(session, clock, registry, sub, "faults", policy)
        engine.dispose()

    # processes -----------------------------------------------------------------------
    def launch(self, workers: int, concurrency: int) -> None:
        """Start the clock (virtual time = the bench's epoch from now on), then beat,
        the workers and the web app; return once all answer."""
        self.real_epoch = time.time()
        self.clock = ScaledClock(self.real_epoch, self.bench.virtual_epoch, 1.0)
        self.start("web", ["web", "--port", str(self.web_port)])
        for n in range(1, workers + 1):
            self.start_worker(n, concurrency)
        self.start("beat1", ["beat"])
        self.wait_ready([f"worker{n}" for n in range(1, workers + 1)])
        self._thread(self._sample_loop, "sampler")
        self._thread(self.pump.loop, "pump")

    def start(self, name: str, args: list[str]) -> None:
        log_file = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args],
            cwd=ROOT,
            env=self.env(name),
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
        log_file.close()

    def start_worker(self, n: int, concurrency: int) -> None:
        node = f"worker{n}@{self.bench.run}-{self.scenario}"
        self.start(f"worker{n}", ["worker", "-c", str(concurrency), "-n", node])

    def wait_ready(self, workers: list[str], timeout: float = 90) -> None:
        app = make_app(
            load_settings(
                redis_url=self.bench.redis.url,
                redis_key_prefix=f"{self.bench.run}-{self.scenario}:",
            )
        )
        nodes = [f"{w}@{self.bench.run}-{self.scenario}" for w in workers]
        deadline = time.monotonic() + timeout
        web_ready = False
        while time.monotonic() < deadline:
            if not web_ready:
                with contextlib.suppress(httpx.HTTPError):
                    web_ready = httpx.get(self.public("/healthz"), timeout=1).status_code < 500
            answered = app.control.inspect(destination=nodes, timeout=0.5).ping() or {}
            if web_ready and len(answered) == len(nodes):
                return
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise SystemExit(f"{', '.join(dead)} exited; see {self.tmp}")
            time.sleep(0.2)
        raise SystemExit(f"the stack did not start within {timeout:.0f} s; see {self.tmp}")

    def kill(self, *names: str) -> None:
        """SIGKILL these processes' whole groups (pool children, embedded threads) and
        return once none of their processes runs any more."""
        procs = [self.procs.pop(n) for n in names if n in self.procs]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.wait(timeout=30)
            deadline = time.monotonic() + 10
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.02)

    def public(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    # watching ------------------------------------------------------------------------
    def _thread(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _sample_loop(self) -> None:
        url = self.bench.databases.url(self.db_name, driver=False)
        conn = psycopg.connect(url, autocommit=True)
        horizon = timedelta(minutes=5)
        while not self._stop.is_set():
            now = self.clock.now()
            try:
                rows = conn.execute(SAMPLE_SQL, {"now": now}).fetchall()
                due, coming = conn.execute(
                    ENROLLMENTS_SQL, {"now": now, "horizon": now + horizon}
                ).fetchone()
            except psycopg.Error:
                conn = psycopg.connect(url, autocommit=True)
                continue
            statuses = {status: total for status, _, total in rows}
            pending = due + sum(n for status, n, _ in rows if status in PENDING_STATUSES)
            self.samples.append(Sample(time.time(), pending, coming, statuses))
            self._stop.wait(0.5)
        conn.close()

    def settled(self) -> bool:
        last = self.samples[-1] if self.samples else None
        return last is not None and last.pending == 0 and last.coming == 0

    def wait_for(self, condition, timeout: float, step: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(step)
        return False

    def settle(self, after: float, deadline: float) -> bool:
        """Wait until, after `after` (wall time), nothing is due or coming due soon and
        the providers' webhooks have all been delivered; False if `deadline` passed."""

        def done() -> bool:
            last = self.samples[-1] if self.samples else None
            return last is not None and last.at > after + 1 and self.settled() and self.pump.idle()

        ok = self.wait_for(done, max(0.0, deadline - time.time()), step=0.25)
        if ok:  # the webhooks just posted settle what they name; one more look
            time.sleep(WEBHOOK_LAG + 1)
        return ok

    # the fakes' logs -----------------------------------------------------------------
    def texts(self) -> list:
        """Every Twilio messages.create the fake saw (any answer)."""
        return [r for r in self.twilio.requests if r.method == "POST" and r.form is not None]

    def mails(self) -> list:
        return [r for r in self.sendgrid.requests if r.path == "/v3/mail/send" and r.json]


def _group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def accepted(record) -> bool:
    return record.response is not None and record.response.status in (201, 202)


class Pump:
    """The providers' webhooks: a signed "delivered" for each message a fake accepted,
    WEBHOOK_LAG seconds later, retried until the web app takes it (as SendGrid retries;
    Twilio only on connection errors, but a lost callback would only leave a message
    unconfirmed, which the bench reports anyway)."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.texts_seen = 0
        self.mails_seen = 0
        self.waiting_texts: list = []
        self.waiting_events: list[dict] = []
        self.posted = 0

    def idle(self) -> bool:
        s = self.stack
        return (
            not self.waiting_texts
            and not self.waiting_events
            and self.texts_seen == len(s.texts())
            and self.mails_seen == len(s.mails())
        )

    def loop(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stack._stop.wait(0.5):
                self._collect()
                self._post(client)

    def _collect(self) -> None:
        s, ripe = self.stack, time.time() - WEBHOOK_LAG
        texts = s.texts()
        while self.texts_seen < len(texts) and texts[self.texts_seen].wall_time <= ripe:
            record = texts[self.texts_seen]
            if accepted(record):
                self.waiting_texts.append(record)
            self.texts_seen += 1
        mails = s.mails()
        while self.mails_seen < len(mails) and mails[self.mails_seen].wall_time <= ripe:
            record = mails[self.mails_seen]
            if accepted(record):
                message_id = record.response.headers.get("X-Message-Id", "x")
                for n, p in enumerate(record.json.get("personalizations", [])):
                    self.waiting_events.append(
                        {
                            "email": p["to"][0]["email"],
                            "event": "delivered",
                            "sg_event_id": uuid.uuid4().hex,
                            "sg_message_id": f"{message_id}.filter0001.{n}",
                            REF_ARG: (p.get("custom_args") or {}).get(REF_ARG),
                        }
                    )
            self.mails_seen += 1

    def _post(self, client: httpx.Client) -> None:
        s = self.stack
        validator = RequestValidator(TOKEN)
        still = []
        for record in self.waiting_texts:
            form = record.form
            url = form.get("StatusCallback")
            if not url:
                continue
            params = {
                "MessageSid": record.response.body["sid"],
                "SmsSid": record.response.body["sid"],
                "MessageStatus": "delivered",
                "SmsStatus": "delivered",
                "AccountSid": SID,
                "From": form.get("From") or FROM_NUMBER,
                "To": form["To"],
            }
            signature = validator.compute_signature(url, params)
            try:
                answer = client.post(url, data=params, headers={"X-Twilio-Signature": signature})
                ok = answer.status_code < 300
            except httpx.HTTPError:
                ok = False
            if ok:
                self.posted += 1
            else:
                still.append(record)
        self.waiting_texts = still
        while self.waiting_events:
            batch = self.waiting_events[:500]
            now = int(s.clock.now().timestamp())
            for event in batch:
                event.setdefault("timestamp", now)
            body = json.dumps(batch).encode()
            stamp = str(now)
            signature = base64.b64encode(
                s.sg_private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            ).decode()
            try:
                answer = client.post(
                    s.public("/webhooks/sendgrid/events"),
                    content=body,
                    headers={
                        SIGNATURE_HEADER: signature,
                        TIMESTAMP_HEADER: stamp,
                        "Content-Type": "application/json",
                    },
                )
                ok = answer.status_code < 300
            except httpx.HTTPError:
                ok = False
            if not ok:
                return  # the whole batch again next round, as SendGrid does
            self.posted += len(batch)
            del self.waiting_events[: len(batch)]


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
