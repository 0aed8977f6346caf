"""Triggers: campaigns that enroll people by themselves (`enroll_on`) on a course completed
(plus a delay), a goal reached, a call asked for, or a person event; never twice unless
the campaign allows re-entry. Real SQLite and PostgreSQL (`factory`), the claim and the
send function; the shipped check-in after the whole shipped course; one run with a real
worker and its beat."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from campaigns.audience.opt_outs import unsubscribe
from campaigns.care.contact_queue import request_contact
from campaigns.content.rendering import Renderer, Sender
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.enrollment import enroll
from campaigns.delivery.sending import send_batch
from campaigns.journeys.on_event import take_event
from campaigns.journeys.triggers import LOOKBACK, enroll_triggered
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from campaigns.sequences.registry import Registry
from campaigns.sequences.revisions import reconcile
from campaigns.tracking.person_events import parse_event
from campaigns.tracking.portal import Visit
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll, messages

ROOT = Path(__file__).resolve().parent.parent
TINY = (FIXTURES / "definitions" / "tiny.yaml").read_text()  # hello 0m, second 1d, third 2d
QUICK = (FIXTURES / "definitions" / "quick.yaml").read_text()  # one, two, three: all 0m


def courses(tmp_path, follow_up: str, tiny_extra: str = "") -> Registry:
    """tiny, and quick as a follow-up with `follow_up` (its enroll_on and reentry)."""
    defs = tmp_path / "defs"
    defs.mkdir(exist_ok=True)
    (defs / "tiny.yaml").write_text(TINY + tiny_extra)
    (defs / "quick.yaml").write_text(QUICK + follow_up)
    return Registry(defs, FIXTURES / "templates")


def deploy(factory, clock, registry, policy):
    """What the scheduler's tick does first: record each campaign's shape (its first one
    is when it was deployed)."""
    with transaction(factory) as s:
        reconcile(s, clock, registry, policy)


def triggers(factory, clock, registry, policy):
    with transaction(factory) as s:
        return enroll_triggered(s, clock, registry, policy).enrolled


def claim_and_send(factory, clock, registry, policy, ctx):
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
    send_batch(ctx, "email", work.email)
    send_batch(ctx, "sms", work.sms)
    return work


def run_course(factory, clock, registry, policy, ctx, enrollment_id, limit=40):
    """Claim and send until the enrollment is done, moving the clock to each due time."""
    for _ in range(limit):
        with factory() as s:
            e = s.get(Enrollment, enrollment_id)
        if e.status != "active":
            return e
        if e.next_due_at > clock.now():
            clock.current = e.next_due_at
        claim_and_send(factory, clock, registry, policy, ctx)
    raise AssertionError("the course never finished")


def enrollments(factory, campaign="quick"):
    with factory() as s:
        return s.scalars(
            select(Enrollment).where(Enrollment.campaign_key == campaign).order_by(Enrollment.id)
        ).all()


def person_event(factory, clock, registry, policy, event_id, name, **person):
    with transaction(factory) as s:
        parsed = parse_event({"event_id": event_id, "name": name, **person}, clock.now())
        return take_event(s, clock, registry, policy, parsed, source="api")


# ---------------------------------------------------------------- the file


def write(tmp_path, extra: str) -> Path:
    path = tmp_path / "quick.yaml"
    path.write_text(QUICK + extra)
    return path


def test_the_enroll_on_block_is_read(tmp_path):
    c = parse_campaign(
        write(
            tmp_path,
            "enroll_on:\n"
            "  - {completed: tiny, after: 14d}\n"
            "  - {goal_reached: tiny}\n"
            "  - {call_requested: any, after: 2h}\n"
            "  - {event: class_attended, after: 1w 2d}\n"
            "reentry: true\n",
        ),
        FIXTURES / "templates",
    )
    assert [(t.kind, t.source, t.after) for t in c.enroll_on] == [
        ("completed", "tiny", timedelta(days=14)),
        ("goal_reached", "tiny", timedelta(0)),
        ("call_requested", "any", timedelta(hours=2)),
        ("event", "class_attended", timedelta(days=9)),
    ]
    assert c.reentry is True
    assert [t.describe() for t in c.enroll_on] == [
        "completed tiny, 14d later",
        "reached the goal of tiny",
        "asked for a call, 2h later",
        "did class_attended, 9d later",
    ]
    plain = parse_campaign(FIXTURES / "definitions" / "quick.yaml", FIXTURES / "templates")
    assert (plain.enroll_on, plain.reentry) == ((), False)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ("enroll_on: [{completed: tiny, event: x}]", "field enroll_on.0: a trigger names exactly"),
        ("enroll_on: [{after: 2d}]", "field enroll_on.0: a trigger names exactly one"),
        ("enroll_on: [{completed: any}]", "field enroll_on.0: only call_requested may say any"),
        ("enroll_on: [{completed: tiny, after: soon}]", "field enroll_on.0.after: delay 'soon'"),
        ("enroll_on: [{completed: Tiny}]", "field enroll_on.0.completed: String should match"),
        ("enroll_on: [{completed: tiny, when: 2d}]", "field enroll_on.0.when: Extra inputs"),
        ("enroll_on: {completed: tiny}", "field enroll_on: Input should be a valid list"),
        ("reentry: sometimes", "field reentry: Input should be a valid boolean"),
    ],
)
def test_a_bad_trigger_names_the_file_and_the_field(tmp_path, extra, said):
    with pytest.raises(DefinitionError) as err:
        parse_campaign(write(tmp_path, extra + "\n"), FIXTURES / "templates")
    assert any(p.startswith(f"quick.yaml: {said}") for p in err.value.problems), err.value.problems


def test_lint_says_when_a_trigger_names_a_campaign_that_is_not_there(tmp_path):
    from campaigns.content.lint import LintContext, lint_folder

    courses(tmp_path, "enroll_on: [{completed: tiny}, {goal_reached: nowhere}]\n")
    findings = lint_folder(
        tmp_path / "defs", LintContext(FIXTURES / "templates", "https://x.example", "L", "1 St")
    )
    errors = [str(f) for f in findings if f.severity == "error" and "enroll_on" in str(f)]
    assert errors == [
        "error: quick.yaml: enroll_on: goal_reached: no campaign 'nowhere' in this folder"
    ]


def test_the_shipped_check_in_follows_the_course_by_two_weeks():
    registry = Registry(ROOT / "campaigns" / "definitions", ROOT / "templates")
    check_in = registry.get("check_in")
    assert [t.describe() for t in check_in.enroll_on] == ["completed hip_and_back, 14d later"]
    assert check_in.reentry is False and check_in.locales == ("en", "es")


# ---------------------------------------------------------------- completed, plus a delay


def test_a_completed_course_enrolls_the_follow_up_after_the_delay_once(
    factory, clock, tmp_path, policy, send_ctx
):
    registry = courses(tmp_path, "enroll_on: [{completed: tiny, after: 2d}]\n")
    ctx = dataclasses.replace(send_ctx, registry=registry)
    deploy(factory, clock, registry, policy)
    sid, eid = add_and_enroll(factory, clock, registry, policy, email="ana@example.com")
    done = run_course(factory, clock, registry, policy, ctx, eid)
    assert done.status == "completed"
    completed_at = done.cursor_base_at
    clock.current = completed_at + timedelta(days=2) - timedelta(minutes=1)
    assert triggers(factory, clock, registry, policy) == {}  # not yet
    clock.current = completed_at + timedelta(days=2)
    assert triggers(factory, clock, registry, policy) == {"quick": 1}
    (follow,) = enrollments(factory)
    assert (follow.subscriber_id, follow.source, follow.trigger_ref, follow.entry) == (
        sid,
        "trigger",
        f"completed:{eid}",
        1,
    )
    assert follow.next_step_key == "one" and follow.next_due_at == clock.now()
    clock.advance(minutes=5)
    assert triggers(factory, clock, registry, policy) == {}  # once
    work = claim_and_send(factory, clock, registry, policy, ctx)
    assert len(work.email) == 1  # its first lesson goes out on the next tick


def test_nobody_is_enrolled_twice_without_reentry(factory, clock, tmp_path, policy, send_ctx):
    registry = courses(tmp_path, "enroll_on: [{completed: tiny}, {event: class_attended}]\n")
    ctx = dataclasses.replace(send_ctx, registry=registry)
    deploy(factory, clock, registry, policy)
    sid, eid = add_and_enroll(factory, clock, registry, policy, email="ana@example.com")
    clock.advance(minutes=1)
    person_event(factory, clock, registry, policy, "e1", "class_attended", email="ana@example.com")
    assert triggers(factory, clock, registry, policy) == {"quick": 1}
    run_course(factory, clock, registry, policy, ctx, enrollments(factory)[0].id)
    run_course(factory, clock, registry, policy, ctx, eid)  # tiny completes: a second moment
    person_event(factory, clock, registry, policy, "e2", "class_attended", email="ana@example.com")
    assert triggers(factory, clock, registry, policy) == {}
    assert len(enrollments(factory)) == 1


def test_with_reentry_a_person_joins_again_once_their_enrollment_ended(
    factory, clock, tmp_path, policy, send_ctx
):
    registry = courses(tmp_path, "enroll_on: [{event: class_attended}]\nreentry: true\n")
    ctx = dataclasses.replace(send_ctx, registry=registry)
    deploy(factory, clock, registry, policy)
    with transaction(factory) as s:
        from campaigns.audience.subscribers import upsert_subscriber

        upsert_subscriber(s, clock, email="ana@example.com", consent=("email",))
    clock.advance(minutes=1)
    person_event(factory, clock, registry, policy, "e1", "class_attended", email="ana@example.com")
    assert triggers(factory, clock, registry, policy) == {"quick": 1}
    clock.advance(minutes=1)
    person_event(factory, clock, registry, policy, "e2", "class_attended", email="ana@example.com")
    assert triggers(factory, clock, registry, policy) == {}  # still in it: e2 waits
    (first,) = enrollments(factory)
    run_course(factory, clock, registry, policy, ctx, first.id)
    assert triggers(factory, clock, registry, policy) == {"quick": 1}  # e2, now
    assert triggers(factory, clock, registry, policy) == {}  # e1 never again
    rows = enrollments(factory)
    assert [(e.entry, e.trigger_ref, e.status) for e in rows] == [
        (1, f"event:{1}", "completed"),
        (2, f"event:{2}", "active"),
    ]
    run_course(factory, clock, registry, policy, ctx, rows[1].id)
    sent = [(m.enrollment_id, m.step_key) for m in messages(factory) if m.channel == "email"]
    assert sent == [
        (rows[0].id, "one"),
        (rows[0].id, "two"),
        (rows[1].id, "one"),
        (rows[1].id, "two"),
    ]
    # Enrolling by hand still finds the latest entry.
    with transaction(factory) as s:
        again = enroll(
            s, clock, registry, s.get(Subscriber, rows[0].subscriber_id), "quick", policy
        )
        assert again.id == rows[1].id


def test_the_database_refuses_one_trigger_enrolling_twice(factory, clock, tmp_path, policy):
    registry = courses(tmp_path, "enroll_on: [{completed: tiny}]\n")
    a, _ = add_and_enroll(factory, clock, registry, policy, email="ana@example.com")
    b, _ = add_and_enroll(factory, clock, registry, policy, email="ben@example.com")
    with transaction(factory) as s:
        enroll(s, clock, registry, s.get(Subscriber, a), "quick", policy, trigger_ref="completed:1")
    with pytest.raises(IntegrityError), transaction(factory) as s:
        s.add(
            Enrollment(
                subscriber_id=b,
                campaign_key="quick",
                campaign_version=1,
                status="active",
                source="trigger",
                trigger_ref="completed:1",
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )


# ---------------------------------------------------------------- goal, call, event


def test_a_goal_reached_enrolls_the_follow_up(factory, clock, tmp_path, policy):
    registry = courses(
        tmp_path,
        "enroll_on: [{goal_reached: tiny}]\n",
        tiny_extra="goal: {event: visit_booked, then: exit}\n",
    )
    deploy(factory, clock, registry, policy)
    sid, eid = add_and_enroll(factory, clock, registry, policy, email="ana@example.com")
    add_and_enroll(factory, clock, registry, policy, email="ben@example.com")
    clock.advance(hours=1)
    person_event(factory, clock, registry, policy, "bk", "visit_booked", email="ana@example.com")
    assert triggers(factory, clock, registry, policy) == {"quick": 1}
    (follow,) = enrollments(factory)
    assert (follow.subscriber_id, follow.trigger_ref) == (sid, f"goal_reached:{eid}")


@pytest.mark.parametrize("source", ["tiny", "any"])
def test_a_call_request_enrolls_the_follow_up(factory, clock, tmp_path, policy, send_ctx, source):
    registry = courses(tmp_path, f"enroll_on: [{{call_requested: {source}, after: 1h}}]\n")
    deploy(factory, clock, registry, policy)
    sid, _ = add_and_enroll(factory, clock, registry, policy, email="ana@example.com")
    claim_and_send(
        factory, clock, registry, policy, dataclasses.replace(send_ctx, registry=registry)
    )
    with transaction(factory) as s:
        msg = s.scalar(select(Message))
        request_contact(
            s,
            clock,
            registry,
            Visit(msg, s.get(Subscriber, sid)),
            preferred_channel="phone",
            preferred_time=None,
            note=None,
        )
    assert triggers(factory, clock, registry, policy) == {}
    clock.advance(hours=1)
    assert triggers(factory, clock, registry, policy) == {"quick": 1}
    assert enrollments(factory)[0].trigger_ref.startswith("call_requested:")


def test_a_call_from_another_campaign_is_not_this_trigger(
    factory, clock, tmp_path, policy, send_ctx
):
    registry = courses(tmp_path, "enroll_on: [{call_requested: hip_and_back}]\n")
    deploy(factory, clock, registry, policy)
    sid, _ = add_and_enroll(factory, clock, registry, policy, email="ana@example.com")
    claim_and_send(
        factory, clock, registry, policy, dataclasses.replace(send_ctx, registry=registry)
    )
    with transaction(factory) as s:
        msg = s.scalar(select(Message))
        visit = Visit(msg, s.get(Subscriber, sid))
        request_contact(
            s, clock, registry, visit, preferred_channel="phone", preferred_time=None, note=None
        )
    assert triggers(factory, clock, registry, policy) == {}


# ---------------------------------------------------------------- who and when


def test_moments_before_the_campaign_was_deployed_or_too_old_are_left(
    factory, clock, tmp_path, policy
):
    registry = courses(tmp_path, "enroll_on: [{event: class_attended}]\n")
    for name in ("early", "late", "unsubscribed", "ok"):
        add_and_enroll(factory, clock, registry, policy, email=f"{name}@example.com")
    person_event(
        factory, clock, registry, policy, "early", "class_attended", email="early@example.com"
    )
    clock.advance(minutes=1)
    deploy(factory, clock, registry, policy)  # quick is first seen now
    clock.advance(minutes=1)
    for name in ("late", "unsubscribed", "ok"):
        person_event(
            factory, clock, registry, policy, name, "class_attended", email=f"{name}@example.com"
        )
    with transaction(factory) as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == "unsubscribed@example.com"))
        unsubscribe(s, clock, sub)
    late = clock.now()
    clock.current = late + LOOKBACK + timedelta(minutes=1)
    person_event(factory, clock, registry, policy, "ok-2", "class_attended", email="ok@example.com")
    assert triggers(factory, clock, registry, policy) == {"quick": 1}
    with factory() as s:
        (only,) = enrollments(factory)
        assert s.get(Subscriber, only.subscriber_id).email == "ok@example.com"
    assert only.trigger_ref.startswith("event:")


def test_a_campaign_not_yet_seen_by_the_scheduler_waits(factory, clock, tmp_path, policy):
    registry = courses(tmp_path, "enroll_on: [{event: class_attended}]\n")
    add_and_enroll(factory, clock, registry, policy, email="ana@example.com")
    person_event(factory, clock, registry, policy, "e", "class_attended", email="ana@example.com")
    assert triggers(factory, clock, registry, policy) == {}


# ---------------------------------------------------------------- the shipped example


def test_the_shipped_course_then_the_check_in_two_weeks_later(
    factory, clock, policy, send_ctx, outbox
):
    registry = Registry(ROOT / "campaigns" / "definitions", ROOT / "templates")
    ctx = dataclasses.replace(
        send_ctx,
        registry=registry,
        renderer=Renderer(ROOT / "templates", Sender("Lunara", "1 Test Street, Springfield")),
    )
    deploy(factory, clock, registry, policy)
    _, eid = add_and_enroll(
        factory, clock, registry, policy, campaign="hip_and_back", email="ana@example.com"
    )
    done = run_course(factory, clock, registry, policy, ctx, eid)
    assert done.status == "completed"
    clock.current = done.cursor_base_at + timedelta(days=13)
    assert triggers(factory, clock, registry, policy) == {}
    clock.current = done.cursor_base_at + timedelta(days=14)
    assert triggers(factory, clock, registry, policy) == {"check_in": 1}
    (check_in,) = enrollments(factory, "check_in")
    run_course(factory, clock, registry, policy, ctx, check_in.id)
    with factory() as s:
        m = s.scalar(select(Message).where(Message.campaign_key == "check_in"))
    assert (m.step_key, m.channel, m.status) == ("check_in", "email", "sent")
    mails = sorted((outbox.folder / "email").iterdir())
    assert "Subject: Checking in after your course" in mails[-1].read_text()


# ---------------------------------------------------------------- a real worker


@pytest.mark.slow
def test_a_real_worker_enrolls_on_an_event_and_sends_the_follow_up(tmp_path, db_url, request):
    from campaigns.clock import ScaledClock
    from campaigns.db import make_engine, make_session_factory
    from campaigns.models import CampaignRevision
    from campaigns.sequences.timing import Policy
    from tests.stack import VIRTUAL_EPOCH, Stack

    registry = courses(tmp_path, "enroll_on: [{event: class_attended}]\n")
    redis_url = None if db_url.startswith("sqlite") else request.getfixturevalue("redis_url")
    stack = Stack(tmp_path, db_url, redis_url)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    clock = ScaledClock(stack.real_epoch, VIRTUAL_EPOCH, 1.0)
    policy = Policy()
    try:
        with transaction(factory) as s:
            from campaigns.audience.subscribers import upsert_subscriber

            upsert_subscriber(s, clock, email="ana@example.com", consent=("email",))
        stack.start_worker("w1", DEFINITIONS_DIR=registry.definitions_dir)

        def deployed():
            with factory() as s:
                return s.scalar(
                    select(CampaignRevision).where(CampaignRevision.campaign_key == "quick")
                )

        deadline = time.monotonic() + 60
        while not deployed() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert deployed(), stack.logs()
        time.sleep(0.1)
        person_event(
            factory, clock, registry, policy, "e1", "class_attended", email="ana@example.com"
        )
        deadline = time.monotonic() + 60
        sent = []
        while time.monotonic() < deadline:
            sent = [m for m in messages(factory) if m.status == "sent"]
            if len(sent) >= 2:
                break
            time.sleep(0.2)
        assert [(m.campaign_key, m.step_key) for m in sent] == [
            ("quick", "one"),
            ("quick", "two"),
        ], stack.logs()
        (follow,) = enrollments(factory)
        assert (follow.source, follow.trigger_ref) == ("trigger", "event:1")
    finally:
        stack.stop_all()
        engine.dispose()
