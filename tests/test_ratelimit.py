"""Token buckets: timing of the local and the Redis bucket, and two real worker processes
sharing one limit while texting through the real Twilio SDK to a fake Twilio."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
from sqlalchemy import text

from campaigns.clock import ScaledClock
from campaigns.db import make_engine, make_session_factory
from campaigns.delivery.providers import NoLimit
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.states import MessageStatus
from settings import load_settings
from tests.conftest import FIXTURES, TABLES
from tests.fakes import FakeTwilio
from tests.helpers import add_and_enroll
from tests.stack import VIRTUAL_EPOCH, Stack, wait_until_done
from workers.ratelimit import LocalBucket, RedisBucket, build_limiters


def grants(bucket, threads: int, each: int, n: int = 1) -> list[float]:
    """Monotonic times at which `acquire(n)` returned, across several threads."""
    times: list[float] = []
    lock = threading.Lock()

    def run():
        for _ in range(each):
            bucket.acquire(n)
            with lock:
                times.append(time.monotonic())

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    return sorted(times)


def assert_within_bucket(times: list[float], start: float, rate: float, burst: int):
    # A token bucket hands out at most burst + rate * t tokens in the first t seconds;
    # slow threads can only make grants later, never earlier, so this holds on a busy box.
    for k, t in enumerate(times, start=1):
        assert k <= burst + rate * (t - start) + 1e-6, (k, t - start)


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def key(redis_client):
    name = f"drip-test-ratelimit-{uuid.uuid4().hex}:bucket"
    yield name
    redis_client.delete(name)


def test_local_bucket_gives_the_burst_then_the_rate():
    bucket = LocalBucket(rate=20, burst=5)
    t0 = time.monotonic()
    bucket.acquire(5)
    assert time.monotonic() - t0 < 0.05  # the burst is there at once
    bucket.acquire(10)  # bigger than the burst: two pieces of 5, half a second
    assert 0.45 <= time.monotonic() - t0 < 1.0


def test_local_bucket_is_shared_by_threads():
    bucket = LocalBucket(rate=40, burst=4)
    t0 = time.monotonic()
    times = grants(bucket, threads=4, each=10)
    assert len(times) == 40
    assert_within_bucket(times, t0, rate=40, burst=4)
    assert times[-1] - t0 >= (40 - 4) / 40 - 0.02


def test_redis_bucket_timing(redis_client, key):
    bucket = RedisBucket(redis_client, key, rate=20, burst=5)
    t0 = time.monotonic()
    bucket.acquire(5)
    assert time.monotonic() - t0 < 0.1
    bucket.acquire(10)
    assert 0.45 <= time.monotonic() - t0 < 1.2
    ttl = redis_client.pttl(key)
    assert 0 < ttl <= 2000  # the key lets go once the bucket would be full again


def test_redis_bucket_is_one_limit_for_separate_clients(redis_url, key):
    # Separate connections stand in for separate worker processes.
    buckets = [
        RedisBucket(redis.Redis.from_url(redis_url), key, rate=30, burst=3) for _ in range(3)
    ]
    times: list[float] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def run(bucket):
        for _ in range(10):
            bucket.acquire(1)
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=run, args=(b,)) for b in buckets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    times.sort()
    assert len(times) == 30
    assert_within_bucket(times, t0, rate=30, burst=3)
    assert times[-1] - t0 >= (30 - 3) / 30 - 0.05  # one shared limit, not three


def test_redis_bucket_falls_back_to_a_local_limit_when_redis_is_down():
    settings = load_settings(
        redis_url="redis://127.0.0.1:1/0",
        sms_provider="twilio",  # nothing listens
        twilio_account_sid="AC" + "1" * 32,
        twilio_auth_token="t",
        twilio_from_number="+15550001111",
        sms_rate_per_second=20,
        sms_rate_burst=2,
    )
    bucket = build_limiters(settings)["sms"]
    t0 = time.monotonic()
    bucket.acquire(6)  # no exception: leased messages still go out, limited per process
    assert 0.18 <= time.monotonic() - t0 < 3


def test_build_limiters(redis_url):
    base = {
        "environment": "development",
        "twilio_account_sid": "AC" + "1" * 32,
        "twilio_auth_token": "t",
        "twilio_from_number": "+15550001111",
    }
    local = build_limiters(load_settings(sms_provider="twilio", **base))
    assert isinstance(local["email"], NoLimit)  # the local outbox has no rate to respect
    assert isinstance(local["sms"], LocalBucket) and (local["sms"].rate, local["sms"].burst) == (
        1.0,
        1,
    )
    shared = build_limiters(
        load_settings(
            sms_provider="twilio",
            email_provider="sendgrid",
            sendgrid_api_key="SG.x",
            redis_url=redis_url,
            redis_key_prefix="env1:",
            sms_rate_per_second=5,
            sms_rate_burst=3,
            **base,
        )
    )
    assert isinstance(shared["sms"], RedisBucket) and isinstance(shared["email"], RedisBucket)
    assert shared["sms"].key == "env1:ratelimit:twilio:+15550001111"
    assert shared["email"].key == "env1:ratelimit:sendgrid:care@lunara.example"
    assert (shared["sms"].rate, shared["sms"].burst) == (5.0, 3)


# ------------------------------------------- two real workers, one limit, a fake Twilio


@pytest.fixture
def stack(tmp_path, pg_url, redis_url):
    eng = make_engine(pg_url)
    with eng.begin() as conn:
        # channel_pauses too: a pause left by another test would stop these workers.
        conn.execute(
            text(f"TRUNCATE {', '.join(TABLES + ('channel_pauses',))} RESTART IDENTITY CASCADE")
        )
    eng.dispose()
    st = Stack(tmp_path, pg_url, redis_url)
    yield st
    st.stop_all()


def busiest(times: list[float]) -> int:
    """The most requests in any one-second window (sorted times; windows open at a request)."""
    return max(sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times))


@pytest.mark.slow
def test_two_workers_share_one_sms_limit(stack):
    rate, burst, people = 5, 5, 20
    engine = make_engine(stack.database_url)
    factory = make_session_factory(engine)
    clock = ScaledClock(stack.real_epoch, VIRTUAL_EPOCH, 1.0)
    registry = Registry(FIXTURES / "definitions", FIXTURES / "templates")
    for i in range(people):  # "quick" texts steps one and three: 40 texts
        add_and_enroll(
            factory, clock, registry, Policy(), campaign="quick", phone=f"+1202555{i:04d}"
        )
    sid = "AC" + "5" * 32
    with FakeTwilio(account_sid=sid, auth_token="tok") as fake:
        env = {
            "SMS_PROVIDER": "twilio",
            "TWILIO_API_BASE_URL": fake.url,
            "TWILIO_ACCOUNT_SID": sid,
            "TWILIO_AUTH_TOKEN": "tok",
            "TWILIO_FROM_NUMBER": "+15557650002",
            "SMS_RATE_PER_SECOND": rate,
            "SMS_RATE_BURST": burst,
            # The default batch size: send_batch takes tokens per chunk of `burst` texts.
            "NO_PROXY": "127.0.0.1,localhost",
        }
        stack.start_worker("w1", **env)
        stack.start_worker("w2", **env)
        try:
            # texts for steps one and three, and step two (email only) skipped: no address
            rows = wait_until_done(factory, expected_messages=people * 3, timeout=60)
        finally:
            engine.dispose()
        seen = sorted(r.received for r in fake.requests)
        forms = fake.sent_messages()

    texts = [m for m in rows if m.channel == "sms"]
    assert len(texts) == 40 and {m.status for m in texts} == {MessageStatus.SENT}, stack.logs()
    refs = [
        f["StatusCallback"].rsplit("ref=", 1)[1].split(".")[0] for f in forms
    ]  # token.signature
    assert len(seen) == 40 and sorted(refs) == sorted(m.public_token for m in texts)  # each once
    assert {m.provider_message_id[:2] for m in texts} == {"SM"}
    # A token bucket hands out at most burst + rate * T in any T seconds; the bucket refills
    # whenever the workers fall behind (between ticks), so the burst may recur, no more.
    # A text reaches the fake a few ms after its tokens were granted, and on a busy 2-core
    # box that delay varies, so allow 0.2 s of it (one text); per-process buckets give ~20.
    assert busiest(seen) <= burst + rate * 1.2, [round(t - seen[0], 3) for t in seen]
    # 40 texts at 5/s after a burst of 5 take 7 s; four per-process buckets would take ~1 s.
    assert seen[-1] - seen[0] >= 5.0
