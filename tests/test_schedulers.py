"""Several schedulers and workers on one host, as real processes on PostgreSQL and Redis:
one scheduler leads and publishes, a standby takes over within the bound the settings
give when the leader is SIGKILLed, workers get names of their own, and `drip health`
says whether this host's worker and scheduler are alive."""

from __future__ import annotations

import os
import signal
import socket
import time
from urllib.parse import urlsplit

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import select

from campaigns.clock import SystemClock
from campaigns.db import make_engine, make_session_factory
from campaigns.delivery.leadership import LEADING, STANDBY, read_leadership
from campaigns.models import SchedulerInstance
from settings import load_settings
from tests.faultproxy import FaultProxy
from tests.stack import Stack
from workers.app import make_app
from workers.beat import LeaderOnlyProducer, NotLeading
from workers.cli import main
from workers.cli.context import Drip

LEASE, RENEW, TICK = 3.0, 0.5, 0.5
SETTINGS = {
    "SCHEDULER_LEASE_SECONDS": LEASE,
    "SCHEDULER_RENEW_SECONDS": RENEW,
    "TICK_SECONDS": TICK,
}
# A dead leader renewed at most RENEW before it died and had published a tick at most
# TICK before; its lease runs LEASE from that renewal, and a standby looks every RENEW
# and publishes its first tick at the turn it takes the lease. One second more for two
# Python processes on a shared two-core machine.
FAILOVER_BOUND = LEASE + RENEW + TICK + 1.0


@pytest.fixture
def stack(tmp_path, clean_pg_url, redis_url):
    st = Stack(tmp_path, clean_pg_url, redis_url)
    engine = make_engine(clean_pg_url)
    st.factory = make_session_factory(engine)
    yield st
    st.stop_all()
    engine.dispose()


def rows(stack) -> dict[int, SchedulerInstance]:
    with stack.factory() as s:
        return {r.pid: r for r in s.scalars(select(SchedulerInstance)).all()}


def wait_for(predicate, timeout: float, what: str, stack, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"{what} not within {timeout}s\n{stack.logs()}")


def start_two_schedulers(stack, **settings):
    a = stack.start_drip("beat-a", "beat", **(SETTINGS | settings))
    b = stack.start_drip("beat-b", "beat", **(SETTINGS | settings))

    def both_seen_and_one_ticked():
        r = rows(stack)
        return len(r) == 2 and any(x.last_tick_at for x in r.values()) and r

    wait_for(both_seen_and_one_ticked, 30, "two schedulers, one ticking", stack)
    return {a.pid: a, b.pid: b}


def test_of_two_schedulers_only_the_leader_publishes_ticks(stack):
    procs = start_two_schedulers(stack)
    time.sleep(4 * TICK + 2 * RENEW)
    r = rows(stack)
    assert set(r) == set(procs)
    leaders = [pid for pid, x in r.items() if x.role == LEADING]
    standbys = [pid for pid, x in r.items() if x.role == STANDBY]
    assert len(leaders) == 1 and len(standbys) == 1, r
    assert r[standbys[0]].last_tick_at is None  # it never published one
    now = SystemClock().now()
    assert (now - r[leaders[0]].last_tick_at).total_seconds() < 2 * TICK + 1
    with stack.factory() as s:
        state = read_leadership(s, SystemClock(), LEASE)
    assert state.leader == f"{socket.gethostname()}:{leaders[0]}"
    assert all(i.heartbeat_age_seconds < 2 * RENEW + 1 for i in state.instances)

    drip = Drip(stack.settings(**SETTINGS))
    result = CliRunner().invoke(main, ["health", "beat"], obj=drip)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_a_standby_takes_over_within_the_bound_when_the_leader_is_killed(stack):
    procs = start_two_schedulers(stack)
    time.sleep(2 * TICK)
    r = rows(stack)
    (old,) = [pid for pid, x in r.items() if x.role == LEADING]
    (new,) = [pid for pid in r if pid != old]

    stack.kill(procs[old])
    old_last_tick = rows(stack)[old].last_tick_at  # final: nothing of it runs any more

    # The new leader's row gets its first tick time the moment it publishes one; polled
    # far faster than ticks come, so the first value seen is its first tick.
    first_tick = wait_for(
        lambda: rows(stack)[new].last_tick_at, FAILOVER_BOUND + 5, "the standby's first tick", stack
    )
    gap = (first_tick - old_last_tick).total_seconds()
    print(
        f"\nfailover: last tick of the killed leader -> first tick of the new one: {gap:.2f}s "
        f"(lease {LEASE:g}s, renew {RENEW:g}s, tick {TICK:g}s, bound {FAILOVER_BOUND:g}s)"
    )
    assert 0 < gap <= FAILOVER_BOUND
    # It waited for the lease to run out: never before LEASE - RENEW - TICK after the
    # old leader's last tick (its last renewal came at most RENEW + TICK earlier).
    assert gap >= LEASE - RENEW - TICK
    with stack.factory() as s:
        state = read_leadership(s, SystemClock(), LEASE)
    assert state.leader == f"{socket.gethostname()}:{new}" and state.term == 2
    assert {i.pid: i.role for i in state.instances}[new] == LEADING


def test_two_workers_on_one_host_are_two_nodes(stack):
    for name in ("worker-a", "worker-b"):
        stack.start_drip(name, "worker", "-Q", "schedule", "-c", "1", "-l", "warning")
    # One named as if on another host: `drip health worker` here must not count it.
    stack.start_drip("other", "worker", "-Q", "schedule", "-c", "1", "-n", "w@elsewhere")
    app = make_app(stack.settings())
    host = socket.gethostname()

    def nodes():
        return {n for answer in app.control.ping(timeout=1.0) for n in answer}

    try:
        seen = wait_for(lambda: len(found := nodes()) >= 3 and found, 60, "three nodes", stack)
    finally:
        app.close()
    local = {n for n in seen if n != "w@elsewhere"}
    assert len(seen) == 3 and len(local) == 2, seen
    assert all(n.startswith("worker-") and n.endswith(f"@{host}") for n in local), seen
    assert "DuplicateNodenameWarning" not in stack.logs()

    result = CliRunner().invoke(main, ["health", "worker"], obj=Drip(stack.settings()))
    assert result.exit_code == 0, result.output
    assert sorted(result.output.removeprefix("ok: ").strip().split(", ")) == sorted(local)


def test_health_fails_in_one_line_when_nothing_runs_here(stack):
    drip = Drip(stack.settings())
    result = CliRunner().invoke(main, ["health", "worker", "--timeout", "0.5"], obj=drip)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: no worker on {socket.gethostname()} answered a ping within 0.5s"
    ]
    result = CliRunner().invoke(main, ["health", "beat"], obj=Drip(stack.settings()))
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "no scheduler heartbeat on" in result.output


def test_health_worker_with_the_broker_away_says_so(stack):
    settings = stack.settings(REDIS_URL="redis://127.0.0.1:1/0")
    result = CliRunner().invoke(main, ["health", "worker", "--timeout", "0.5"], obj=Drip(settings))
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "broker unreachable" in result.output


def test_a_paused_leader_does_not_publish_when_it_wakes_after_a_takeover(stack):
    procs = start_two_schedulers(stack)
    time.sleep(2 * TICK)
    r = rows(stack)
    (old,) = [pid for pid, x in r.items() if x.role == LEADING]
    (new,) = [pid for pid in r if pid != old]

    os.kill(old, signal.SIGSTOP)  # a long GC pause, a frozen VM
    try:
        paused_tick = rows(stack)[old].last_tick_at
        wait_for(lambda: rows(stack)[new].last_tick_at, LEASE * 3, "the takeover", stack)
    finally:
        os.kill(old, signal.SIGCONT)
    # Awake, it finds its lease taken at its next turn and stands by, publishing nothing.
    wait_for(
        lambda: rows(stack)[old].role == STANDBY, 10 * RENEW, "the old leader standing by", stack
    )
    time.sleep(4 * TICK)
    r = rows(stack)
    assert r[old].last_tick_at == paused_tick
    assert r[new].role == LEADING and procs[old].poll() is None


def test_a_leader_stopped_cleanly_hands_over_without_waiting_for_its_lease(stack):
    lease = 6.0  # long, so a takeover well before it can only come from the release
    procs = start_two_schedulers(stack, SCHEDULER_LEASE_SECONDS=lease)
    time.sleep(2 * TICK)
    r = rows(stack)
    (old,) = [pid for pid, x in r.items() if x.role == LEADING]
    (new,) = [pid for pid in r if pid != old]
    stopped = time.monotonic()
    os.kill(old, signal.SIGTERM)  # what `docker stop` sends
    wait_for(lambda: rows(stack)[new].last_tick_at, lease, "the standby's first tick", stack)
    took = time.monotonic() - stopped
    print(f"\nclean stop: the standby published its first tick {took:.2f}s after SIGTERM")
    assert took < RENEW + TICK + 1.5 < lease - RENEW
    assert procs[old].wait(timeout=10) == 0
    assert rows(stack)[old].role == STANDBY


def test_health_beat_with_the_database_away_says_so_in_one_line():
    settings = load_settings(
        environment="test",
        secret_key="health-test-secret-key-0123456789abcdef",
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
    )
    result = CliRunner().invoke(main, ["health", "beat"], obj=Drip(settings))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: database unreachable (OperationalError)"]


def test_health_beat_blames_the_database_only_for_a_database_error(tmp_path):
    from campaigns.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'drip.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:  # a row no scheduler would write: its time does not parse
        conn.exec_driver_sql(
            "INSERT INTO scheduler_instances (holder, host, pid, role, started_at, last_seen)"
            " VALUES ('h:1', 'h', 1, 'leading', 'not a time', 'not a time')"
        )
    engine.dispose()
    settings = load_settings(
        environment="test", secret_key="health-test-secret-key-0123456789abcdef", database_url=url
    )
    result = CliRunner().invoke(main, ["health", "beat"], obj=Drip(settings))
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: could not read the schedulers' heartbeats (ValueError: "), line
    assert "database" not in line


def test_a_leader_cut_off_from_the_database_stops_publishing_before_its_lease_expires(
    tmp_path, clean_pg_url, redis_url
):
    """The leader's safety deadline (workers/beat.py): once its renewals fail it trusts
    its lease only until LEASE - RENEW after the last renewal began, so it is quiet before
    a standby could take the lease. Seen from the broker: nothing consumes the schedule
    queue here, so every tick or reap it publishes stays there to be counted."""
    server = urlsplit(clean_pg_url)
    with FaultProxy(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
        proxied = clean_pg_url.replace(server.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")
        stack = Stack(tmp_path, proxied, redis_url)
        settings = stack.settings(**SETTINGS)
        engine = make_engine(clean_pg_url)  # the test's own line to the database: never cut
        stack.factory = make_session_factory(engine)
        app = make_app(settings)
        broker = redis.Redis.from_url(redis_url)
        try:
            # Declared as a worker would: a message to a queue nobody declared is dropped.
            with app.connection_for_write() as conn:
                for queue in app.amqp.queues.values():
                    queue(conn.default_channel).declare()
            stack.start_drip("beat", "beat", **SETTINGS)

            def published() -> int:  # kombu's list for the queue, under the stack's prefix
                return broker.llen(f"{stack.redis_prefix}schedule")

            wait_for(lambda: published() >= 2, 30, "the leader's first publishes", stack)
            (row,) = rows(stack).values()
            assert row.role == LEADING

            cut = time.monotonic()
            proxy.cut(60)  # for the rest of the test
            at_cut = published()
            # Its last renewal began before the cut, so the deadline is at most
            # LEASE - RENEW after it; the lease itself runs out at most LEASE after it.
            time.sleep(max(cut + LEASE - time.monotonic(), 0))
            at_expiry = published()
            time.sleep(max(cut + LEASE + 4 * TICK + 1 - time.monotonic(), 0))
            later = published()
        finally:
            stack.stop_all()
            engine.dispose()
            app.close()
            broker.close()
    print(
        f"\ncut off: published {at_cut} before the cut, {at_expiry} by the latest expiry, "
        f"{later} {4 * TICK + 1:g}s after it"
    )
    assert at_expiry > at_cut, "it stopped at the first failed renewal, not at its deadline"
    assert later == at_expiry, f"published {later - at_expiry} after its lease could expire"
    logs = stack.logs()
    assert "database unreachable (" in logs and "is standby" in logs, logs


def test_the_schedulers_producer_checks_the_lease_as_the_last_thing_before_publishing():
    """A deadline that passes after apply_entry's check but before the message goes out
    still stops it (workers/beat.py LeaderOnlyProducer), on kombu's own in-memory broker."""
    from kombu import Connection, Queue

    queue = Queue("schedule", routing_key="schedule")
    with Connection("memory://") as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        producer = LeaderOnlyProducer(conn, auto_declare=False)
        trusted = [True]
        producer.leading = lambda: trusted[0]
        producer.publish({"n": 1}, routing_key="schedule", serializer="json")
        trusted[0] = False
        with pytest.raises(NotLeading):
            producer.publish({"n": 2}, routing_key="schedule", serializer="json")
        got = []
        while (message := bound.get(no_ack=True)) is not None:
            got.append(message.payload)
    assert got == [{"n": 1}]
