"""Several schedulers and workers on one host, as real processes on PostgreSQL and Redis:
one scheduler leads and publishes, a standby takes over within the bound the settings
give when the leader is SIGKILLed, workers get names of their own, and `drip health`
says whether this host's worker and scheduler are alive."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from campaigns.clock import SystemClock
from campaigns.db import make_engine, make_session_factory
from campaigns.delivery.leadership import LEADING, STANDBY, read_leadership
from campaigns.models import SchedulerInstance
from settings import load_settings
from tests.stack import Stack
from workers.app import make_app
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
