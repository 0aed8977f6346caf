"""A step the frequency cap held is released by a real worker's own scheduler (beat) at
the person's midnight, on the embedded stack (SQLite + file-system broker) and on
PostgreSQL + Redis: the cap comes from the worker's settings (FREQUENCY_CAP_PER_DAY),
virtual time from a shared clock file the test moves to just before that midnight."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from campaigns.clock import FileClock
from campaigns.db import make_engine, make_session_factory
from campaigns.models import CapHold, Enrollment, Message
from campaigns.sequences.caps import Cap
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from tests.stack import open_stack
from tests.test_conditions_workers import wait_for
from tests.test_frequency_cap import BRANCHY, PACIFIC, PERSON, TINY, _steps

pytestmark = pytest.mark.slow

# Monday 2 March 2026, 15:00 UTC: 07:00 in Los Angeles, where the person lives.
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)  # Tuesday 00:00 in Los Angeles


@pytest.fixture(params=["embedded", "redis-postgres"])
def stack(request, tmp_path):
    st = open_stack(request, tmp_path)
    yield st
    st.stop_all()


def test_a_held_step_goes_at_the_persons_midnight_on_the_workers_own_ticks(stack, tmp_path):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "tiny.yaml").write_text(TINY.replace("@CAP@", ""))
    (defs / "branchy.yaml").write_text(BRANCHY.replace("@CAP@", "").replace("@STEPS@", _steps(2)))
    registry = Registry(defs, FIXTURES / "templates")
    clock = FileClock(tmp_path / "clock")
    clock.set(START)
    engine = make_engine(stack.database_url)
    factory = make_session_factory(engine)
    policy = Policy(frequency_cap=Cap(1, 0))
    try:
        tiny = add_and_enroll(factory, clock, registry, policy, campaign="tiny", **PERSON)[1]
        other = add_and_enroll(factory, clock, registry, policy, campaign="branchy", **PERSON)[1]
        stack.start_worker(
            "w1", DEFINITIONS_DIR=defs, CLOCK_FILE=tmp_path / "clock", FREQUENCY_CAP_PER_DAY=1
        )

        def sent():
            with factory() as s:
                return s.scalars(
                    select(Message).where(Message.sent_at.is_not(None)).order_by(Message.id)
                ).all()

        def held():
            with factory() as s:
                return s.scalars(select(CapHold)).all()

        wait_for(lambda: sent() and held(), "the first lesson sent, the other held", stack.logs)
        time.sleep(2)  # a few more ticks: the held step stays held
        assert [(m.enrollment_id, m.step_key) for m in sent()] == [(tiny, "a1")]
        (hold,) = held()
        assert (hold.enrollment_id, hold.step_key, hold.held_until) == (other, "b1", MIDNIGHT)
        with factory() as s:
            assert s.get(Enrollment, other).next_due_at == MIDNIGHT
        clock.jump_to(MIDNIGHT - timedelta(seconds=2))
        went = wait_for(
            lambda: [m for m in sent() if m.step_key == "b1"], "the held step sent", stack.logs
        )
        (b1,) = went
        assert MIDNIGHT <= b1.sent_at < MIDNIGHT + timedelta(seconds=10)
        assert b1.sent_at.astimezone(PACIFIC).date().isoformat() == "2026-03-03"
        assert len(held()) == 1
    finally:
        engine.dispose()
