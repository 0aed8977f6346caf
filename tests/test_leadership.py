"""The scheduler lease (campaigns.delivery.leadership) on SQLite and PostgreSQL: one
holder at a time, taken over only after it expires, handed over at once on release."""

from __future__ import annotations

from datetime import timedelta

from campaigns.db import transaction
from campaigns.delivery.leadership import (
    LEADING,
    STANDBY,
    read_leadership,
    record_tick,
    release,
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
    # Two standbys find the lease expired at the same instant: the first UPDATE takes it,
    # the second finds it held and unexpired.
    s1, s2 = factory(), factory()
    try:
        first = take_turn(s1, clock, "b", 2, LEASE)
        s1.commit()
        second = take_turn(s2, clock, "c", 3, LEASE)
        s2.commit()
    finally:
        s1.close()
        s2.close()
    assert (first, second) == (True, False)
    assert state(factory, clock).leader == "b:2"
    assert clock.now() + timedelta(seconds=LEASE) == state(factory, clock).expires_at
