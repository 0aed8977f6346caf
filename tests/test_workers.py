"""End to end with real Celery worker processes (never task_always_eager), on the
embedded stack (SQLite + file-system broker) and on PostgreSQL + Redis."""

import collections
import re
import time
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from campaigns.clock import ScaledClock
from campaigns.db import make_engine, make_session_factory
from campaigns.models import Message
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.states import WAITING, MessageStatus
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from tests.stack import VIRTUAL_EPOCH, delivery_lines, open_stack, wait_until_done

pytestmark = pytest.mark.slow


@pytest.fixture(params=["embedded", "redis-postgres"])
def stack(request, tmp_path):
    st = open_stack(request, tmp_path)
    yield st
    st.stop_all()


@pytest.fixture
def env(stack):
    engine = make_engine(stack.database_url)
    clock = ScaledClock(stack.real_epoch, VIRTUAL_EPOCH, 1.0)
    registry = Registry(FIXTURES / "definitions", FIXTURES / "templates")
    yield make_session_factory(engine), clock, registry, Policy()
    engine.dispose()


def enroll_people(env, n, campaign="quick", channels=("email", "sms")):
    factory, clock, registry, policy = env
    for i in range(n):
        contact = {}
        if "email" in channels:
            contact["email"] = f"person{i}@example.com"
        if "sms" in channels:
            contact["phone"] = f"+1202555{i:04d}"
        add_and_enroll(factory, clock, registry, policy, campaign=campaign, **contact)


def calls_per_message(outbox):
    return collections.Counter(re.search(r"#(\d+)", line)[1] for line in delivery_lines(outbox))


def written_ids(outbox) -> set[int]:
    """Messages the outbox has written (its provider call went through)."""
    lines = delivery_lines(outbox)
    return {int(re.search(r"#(\d+)", line)[1]) for line in lines if line.endswith("written")}


def leased(factory) -> set[int]:
    """Messages handed to a provider call whose answer is not recorded: `sending`, under a
    lease. Read after a kill, these were in flight when it landed (nothing else moves them
    until their lease runs out)."""
    with factory() as s:
        return set(
            s.scalars(
                select(Message.id).where(
                    Message.status == MessageStatus.SENDING, Message.lease_token.is_not(None)
                )
            )
        )


def wait_for(condition, what: str, timeout: float = 60.0, logs=lambda: ""):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what} in {timeout}s\n{logs()}")
        time.sleep(0.02)
    return found


def mid_chunk(leased_ids: set[int], called: set[int]) -> bool:
    """A leased chunk some of whose provider calls happened and at least two did not: the
    last of those is one full provider delay (0.15 s) away, ample time for the kill to land
    before the chunk's answers are recorded."""
    return bool(leased_ids & called) and len(leased_ids - called) >= 2


def test_sequence_runs_to_the_end(stack, env):
    enroll_people(env, 5)
    stack.start_worker("w1")
    rows = wait_until_done(env[0], expected_messages=5 * 4)
    assert collections.Counter(m.status for m in rows) == {MessageStatus.SENT: 20}, stack.logs()
    assert len(list((stack.outbox / "email").iterdir())) == 10
    assert len(list((stack.outbox / "sms").iterdir())) == 10
    assert set(calls_per_message(stack.outbox).values()) == {1}


def test_two_workers_and_flooded_ticks_send_each_step_once(stack, env):
    enroll_people(env, 30)
    app_settings = stack.settings()
    from workers.app import make_app

    app = make_app(app_settings)
    stack.start_worker("w1")
    stack.start_worker("w2")
    for _ in range(30):  # far more ticks than beat would ever send, racing each other
        app.send_task("drip.tick")
    rows = wait_until_done(env[0], expected_messages=30 * 4)
    keys = [(m.enrollment_id, m.step_key, m.channel) for m in rows]
    assert len(keys) == len(set(keys)) == 120
    calls = calls_per_message(stack.outbox)
    assert len(calls) == 120 and set(calls.values()) == {1}, stack.logs()
    assert not any("duplicate" in line for line in delivery_lines(stack.outbox))


def test_worker_killed_mid_batch_every_step_ends_once(stack, env):
    enroll_people(env, 24, channels=("sms",))
    # Batches of 8 texts in chunks of 4, paced only by the outbox's 0.15 s per text: a
    # chunk is in flight for 0.6 s, and the kill waits for one to be part-way through.
    slow = {
        "OUTBOX_SEND_DELAY": 0.15,
        "SMS_BATCH_SIZE": 8,
        "SMS_RATE_BURST": 4,
        "SMS_RATE_PER_SECOND": 1000,
        "LEASE_SECONDS": 4,
        "REQUEUE_AFTER_SECONDS": 4,
        # The killed chunk is looked up at the outbox right after its lease; its people
        # wait for that before their next step (invariant 10).
        "UNCONFIRMED_LOOKUP_SECONDS": 1,
    }
    first = stack.start_worker("doomed", concurrency=1, **slow)
    wait_for(
        lambda: mid_chunk(leased(env[0]), written_ids(stack.outbox)),
        "a chunk part-way through its provider calls",
        logs=stack.logs,
    )
    stack.kill(first)  # SIGKILL to the whole process group, mid-chunk; returns once all are gone
    in_flight = leased(env[0])
    assert in_flight, "nothing was in flight at the kill"
    written = written_ids(stack.outbox)
    assert in_flight & written and in_flight - written, ("not mid-chunk", in_flight, written)
    stack.start_worker("survivor", concurrency=2, **slow)
    # Each person: texts for steps one and three; step two (email only) ends skipped, since
    # it reaches them on no channel.
    rows = wait_until_done(env[0], expected_messages=24 * 3, timeout=120)
    sent = [m for m in rows if m.status == MessageStatus.SENT]
    skipped = [m for m in rows if m.status == MessageStatus.SKIPPED]
    assert len(rows) == 72 and len(sent) == 48 and len(skipped) == 24
    assert {m.channel for m in sent} == {"sms"} and {m.reason for m in skipped} == {
        "no email address"
    }
    written = collections.Counter(
        re.search(r"#(\d+)", line)[1]
        for line in delivery_lines(stack.outbox)
        if line.endswith("written")
    )
    assert len(written) == len(sent) and set(written.values()) == {1}, stack.logs()
    assert len(list((stack.outbox / "sms").iterdir())) == len(sent)
    assert all(m.reason for m in rows)


def called(factory, fake) -> set[int]:
    """Messages whose request reached the fake Twilio (recorded on arrival, before its
    delay), found by the public token in their signed status-callback reference."""
    tokens = {
        unquote(r.form["StatusCallback"].rsplit("ref=", 1)[1]).rpartition(".")[0]
        for r in fake.requests
        if r.form and "StatusCallback" in r.form
    }
    if not tokens:
        return set()
    with factory() as s:
        return set(s.scalars(select(Message.id).where(Message.public_token.in_(tokens))))


def test_worker_killed_mid_twilio_batch_never_texts_anyone_twice(stack, env):
    """Only the chunk in flight can be undecided, the rest are handed back and sent once;
    the chunk's texts are looked up at Twilio after their lease: those that reached it are
    sent (with their SID), those that did not are sent again, once. A person whose first
    text is unconfirmed waits for it to be settled before their second (invariant 10)."""
    from tests.fakes import FakeTwilio
    from tests.fakes.server import Response

    enroll_people(env, 16, channels=("sms",))
    sid = "AC" + "7" * 32
    with FakeTwilio(account_sid=sid, auth_token="tok", clock=env[1].now) as fake:
        fake.always(Response(delay=0.15))  # a slow API, so the kill lands mid-chunk
        twilio = {
            "SMS_PROVIDER": "twilio",
            "TWILIO_API_BASE_URL": fake.url,
            "TWILIO_ACCOUNT_SID": sid,
            "TWILIO_AUTH_TOKEN": "tok",
            "TWILIO_FROM_NUMBER": "+15557650002",
            "SMS_RATE_BURST": 4,
            "SMS_RATE_PER_SECOND": 1000,
            "TWILIO_CONCURRENCY": 1,
            "LEASE_SECONDS": 4,
            "REQUEUE_AFTER_SECONDS": 4,
            "UNCONFIRMED_LOOKUP_SECONDS": 1,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        doomed = stack.start_worker("doomed", concurrency=1, **twilio)
        wait_for(
            lambda: mid_chunk(leased(env[0]), called(env[0], fake)),
            "a chunk part-way through its Twilio calls",
            logs=stack.logs,
        )
        stack.kill(doomed)  # returns once every process of the worker is gone
        in_flight = leased(env[0])
        assert in_flight, "nothing was in flight at the kill"
        reached = called(env[0], fake)
        assert in_flight & reached and in_flight - reached, ("not mid-chunk", in_flight, reached)
        stack.start_worker("survivor", concurrency=2, **twilio)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with env[0]() as s:
                rows = s.scalars(select(Message).where(Message.channel == "sms")).all()
            if len(rows) == 32 and not [
                m
                for m in rows
                if m.status in WAITING + (MessageStatus.SENDING, MessageStatus.UNCONFIRMED)
            ]:
                break
            time.sleep(0.3)
        texts = fake.sent_messages()
    refs = [t["StatusCallback"].rsplit("ref=", 1)[1] for t in texts]
    assert len(refs) == len(set(refs)), "a text went to Twilio twice"
    statuses = collections.Counter(m.status for m in rows)
    assert statuses == {MessageStatus.SENT: 32}, (statuses, stack.logs())
    assert len(in_flight) <= 4  # at most the one chunk that was in flight was undecided
    with env[0]() as s:
        looked_up = s.scalars(
            select(Message.reason_code).where(Message.id.in_(in_flight & reached))
        ).all()
    assert set(looked_up) == {"confirmed_by_lookup"}  # those that reached Twilio: found
