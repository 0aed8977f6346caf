"""A wait that an open ends, with real Celery worker processes and their scheduler (beat)
on the embedded stack (SQLite + file-system broker) and on PostgreSQL + Redis: the open is
recorded as the open pixel records it, and the worker's own tick skips the text version
within a few ticks, while the person who did not open keeps waiting."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from campaigns.clock import ScaledClock
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.tracking.portal import Visit, record_engagement
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from tests.stack import VIRTUAL_EPOCH, open_stack
from tests.test_conditions import BY_TEXT, FOLLOW, HEAD, LESSON

pytestmark = pytest.mark.slow


@pytest.fixture(params=["embedded", "redis-postgres"])
def stack(request, tmp_path):
    st = open_stack(request, tmp_path)
    yield st
    st.stop_all()


def wait_for(condition, what: str, logs, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what} in {timeout}s\n{logs()}")
        time.sleep(0.05)
    return found


def test_an_open_ends_the_wait_on_the_workers_next_ticks(stack, tmp_path):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "branchy.yaml").write_text(HEAD + LESSON + BY_TEXT + FOLLOW)
    registry = Registry(defs, FIXTURES / "templates")
    engine = make_engine(stack.database_url)
    factory = make_session_factory(engine)
    clock = ScaledClock(stack.real_epoch, VIRTUAL_EPOCH, 1.0)
    try:
        ids = {
            who: add_and_enroll(
                factory, clock, registry, Policy(), campaign="branchy",
                email=f"{who}@example.com", phone=phone,
            )[1]
            for who, phone in (("opener", "+12025550161"), ("other", "+12025550162"))
        }  # fmt: skip
        stack.start_worker("w1", DEFINITIONS_DIR=defs)

        def lessons_sent():
            with factory() as s:
                return s.scalars(
                    select(Message).where(
                        Message.step_key == "lesson", Message.sent_at.is_not(None)
                    )
                ).all()

        wait_for(lambda: len(lessons_sent()) == 2, "both lessons sent", stack.logs)
        with transaction(factory) as s:
            msg = s.scalar(select(Message).where(Message.enrollment_id == ids["opener"]))
            record_engagement(
                s, clock, Visit(msg, s.get(Subscriber, msg.subscriber_id)), "opened", {"route": "o"}
            )
        opened_at = time.monotonic()

        def skipped():
            with factory() as s:
                return s.scalar(
                    select(Message).where(
                        Message.enrollment_id == ids["opener"],
                        Message.step_key == "lesson_by_text",
                    )
                )

        row = wait_for(skipped, "the text version skipped for the opener", stack.logs)
        assert time.monotonic() - opened_at < 10  # a few ticks, not the two days
        assert (row.status, row.reason_code) == ("skipped", "condition")
        with factory() as s:
            opener = s.get(Enrollment, ids["opener"])
            other = s.get(Enrollment, ids["other"])
            assert (opener.next_step_key, opener.waiting_for) == ("follow", None)
            assert opener.next_due_at - row.created_at == timedelta(days=1)
            assert (other.next_step_key, other.waiting_for) == (
                "lesson_by_text",
                "opened:lesson>lesson_by_text",
            )
            assert (
                s.scalar(
                    select(Message).where(
                        Message.enrollment_id == ids["other"], Message.step_key == "lesson_by_text"
                    )
                )
                is None
            )
    finally:
        engine.dispose()
