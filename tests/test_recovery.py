"""Fast, quiet recovery with the shipped timing settings (TICK_SECONDS 5, REAP_SECONDS 10,
REQUEUE_AFTER_SECONDS 30), with real Celery workers on PostgreSQL and Redis:

- Redis restarted mid-run (no persistence: every queued task lost): the backlog starts
  draining within 30 s of Redis being back, and nothing is sent twice;
- a worker SIGKILLed mid-batch: the rest of its batch is sent again within a few ticks,
  its in-flight texts are looked up at Twilio after their lease, nothing is sent twice;
- fake Twilio and SendGrid answering 500 for a fifth of the requests: nothing is left
  unconfirmed that the provider can answer for;
- Redis down while texts are being sent: the rate at the fake Twilio stays within the
  global setting;
- the reaper's log line says what it did once, with the right counts.

The Redis that gets restarted is a private `redis-server` on a free port, so other tests
on the machine keep theirs. Each test prints its figures (pytest -s shows them).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
import redis
from sqlalchemy import select

from campaigns.clock import ScaledClock
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.delivery import scheduler
from campaigns.delivery.reaper import Held
from campaigns.models import Message
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.states import MessageStatus
from tests.conftest import FIXTURES
from tests.fakes import FakeSendGrid, FakeTwilio, Response
from tests.helpers import add_and_enroll
from tests.services import redis_server
from tests.stack import VIRTUAL_EPOCH, Stack, delivery_lines, wait_until_done

pytestmark = pytest.mark.slow

SHIPPED = {"TICK_SECONDS": 5, "REAP_SECONDS": 10}  # REQUEUE_AFTER_SECONDS: its default, 30
SID, TOKEN, SG_KEY = "AC" + "9" * 32, "tok-recovery", "SG.recovery-test-key"


class PrivateRedis:
    """A redis-server of this test's own, without persistence, to kill and restart."""

    def __init__(self, folder: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder, self.proc = folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 (the server keeps it)
        self.proc = subprocess.Popen(
            [redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.folder)],
            stdout=log,
            stderr=log,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def stacks():
    made = []
    yield made
    for stack in made:
        stack.stop_all()


def env_for(stack):
    engine = make_engine(stack.database_url)
    clock = ScaledClock(stack.real_epoch, VIRTUAL_EPOCH, 1.0)
    registry = Registry(FIXTURES / "definitions", FIXTURES / "templates")
    return make_session_factory(engine), clock, registry, Policy()


def enroll(env, n, channels=("email", "sms")):
    factory, clock, registry, policy = env
    for i in range(n):
        contact = {}
        if "email" in channels:
            contact["email"] = f"person{i}@example.com"
        if "sms" in channels:
            contact["phone"] = f"+1202555{i:04d}"
        add_and_enroll(factory, clock, registry, policy, campaign="quick", **contact)


def wait_for(condition, what, timeout=60.0, logs=lambda: ""):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what} in {timeout}s\n{logs()}")
        time.sleep(0.05)
    return found


def written(outbox) -> collections.Counter:
    return collections.Counter(
        int(re.search(r"#(\d+)", line)[1])
        for line in delivery_lines(outbox)
        if line.endswith("written")
    )


def full_logs(stack) -> str:
    return "\n".join(p.read_text(errors="replace") for p in stack.tmp.glob("*.log"))


def queued_ids(factory) -> set[int]:
    with factory() as s:
        return set(s.scalars(select(Message.id).where(Message.status == MessageStatus.QUEUED)))


def twilio_refs(fake) -> collections.Counter:
    return collections.Counter(
        unquote(f["StatusCallback"].rsplit("ref=", 1)[1]).rpartition(".")[0]
        for f in fake.sent_messages()
    )


def twilio_env(fake, **extra):
    return {
        "SMS_PROVIDER": "twilio",
        "TWILIO_API_BASE_URL": fake.url,
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM_NUMBER": "+15557650002",
        "PUBLIC_BASE_URL": "https://care.example",
        "NO_PROXY": "127.0.0.1,localhost",
        **extra,
    }


def test_redis_restart_backlog_drains_within_30s_and_nothing_twice(
    tmp_path, clean_pg_url, private_redis, stacks
):
    stack = Stack(tmp_path, clean_pg_url, private_redis.url)
    stacks.append(stack)
    env = env_for(stack)
    enroll(env, 120)  # 480 messages
    stack.start_worker("w1", concurrency=2, OUTBOX_SEND_DELAY=0.03, **SHIPPED)
    wait_for(lambda: len(written(stack.outbox)) >= 60, "sending under way", logs=stack.logs)
    private_redis.kill()  # every queued and unacknowledged task is gone with it
    time.sleep(5)
    private_redis.start()
    back = time.monotonic()
    backlog = queued_ids(env[0])  # waiting for tasks the broker no longer has
    assert backlog, "nothing was waiting when Redis came back"
    wait_for(
        lambda: backlog & set(written(stack.outbox)),
        "the backlog draining",
        timeout=60,
        logs=stack.logs,
    )
    resumed = time.monotonic() - back
    wait_for(lambda: backlog <= set(written(stack.outbox)), "the backlog drained", timeout=120)
    drained = time.monotonic() - back
    rows = wait_until_done(env[0], expected_messages=480, timeout=120)
    calls = written(stack.outbox)
    logs = full_logs(stack)
    print(
        f"\nredis restart (5 s down, shipped timing): {len(backlog)} messages waiting when it "
        f"came back; backlog started draining after {resumed:.1f} s, drained after "
        f"{drained:.1f} s; {sum(calls.values())} provider calls for {len(calls)} messages"
    )
    assert resumed <= 30, logs[-4000:]
    assert {m.status for m in rows} <= {MessageStatus.SENT, MessageStatus.SKIPPED}
    assert set(calls.values()) == {1} and not any(
        "duplicate" in line for line in delivery_lines(stack.outbox)
    )
    # Said once: no traceback per task beat could not publish; the reaper's line counts.
    assert "Message Error" not in logs
    assert logs.count("broker unreachable") <= 2 and "broker back after" in logs
    requeued = [int(n) for n in re.findall(r"reaper: requeued (\d+) lost", logs)]
    assert requeued and sum(requeued) >= len(backlog) * 0.5, logs[-4000:]


def test_killed_worker_work_is_sent_again_within_a_few_ticks(
    tmp_path, clean_pg_url, redis_url, stacks
):
    stack = Stack(tmp_path, clean_pg_url, redis_url)
    stacks.append(stack)
    env = env_for(stack)
    enroll(env, 40, channels=("sms",))
    with FakeTwilio(account_sid=SID, auth_token=TOKEN, clock=env[1].now) as fake:
        fake.always(Response(delay=0.1))  # a slow API: batches take a while
        settings = twilio_env(
            fake,
            SMS_RATE_PER_SECOND=40,
            SMS_RATE_BURST=2,
            SMS_BATCH_SIZE=20,
            TWILIO_CONCURRENCY=2,
            LEASE_SECONDS=15,
            UNCONFIRMED_LOOKUP_SECONDS=5,
            **SHIPPED,
        )
        doomed = stack.start_worker("doomed", concurrency=2, **settings)
        wait_for(lambda: len(fake.sent_messages()) >= 6, "texts under way", logs=stack.logs)
        stack.kill(doomed)
        killed = time.monotonic()
        with env[0]() as s:
            leased = set(
                s.scalars(select(Message.id).where(Message.status == MessageStatus.SENDING))
            )
        left = queued_ids(env[0])  # the rest of its batches: no live task holds them
        stack.start_worker("survivor", concurrency=2, **settings)

        def sent(ids):
            with env[0]() as s:
                return ids and set(
                    s.scalars(
                        select(Message.id).where(
                            Message.id.in_(ids), Message.status == MessageStatus.SENT
                        )
                    )
                ) == set(ids)

        wait_for(lambda: sent(left), "the dead worker's batches sent", timeout=90)
        resent_after = time.monotonic() - killed
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with env[0]() as s:
                rows = s.scalars(select(Message).where(Message.channel == "sms")).all()
            if len(rows) == 80 and all(m.status == MessageStatus.SENT for m in rows):
                break
            time.sleep(0.3)
        refs = twilio_refs(fake)
    logs = full_logs(stack)
    print(
        f"\nworker SIGKILLed: {len(left)} queued messages of its batches sent again within "
        f"{resent_after:.1f} s; {len(leased)} in flight settled by look-up; "
        f"{sum(refs.values())} texts at Twilio for {len(refs)} messages"
    )
    assert resent_after <= 50, logs[-4000:]
    assert {m.status for m in rows} == {MessageStatus.SENT}, collections.Counter(
        m.status for m in rows
    )
    assert len(refs) == 80 and set(refs.values()) == {1}, "a text went to Twilio twice"


def test_a_fifth_of_500s_leaves_nothing_unconfirmed_the_provider_can_answer(
    tmp_path, clean_pg_url, redis_url, stacks
):
    stack = Stack(tmp_path, clean_pg_url, redis_url)
    stacks.append(stack)
    env = env_for(stack)
    enroll(env, 40)  # 160 messages: 80 emails, 80 texts
    with (
        FakeTwilio(account_sid=SID, auth_token=TOKEN, clock=env[1].now) as twilio,
        FakeSendGrid(api_key=SG_KEY) as sendgrid,
    ):
        twilio.fail_creates(0.2, created_share=0.5)
        sendgrid.fail_sends(0.2)
        settings = twilio_env(
            twilio,
            EMAIL_PROVIDER="sendgrid",
            SENDGRID_API_KEY=SG_KEY,
            SENDGRID_API_HOST=sendgrid.url,
            SMS_RATE_PER_SECOND=100,
            SMS_RATE_BURST=10,
            EMAIL_BATCH_SIZE=2,
            RETRY_BASE_SECONDS=1,
            RETRY_CAP_SECONDS=3,
            MAX_ATTEMPTS=12,
            UNCONFIRMED_LOOKUP_SECONDS=3,
            REAP_SECONDS=2,
        )
        stack.start_worker("w1", concurrency=2, **settings)
        rows = wait_until_done(env[0], expected_messages=160, timeout=100)
        refs = twilio_refs(twilio)
        mails = collections.Counter(
            p["custom_args"]["drip_ref"] for p in sendgrid.personalizations()
        )
        created_then_500 = sum(made for _, made in twilio.failed_creates)
        twilio_500s, sendgrid_500s = len(twilio.failed_creates), sendgrid.failed_sends
    reasons = collections.Counter(m.reason_code for m in rows)
    statuses = collections.Counter(m.status for m in rows)
    print(
        f"\nproviders answering 500 a fifth of the time: twilio {twilio_500s} 500s "
        f"({created_then_500} after creating the text), sendgrid {sendgrid_500s} 500s; "
        f"texts settled by look-up: {reasons['confirmed_by_lookup']} found at Twilio, "
        f"{twilio_500s - created_then_500} never received and sent again; left unconfirmed: "
        f"{statuses[MessageStatus.UNCONFIRMED]}"
    )
    assert twilio_500s and sendgrid_500s and created_then_500
    assert statuses[MessageStatus.UNCONFIRMED] == 0, statuses
    assert set(statuses) <= {MessageStatus.SENT, MessageStatus.SKIPPED}, statuses
    assert len(refs) == 80 and set(refs.values()) == {1}, "a text went to Twilio twice"
    assert len(mails) == 80 and set(mails.values()) == {1}, "an email was accepted twice"


def test_rate_stays_within_the_global_setting_while_redis_is_down(
    tmp_path, clean_pg_url, private_redis, stacks
):
    rate, burst = 10, 2
    stack = Stack(tmp_path, clean_pg_url, private_redis.url)
    stacks.append(stack)
    env = env_for(stack)
    enroll(env, 240, channels=("sms",))
    with FakeTwilio(account_sid=SID, auth_token=TOKEN, clock=env[1].now) as fake:
        settings = twilio_env(
            fake,
            SMS_RATE_PER_SECOND=rate,
            SMS_RATE_BURST=burst,
            SMS_BATCH_SIZE=60,
            # The floor at 1: the share comes from the processes seen sharing the bucket.
            RATE_LIMIT_PROCESSES=1,
            **SHIPPED,
        )
        for name in ("w1", "w2"):
            stack.start_worker(name, concurrency=2, **settings)
        wait_for(lambda: len(fake.requests) >= 3 * rate, "texts under way", logs=stack.logs)
        time.sleep(2)  # every process has taken tokens from the shared bucket by now
        private_redis.kill()
        down = time.monotonic()
        time.sleep(12)
        up = time.monotonic()
        private_redis.start()
        stamps = [r.received for r in fake.requests if r.method == "POST" and down <= r.received]
    during = [t for t in stamps if t < up]
    windows = [sum(1 for u in during if t <= u < t + 1.0) for t in during]
    average = len(during) / (up - down)
    logs = full_logs(stack)
    print(
        f"\nredis down 12 s, {rate}/s global (burst {burst}), 4 sending processes: "
        f"{len(during)} texts, {average:.1f}/s on average, at most {max(windows, default=0)} "
        "in any one second"
    )
    assert during, "nothing was sent while Redis was down: the test proves nothing"
    # The token bucket's own bound over the outage (burst + rate * T), plus one token per
    # process for its own bucket starting full at the switch; the same over any second.
    # (Before: each process fell back to the full rate, 4 x 10/s.)
    assert len(during) <= burst + 4 + rate * (up - down), logs[-3000:]
    assert max(windows) <= rate + burst + 4, logs[-3000:]
    assert "limiting this process to 2.5/s (1/4 of 10/s)" in logs


def test_reaper_line_counts_what_it_did_once(factory, clock, registry, policy, outbox, caplog):
    from campaigns.delivery.claiming import claim_due
    from workers.tasks import log_reaped

    for i in range(3):
        add_and_enroll(factory, clock, registry, policy, email=f"p{i}@example.com")
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
        first = s.get(Message, work.email[0])
        first.status, first.lease_until = MessageStatus.SENDING, clock.now()
    policy = dataclasses.replace(policy, requeue_after=timedelta(seconds=30))  # the default
    clock.advance(seconds=40)  # the outbox wrote nothing: a look-up says "never received"
    dispatched = []
    providers = {"email": outbox, "sms": outbox}
    held = Held(waiting=frozenset(), taken=frozenset({work.email[1]}))
    result = scheduler.reap_pass(factory, clock, policy, providers, dispatched.append, held)
    assert (result["requeued"], result["from_dead_workers"], result["lease_expired"]) == (2, 1, 1)
    clock.advance(seconds=31)
    in_queue = Held(waiting=frozenset(work.email[1:]))  # the two requeued wait on the queue
    again = scheduler.reap_pass(factory, clock, policy, providers, dispatched.append, in_queue)
    assert (again["requeued"], again["resent"]) == (0, 1)  # the look-up, counted apart
    with caplog.at_level(logging.DEBUG, logger="workers.tasks"):
        log_reaped(result)
        log_reaped(again)
        log_reaped({"requeued": 0, "undecided": 2})
        log_reaped({})
    lines = [r for r in caplog.records if r.name == "workers.tasks"]
    assert [r.levelname for r in lines] == ["WARNING", "INFO", "DEBUG"]
    assert (
        lines[0]
        .getMessage()
        .startswith("reaper: requeued 2 lost message(s) (1 from dead workers); 1 lease(s) expired")
    )
    assert "1 never received and resent" in lines[1].getMessage()
