"""The scheduler lease (campaigns.delivery.leadership) on SQLite and PostgreSQL: one
holder at a time, taken over only after it expires, handed over at once on release."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import text

from campaigns.db import (
    impatient_transaction,
    make_engine,
    make_scheduler_engine,
    make_session_factory,
    transaction,
)
from campaigns.delivery.leadership import (
    LEADING,
    STANDBY,
    read_leadership,
    record_tick,
    release,
    release_quickly,
    take_turn,
)

LEASE = 10.0


def turn(factory, clock, host, pid):
    with transaction(factory) as s:
        return take_turn(s, clock, host, pid, LEASE)


def state(factory, clock):
    with factory() as s:
        return read_leadership(s, clock, LEASE)


def test_one_leads_and_the_other_takes_over_only_once_the_lease_expired(factory, clock):
    assert turn(factory, clock, "a", 1) is True
    assert turn(factory, clock, "b", 2) is False
    clock.advance(seconds=LEASE - 1)
    assert turn(factory, clock, "b", 2) is False  # a's lease still runs
    assert turn(factory, clock, "a", 1) is True  # renewed: runs LEASE from now
    clock.advance(seconds=LEASE - 1)
    assert turn(factory, clock, "b", 2) is False
    st = state(factory, clock)
    assert st.leader == "a:1" and st.term == 1
    assert {i.holder: i.role for i in st.instances} == {"a:1": LEADING, "b:2": STANDBY}
    clock.advance(seconds=2)  # a stopped renewing: expired
    assert state(factory, clock).leader is None
    assert turn(factory, clock, "b", 2) is True
    assert turn(factory, clock, "a", 1) is False
    st = state(factory, clock)
    assert st.leader == "b:2" and st.term == 2
    assert {i.holder: i.role for i in st.instances} == {"a:1": STANDBY, "b:2": LEADING}


def test_release_hands_over_at_the_next_turn(factory, clock):
    assert turn(factory, clock, "a", 1)
    assert not turn(factory, clock, "b", 2)
    with transaction(factory) as s:
        release(s, clock, "b", 2)  # not the holder: changes nothing
    assert not turn(factory, clock, "b", 2)
    with transaction(factory) as s:
        release(s, clock, "a", 1)
    clock.advance(seconds=0.001)
    assert turn(factory, clock, "b", 2)


def test_heartbeat_and_last_tick_ages(factory, clock):
    assert turn(factory, clock, "a", 1)
    st = state(factory, clock)
    assert st.last_tick_age_seconds is None
    assert st.fresh_on("a", 1) and not st.fresh_on("b", 1)
    with transaction(factory) as s:
        record_tick(s, clock, "a", 1)
    clock.advance(seconds=4)
    st = state(factory, clock)
    assert st.last_tick_age_seconds == 4
    assert st.leader_heartbeat_age_seconds == 4
    assert not st.fresh_on("a", 3) and st.fresh_on("a", 5)
    assert st.instances[0].alive
    clock.advance(seconds=LEASE)  # no heartbeat for longer than a lease: gone
    st = state(factory, clock)
    assert not st.instances[0].alive and st.leader is None and st.standby == []


def test_schedulers_unseen_for_a_day_are_forgotten(factory, clock):
    turn(factory, clock, "old", 7)
    clock.advance(days=1, seconds=1)
    turn(factory, clock, "new", 8)
    assert [i.holder for i in state(factory, clock).instances] == ["new:8"]


def test_an_expired_lease_just_taken_is_not_taken_again(factory, clock):
    turn(factory, clock, "a", 1)
    clock.advance(seconds=LEASE + 1)
    # One after the other (SQLite serialises writers at BEGIN IMMEDIATE, so this is the
    # only order there): the standby that comes second finds the lease held, unexpired.
    assert turn(factory, clock, "b", 2) is True
    assert turn(factory, clock, "c", 3) is False
    st = state(factory, clock)
    assert st.leader == "b:2" and st.term == 2
    assert clock.now() + timedelta(seconds=LEASE) == st.expires_at


@pytest.fixture
def pg_factory(clean_pg_url):
    engine = make_engine(clean_pg_url)
    yield make_session_factory(engine)
    engine.dispose()


def race(factory, clock) -> dict[str, bool]:
    """Two standbys, b and c, each in its own session and thread, both past a barrier:
    b's take stays uncommitted while c's runs into it. c must be seen waiting on a lock
    (pg_stat_activity) before b commits; then both finish. Which took the lease, by name."""
    barrier = threading.Barrier(2, timeout=10)
    b_took, b_may_commit = threading.Event(), threading.Event()
    backends: dict[str, int] = {}
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def standby(name: str, pid: int) -> None:
        session = factory()
        try:
            backends[name] = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            barrier.wait()
            if name == "c":
                b_took.wait(10)
            results[name] = take_turn(session, clock, name, pid, LEASE)
            if name == "b":
                b_took.set()
                b_may_commit.wait(10)
            session.commit()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=standby, args=(n, p)) for n, p in (("b", 2), ("c", 3))]
    for t in threads:
        t.start()
    try:
        assert b_took.wait(10), errors
        deadline = time.monotonic() + 10
        waiting = None
        while time.monotonic() < deadline and waiting != "Lock":
            with factory() as s:
                waiting = s.execute(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": backends["c"]},
                ).scalar()
            time.sleep(0.02)
        assert waiting == "Lock", f"c never waited on b's row: {waiting}, {errors}"
        assert "c" not in results  # still inside its take
    finally:
        b_may_commit.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors, errors
    return results


def test_two_standbys_creating_the_first_lease_at_once_make_one_leader(pg_factory, clock):
    # No lease row yet: both find none to update and insert one; c's insert waits on b's
    # uncommitted row and fails once b commits.
    assert race(pg_factory, clock) == {"b": True, "c": False}
    st = state(pg_factory, clock)
    assert st.leader == "b:2" and st.term == 1
    assert {i.holder: i.role for i in st.instances} == {"b:2": LEADING, "c:3": STANDBY}


def test_two_standbys_taking_an_expired_lease_at_once_make_one_leader(pg_factory, clock):
    turn(pg_factory, clock, "a", 1)
    clock.advance(seconds=LEASE + 1)
    # Both see a's lease expired; c's UPDATE waits on the row b's holds, and PostgreSQL
    # re-checks c's condition on b's committed row: held and unexpired, so no match.
    assert race(pg_factory, clock) == {"b": True, "c": False}
    st = state(pg_factory, clock)
    assert st.leader == "b:2" and st.term == 2
    assert clock.now() + timedelta(seconds=LEASE) == st.expires_at


def test_release_never_waits_long_for_a_turn_holding_the_lease_row(factory, clock):
    """The release runs in the scheduler's SIGTERM handler, maybe while the turn it
    interrupted holds the lease row (PostgreSQL: its row lock; SQLite: the write lock):
    it gives up within about a second, raising nothing, and the lease runs out as after a
    crash. Once that turn is over, the release goes through."""
    assert turn(factory, clock, "a", 1)
    interrupted = factory()
    try:
        assert take_turn(interrupted, clock, "a", 1, LEASE)  # uncommitted: holds the row
        started = time.monotonic()
        released = release_quickly(factory, clock, "a", 1)
        waited = time.monotonic() - started
        assert released is False
        assert waited < 2.0, waited
    finally:
        interrupted.rollback()
        interrupted.close()
    assert state(factory, clock).leader == "a:1"  # nothing was written
    assert release_quickly(factory, clock, "a", 1) is True
    clock.advance(seconds=0.001)
    assert state(factory, clock).leader is None


def test_a_scheduler_frozen_mid_turn_does_not_hold_the_lease_row_for_ever(clean_pg_url, clock):
    """A leader frozen (SIGSTOP, a paused VM) inside its turn's transaction holds the
    lease row's lock while its connection lives. The scheduler's engine has PostgreSQL end
    such a session after a renewal interval idle in its transaction, so a standby's turn
    (which waits at most that long on a lock) takes the expired lease."""
    renew = 0.5
    engines = [make_scheduler_engine(clean_pg_url, renew) for _ in range(2)]
    frozen_side, standby_side = (make_session_factory(e) for e in engines)
    try:
        assert turn(frozen_side, clock, "a", 1)
        frozen = frozen_side()
        assert take_turn(frozen, clock, "a", 1, LEASE)  # mid-turn: the row is locked
        clock.advance(seconds=LEASE + 1)
        time.sleep(3 * renew)  # frozen: nothing more from it
        with impatient_transaction(standby_side, renew) as s:
            assert take_turn(s, clock, "b", 2, LEASE)
        with contextlib.suppress(Exception):  # its session was ended by the server
            frozen.close()
        assert state(standby_side, clock).leader == "b:2"
    finally:
        for e in engines:
            e.dispose()
