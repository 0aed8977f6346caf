"""Enrolling and claiming due steps, on SQLite and PostgreSQL, with a fixed clock."""

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from campaigns.audience.subscribers import InvalidSubscriber, upsert_subscriber
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.enrollment import enroll
from campaigns.delivery.reaper import reap
from campaigns.delivery.sending import send_batch
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.sequences.campaign import DefinitionError
from campaigns.sequences.registry import Registry
from campaigns.states import MessageStatus
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll, messages


def test_enroll_is_idempotent(factory, clock, registry, policy):
    _, first = add_and_enroll(factory, clock, registry, policy, email="a@example.com")
    _, again = add_and_enroll(factory, clock, registry, policy, email="a@example.com")
    assert first == again
    with factory() as s:
        assert s.scalar(select(func.count(Enrollment.id))) == 1


def test_claim_writes_one_row_per_channel_and_advances(factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com", phone="+12025550143")
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
    assert len(work.email) == 1 and len(work.sms) == 1
    with factory() as s:
        e = s.scalar(select(Enrollment))
        assert e.next_step_key == "second" and e.steps_done == 1
        assert e.next_due_at == datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # one day later
    with transaction(factory) as s:  # a second tick at the same instant finds nothing
        assert len(claim_due(s, clock, registry, policy)) == 0
    assert [(m.step_key, m.channel, m.status) for m in messages(factory)] == [
        ("hello", "email", "queued"),
        ("hello", "sms", "queued"),
    ]


def claim_and_send(send_ctx, factory, clock, registry, policy):
    """A tick and its send tasks: the next step is claimed only once the last one went."""
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
    send_batch(send_ctx, "email", work.email)
    send_batch(send_ctx, "sms", work.sms)
    return work


def test_channel_without_address_gets_a_row_only_when_nothing_reaches_the_person(
    send_ctx, factory, clock, registry, policy
):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com")  # email only
    claim_and_send(send_ctx, factory, clock, registry, policy)  # hello: email + sms
    clock.advance(days=1)
    claim_and_send(send_ctx, factory, clock, registry, policy)  # second: email
    clock.advance(days=2)
    claim_and_send(send_ctx, factory, clock, registry, policy)  # third: sms only
    rows = [(m.step_key, m.channel, m.status, m.reason_code, m.reason) for m in messages(factory)]
    assert rows == [
        ("hello", "email", "sent", "accepted", "accepted by provider"),
        ("second", "email", "sent", "accepted", "accepted by provider"),
        ("third", "sms", "skipped", "no_address", "no phone number"),
    ]


def test_a_channel_without_consent_still_gets_its_row(factory, clock, registry, policy):
    from campaigns.audience.subscribers import upsert_subscriber as upsert

    with transaction(factory) as s:
        sub = upsert(s, clock, email="a@example.com", phone="+12025550143", consent=("email",))
        enroll(s, clock, registry, sub, "tiny", policy)
        claim_due(s, clock, registry, policy)
    rows = {m.channel: (m.status, m.reason_code, m.reason) for m in messages(factory)}
    assert rows == {
        "email": ("queued", None, None),
        "sms": ("skipped", "no_consent", "no sms consent"),
    }


def test_whole_sequence_ends_every_step_in_a_state(send_ctx, factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com", phone="+12025550143")
    for _ in range(10):
        claim_and_send(send_ctx, factory, clock, registry, policy)
        clock.advance(hours=12)
    rows = [(m.step_key, m.channel) for m in messages(factory)]
    assert rows == [("hello", "email"), ("hello", "sms"), ("second", "email"), ("third", "sms")]
    with factory() as s:
        assert s.scalar(select(Enrollment.status)) == "completed"


def test_text_step_due_at_night_waits_for_eight_local(factory, clock, registry, policy):
    clock.current = datetime(2026, 3, 3, 3, 30, tzinfo=UTC)  # 22:30 in New York
    _, eid = add_and_enroll(factory, clock, registry, policy, phone="+12025550143")
    with factory() as s:
        assert s.get(Enrollment, eid).next_due_at == datetime(2026, 3, 3, 13, 0, tzinfo=UTC)


def test_subscriber_with_no_zone_uses_default(factory, clock, registry, policy):
    clock.current = datetime(2026, 3, 3, 3, 30, tzinfo=UTC)
    _, a = add_and_enroll(factory, clock, registry, policy, phone="+12025550143")
    _, b = add_and_enroll(
        factory, clock, registry, policy, phone="+12025550144", timezone="Asia/Kolkata"
    )
    with factory() as s:
        assert s.get(Enrollment, a).next_due_at.hour == 13  # 08:00 New York (the default)
        assert s.get(Enrollment, b).next_due_at == datetime(
            2026, 3, 3, 3, 30, tzinfo=UTC
        )  # 09:00 IST


@pytest.mark.parametrize(
    "breakage,message",
    [
        (("template: second", "template: missing"), "unknown template"),
        (("delay: 1d", "delay: -1d"), "delay must not be negative"),
        (("steps:", "steps: [\n"), "not valid YAML"),
    ],
)
def test_broken_campaign_file_enrolls_nobody(factory, clock, policy, tmp_path, breakage, message):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "tiny.yaml").write_text(
        (FIXTURES / "definitions" / "tiny.yaml").read_text().replace(*breakage)
    )
    reg = Registry(defs, FIXTURES / "templates")
    with pytest.raises(DefinitionError, match=message), transaction(factory) as s:
        sub = upsert_subscriber(s, clock, email="a@example.com", consent=("email",))
        enroll(s, clock, reg, sub, "tiny", policy)
    with factory() as s:
        assert s.scalar(select(func.count(Enrollment.id))) == 0
        assert s.scalar(select(func.count(Subscriber.id))) == 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("phone", "+1 555"),
        ("phone", "call me"),
        ("email", "not-an-address"),
        ("timezone", "Mars/Olympus"),
    ],
)
def test_bad_contact_details_are_refused_and_nothing_written(factory, clock, field, value):
    kwargs = {"email": "ok@example.com", field: value}
    with pytest.raises(InvalidSubscriber, match=field), transaction(factory) as s:
        upsert_subscriber(s, clock, **kwargs)
    with factory() as s:
        assert s.scalar(select(func.count(Subscriber.id))) == 0


def test_racing_ticks_write_one_row_per_step(factory, clock, registry, policy):
    for i in range(40):
        add_and_enroll(factory, clock, registry, policy, email=f"p{i}@example.com")
    errors = []
    claimed = []

    def racer():
        try:
            for _ in range(3):
                with transaction(factory) as s:
                    claimed.append(claim_due(s, clock, registry, policy, limit=7).claimed)
        except Exception as exc:  # any error in a racer fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(claimed) == 40
    with factory() as s:
        keys = s.execute(select(Message.enrollment_id, Message.step_key, Message.channel)).all()
    assert len(keys) == 40 and len(set(keys)) == 40  # email only: hello's text has no row


def test_reaper_requeues_lost_tasks_and_flags_expired_leases(factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com", phone="+12025550143")
    with transaction(factory) as s:
        claim_due(s, clock, registry, policy)
        email, sms = s.scalars(select(Message).order_by(Message.id)).all()
        sms.status, sms.lease_until = MessageStatus.SENDING, clock.now()
    clock.advance(minutes=11)
    with transaction(factory) as s:
        reaped = reap(s, clock, policy)
    assert reaped.requeued.email == [email.id] and reaped.unconfirmed == [sms.id]
    statuses = {m.channel: (m.status, m.reason_code) for m in messages(factory)}
    assert statuses == {"email": ("queued", None), "sms": ("unconfirmed", "lease_expired")}


def test_migrations_match_the_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from campaigns.db import make_engine
    from campaigns.models import Base

    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_one_broken_campaign_file_does_not_stop_the_others(factory, clock, policy, tmp_path):
    import os
    import shutil
    import time

    defs = tmp_path / "defs"
    shutil.copytree(FIXTURES / "definitions", defs)
    reg = Registry(defs, FIXTURES / "templates")
    add_and_enroll(factory, clock, reg, policy, email="a@example.com")  # tiny
    add_and_enroll(factory, clock, reg, policy, campaign="quick", email="a@example.com")
    (defs / "quick.yaml").write_text(
        "key: quick\nsteps: [\n"
    )  # a typo, and no good version loaded yet
    fresh = Registry(defs, FIXTURES / "templates")
    with transaction(factory) as s:
        work = claim_due(s, clock, fresh, policy)
    assert work.claimed == 1  # tiny went ahead; quick waits
    with factory() as s:
        quick = s.scalar(select(Enrollment).where(Enrollment.campaign_key == "quick"))
        assert (quick.status, quick.next_step_key) == ("active", "one")  # waiting, not dropped
    # A campaign that was running keeps its last good version when its file breaks.
    (defs / "tiny.yaml").write_text("key: tiny\nversion: [\n")
    os.utime(defs / "tiny.yaml", ns=(time.time_ns() + 10**9,) * 2)
    assert reg.get("tiny").steps[0].key == "hello" and "tiny" in reg.errors


def test_one_inbox_is_one_subscriber_whatever_the_case(factory, clock, registry, policy):
    first = add_and_enroll(factory, clock, registry, policy, email="Bob@Example.com")
    second = add_and_enroll(factory, clock, registry, policy, email="bob@example.COM")
    assert first == second


def test_reaper_leaves_paused_channels_and_queued_tasks_alone(factory, clock, registry, policy):
    from campaigns.delivery.pauses import pause
    from campaigns.delivery.reaper import Held

    add_and_enroll(factory, clock, registry, policy, email="a@example.com", phone="+12025550143")
    with transaction(factory) as s:
        claim_due(s, clock, registry, policy)
        pause(s, clock, "email", "key rotation", by="ops")
    clock.advance(minutes=11)
    with factory() as s:
        sms_id = s.scalar(select(Message.id).where(Message.channel == "sms"))
    with transaction(factory) as s:  # its task waits on the queue: a backlog, not lost
        assert len(reap(s, clock, policy, Held(waiting=frozenset({sms_id}))).requeued) == 0
    with transaction(factory) as s:  # the broker cannot be read: nothing is judged lost
        assert len(reap(s, clock, policy, None).requeued) == 0
    with transaction(factory) as s:
        assert reap(s, clock, policy, Held()).requeued.sms == [sms_id]  # no task holds it


def test_a_cursor_whose_campaign_or_step_is_gone_is_parked_with_its_reason(
    factory, clock, registry, policy
):
    _, gone = add_and_enroll(factory, clock, registry, policy, email="a@example.com")
    _, moved = add_and_enroll(factory, clock, registry, policy, email="b@example.com")
    _, fine = add_and_enroll(factory, clock, registry, policy, email="c@example.com")
    with transaction(factory) as s:
        s.get(Enrollment, gone).campaign_key = "retired"
        s.get(Enrollment, moved).next_step_key = "nope"
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
    assert work.claimed == 3 and len(work.email) == 1
    with factory() as s:
        rows = {
            e.id: (e.status, e.exit_reason, e.steps_done) for e in s.scalars(select(Enrollment))
        }
    assert rows[gone] == ("paused", "campaign 'retired' is not deployed", 0)
    assert rows[moved] == ("paused", "step 'nope' no longer exists", 0)
    assert rows[fine][0] == "active" and rows[fine][2] == 1
