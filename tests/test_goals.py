"""A campaign's goal: the file's `goal` block, and what a person event that reaches it does
to courses (exit, jump), the send path's re-check of an exited course, and the goal's
report. Real SQLite and PostgreSQL (`factory`), the send function through the local
outbox, and one run with a real worker."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from campaigns.audience.opt_outs import unsubscribe
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.sending import send_batch
from campaigns.journeys.on_event import take_event
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.reasons import Reason
from campaigns.reporting.funnels import campaign_report
from campaigns.reporting.timelines import course_timelines, timeline_lines
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from campaigns.sequences.registry import Registry
from campaigns.states import MessageStatus
from campaigns.tracking.person_events import parse_event
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll, drip_context, messages

ROOT = Path(__file__).resolve().parent.parent
TINY = (FIXTURES / "definitions" / "tiny.yaml").read_text()  # hello 0m, second 1d, third 2d


def goal_registry(tmp_path, goal: str) -> Registry:
    """The tiny course with `goal` added, in a folder of its own."""
    defs = tmp_path / "defs"
    defs.mkdir(exist_ok=True)
    (defs / "tiny.yaml").write_text(TINY + goal + "\n")
    return Registry(defs, FIXTURES / "templates")


@pytest.fixture
def exits(tmp_path):
    return goal_registry(tmp_path, "goal: {event: visit_booked, then: exit}")


@pytest.fixture
def jumps(tmp_path):
    return goal_registry(tmp_path, "goal: {event: visit_booked, then: {jump: third}}")


def claim(factory, clock, registry, policy):
    with transaction(factory) as s:
        return claim_due(s, clock, registry, policy)


def event(factory, clock, registry, policy, event_id="bk-1", name="visit_booked", **fields):
    fields.setdefault("email", "ana@example.com")
    with transaction(factory) as s:
        parsed = parse_event({"event_id": event_id, "name": name, **fields}, clock.now())
        return take_event(s, clock, registry, policy, parsed, source="api")


def enrollment(factory, eid) -> Enrollment:
    with factory() as s:
        return s.get(Enrollment, eid)


# ---------------------------------------------------------------- the file


def write(tmp_path, goal: str) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY + goal + "\n")
    return path


def test_the_goal_block_is_read(tmp_path):
    exit_goal = parse_campaign(
        write(tmp_path, "goal: {event: visit_booked}"), FIXTURES / "templates"
    )
    assert (exit_goal.goal.event, exit_goal.goal.jump, exit_goal.goal.then) == (
        "visit_booked",
        None,
        "exit",
    )
    jump = parse_campaign(
        write(tmp_path, "goal: {event: visit_booked, then: {jump: third}}"),
        FIXTURES / "templates",
    )
    assert (jump.goal.jump, jump.goal.then) == ("third", "jump to third")
    assert (
        parse_campaign(FIXTURES / "definitions" / "tiny.yaml", FIXTURES / "templates").goal is None
    )


@pytest.mark.parametrize(
    ("goal", "said"),
    [
        (
            "goal: {event: visit_booked, then: {jump: nowhere}}",
            "tiny.yaml: field goal.then.jump: no step 'nowhere' in this campaign "
            "(steps: hello, second, third)",
        ),
        ("goal: {event: Visit Booked}", "tiny.yaml: field goal.event: String should match"),
        ("goal: {then: exit}", "tiny.yaml: field goal.event: Field required"),
        ("goal: {event: visit_booked, then: leave}", "tiny.yaml: field goal.then"),
        ("goal: {event: visit_booked, when: soon}", "tiny.yaml: field goal.when: Extra inputs"),
    ],
)
def test_a_bad_goal_names_the_file_and_the_field(tmp_path, goal, said):
    with pytest.raises(DefinitionError) as err:
        parse_campaign(write(tmp_path, goal), FIXTURES / "templates")
    assert any(p.startswith(said) for p in err.value.problems), err.value.problems


def test_the_shipped_course_names_its_goal_without_touching_its_copy():
    registry = Registry(ROOT / "campaigns" / "definitions", ROOT / "templates")
    goal = registry.get("hip_and_back").goal
    assert (goal.event, goal.then) == ("visit_booked", "exit")


# ---------------------------------------------------------------- exit


def test_reaching_the_goal_exits_and_a_queued_message_is_skipped_at_the_send(
    factory, clock, exits, policy, send_ctx, outbox
):
    sid, eid = add_and_enroll(factory, clock, exits, policy, email="ana@example.com")
    work = claim(factory, clock, exits, policy)  # the first lesson is queued
    assert len(work.email) == 1
    clock.advance(minutes=5)
    taken = event(factory, clock, exits, policy, properties={"clinic": "north"})
    assert [(g.campaign_key, g.did) for g in taken.goals] == [("tiny", "exited")]
    e = enrollment(factory, eid)
    assert (e.status, e.exit_reason) == ("exited", "reached the goal visit_booked")
    assert e.goal_event_id == taken.recorded.event.id and e.goal_reached_at == clock.now()

    report = send_batch(dataclasses.replace(send_ctx, registry=exits), "email", work.email)
    assert (report.sent, report.skipped) == (0, 1)
    (m,) = messages(factory)
    assert (m.status, m.reason_code, m.reason) == (
        MessageStatus.SKIPPED,
        Reason.ENROLLMENT_EXITED,
        "enrollment exited: reached the goal visit_booked",
    )
    assert not (outbox.folder / "email").exists() or not any((outbox.folder / "email").iterdir())
    clock.advance(days=3)
    assert claim(factory, clock, exits, policy).claimed == 0  # nothing more, ever


def test_the_same_event_twice_applies_once_and_a_later_one_does_not_move_the_goal(
    factory, clock, exits, policy
):
    _, eid = add_and_enroll(factory, clock, exits, policy, email="ana@example.com")
    first = event(factory, clock, exits, policy)
    again = event(factory, clock, exits, policy)
    assert (first.created, again.created, again.goals) == (True, False, [])
    assert again.recorded.event.id == first.recorded.event.id
    assert again.reached_in == ["tiny"]
    clock.advance(hours=1)
    later = event(factory, clock, exits, policy, event_id="bk-2")
    assert later.created and later.goals == [] and later.reached_in == []
    assert enrollment(factory, eid).goal_event_id == first.recorded.event.id


def test_a_paused_course_exits_a_completed_one_only_records_an_exited_one_is_left(
    factory, clock, exits, policy
):
    people = {}
    for name in ("paused", "completed", "exited"):
        people[name] = add_and_enroll(factory, clock, exits, policy, email=f"{name}@example.com")
    with transaction(factory) as s:
        s.get(Enrollment, people["paused"][1]).status = "paused"
        s.get(Enrollment, people["paused"][1]).exit_reason = "asked to be contacted"
        s.get(Enrollment, people["completed"][1]).status = "completed"
        unsubscribe(s, clock, s.get(Subscriber, people["exited"][0]))
    clock.advance(minutes=1)
    for name in people:
        event(factory, clock, exits, policy, event_id=f"bk-{name}", email=f"{name}@example.com")
    paused, completed, exited = (enrollment(factory, people[n][1]) for n in people)
    assert (paused.status, paused.exit_reason) == ("exited", "reached the goal visit_booked")
    assert (completed.status, completed.goal_reached_at) == ("completed", clock.now())
    assert (exited.status, exited.exit_reason, exited.goal_event_id) == (
        "exited",
        "unsubscribed",
        None,
    )


def test_an_event_from_before_the_person_joined_is_not_the_goal(factory, clock, exits, policy):
    _, eid = add_and_enroll(factory, clock, exits, policy, email="ana@example.com")
    before = (clock.now() - timedelta(days=2)).isoformat()
    taken = event(factory, clock, exits, policy, occurred_at=before)
    assert taken.created and taken.goals == []
    assert enrollment(factory, eid).status == "active"


def test_another_event_name_is_recorded_and_changes_no_course(factory, clock, exits, policy):
    _, eid = add_and_enroll(factory, clock, exits, policy, email="ana@example.com")
    taken = event(factory, clock, exits, policy, name="class_attended")
    assert taken.created and taken.goals == []
    assert enrollment(factory, eid).status == "active"


# ---------------------------------------------------------------- jump


def test_a_jump_goes_to_the_step_due_now_and_skips_the_ones_between(
    factory, clock, jumps, policy, send_ctx
):
    ctx = dataclasses.replace(send_ctx, registry=jumps)
    _, eid = add_and_enroll(
        factory, clock, jumps, policy, email="ana@example.com", phone="+12025550143"
    )
    work = claim(factory, clock, jumps, policy)
    send_batch(ctx, "email", work.email)
    send_batch(ctx, "sms", work.sms)
    clock.advance(hours=1)
    taken = event(factory, clock, jumps, policy)
    assert [g.did for g in taken.goals] == ["jumped to third"]
    e = enrollment(factory, eid)
    assert (e.status, e.next_step_key, e.next_due_at) == ("active", "third", clock.now())
    work = claim(factory, clock, jumps, policy)
    assert len(work.sms) == 1 and not work.email
    send_batch(ctx, "sms", work.sms)
    assert [(m.step_key, m.channel, m.status) for m in messages(factory)] == [
        ("hello", "email", "sent"),
        ("hello", "sms", "sent"),
        ("third", "sms", "sent"),
    ]  # `second` never went
    assert enrollment(factory, eid).status == "completed"


def test_a_jump_waits_for_the_message_still_on_its_way(factory, clock, jumps, policy, send_ctx):
    """The order rules hold (campaigns.delivery.ordering): the jumped-to step follows the
    previous one once that has gone, never beside it."""
    ctx = dataclasses.replace(send_ctx, registry=jumps)
    add_and_enroll(factory, clock, jumps, policy, email="ana@example.com", phone="+12025550143")
    first = claim(factory, clock, jumps, policy)  # hello queued on both channels, not sent
    event(factory, clock, jumps, policy)
    held = claim(factory, clock, jumps, policy)
    assert (held.claimed, held.held, len(held)) == (1, 1, 0)
    send_batch(ctx, "email", first.email)
    send_batch(ctx, "sms", first.sms)
    clock.advance(minutes=2)
    after = claim(factory, clock, jumps, policy)
    assert len(after.sms) == 1
    with factory() as s:
        third = s.scalar(select(Message).where(Message.step_key == "third"))
        hello = s.scalar(
            select(Message).where(Message.step_key == "hello", Message.channel == "sms")
        )
    assert third.created_at > hello.sent_at


def test_a_jump_to_a_step_already_had_records_the_goal_and_moves_nothing(
    factory, clock, tmp_path, policy, send_ctx
):
    registry = goal_registry(tmp_path, "goal: {event: visit_booked, then: {jump: hello}}")
    _, eid = add_and_enroll(factory, clock, registry, policy, email="ana@example.com")
    work = claim(factory, clock, registry, policy)
    send_batch(dataclasses.replace(send_ctx, registry=registry), "email", work.email)
    before = enrollment(factory, eid)
    taken = event(factory, clock, registry, policy)
    assert [g.did for g in taken.goals] == ["recorded"]
    after = enrollment(factory, eid)
    assert (after.next_step_key, after.next_due_at) == (before.next_step_key, before.next_due_at)
    assert after.goal_event_id == taken.recorded.event.id


def test_a_paused_course_jumps_but_stays_paused(factory, clock, jumps, policy):
    _, eid = add_and_enroll(factory, clock, jumps, policy, email="ana@example.com")
    with transaction(factory) as s:
        e = s.get(Enrollment, eid)
        e.status, e.exit_reason = "paused", "asked to be contacted"
    event(factory, clock, jumps, policy)
    e = enrollment(factory, eid)
    assert (e.status, e.next_step_key) == ("paused", "third")
    assert claim(factory, clock, jumps, policy).claimed == 0


def test_a_jumped_text_waits_for_the_text_hours(factory, clock, jumps, policy, send_ctx):
    add_and_enroll(factory, clock, jumps, policy, phone="+12025550143")
    work = claim(factory, clock, jumps, policy)
    send_batch(dataclasses.replace(send_ctx, registry=jumps), "sms", work.sms)
    clock.advance(hours=12)  # 22:00 in New York
    taken = event(factory, clock, jumps, policy, email=None, phone="+12025550143")
    assert [g.did for g in taken.goals] == ["jumped to third"]
    with factory() as s:
        e = s.scalar(select(Enrollment))
    assert e.next_due_at == clock.now() + timedelta(hours=10)  # 08:00 the next morning


# ---------------------------------------------------------------- the report


def test_the_report_shows_goals_per_step_and_channel_and_time_to_goal(
    factory, clock, exits, policy, send_ctx
):
    """Four people, known numbers: Ana (email and text) books 2 h after the first lesson,
    Ben (email) a day and 3 h in, after the second; Cal books before anything reached him;
    Dee never books."""
    ctx = dataclasses.replace(send_ctx, registry=exits)
    t0 = clock.now()
    add_and_enroll(factory, clock, exits, policy, email="ana@example.com", phone="+12025550143")
    for name in ("ben", "cal", "dee"):
        add_and_enroll(factory, clock, exits, policy, email=f"{name}@example.com")
    work = claim(factory, clock, exits, policy)
    event(factory, clock, exits, policy, event_id="cal", email="cal@example.com")
    send_batch(ctx, "email", work.email)
    send_batch(ctx, "sms", work.sms)
    clock.advance(hours=2)
    event(factory, clock, exits, policy, event_id="ana", email="ana@example.com")
    clock.current = t0 + timedelta(days=1)
    work = claim(factory, clock, exits, policy)
    send_batch(ctx, "email", work.email)
    clock.advance(hours=3)
    event(factory, clock, exits, policy, event_id="ben", email="ben@example.com")

    with factory() as s:
        report = campaign_report(s, exits, "tiny")
    g = report.goals
    assert (g.event, g.then, g.enrolled, g.reached, g.rate, g.before_any_step) == (
        "visit_booked",
        "exit",
        4,
        3,
        0.75,
        1,
    )
    rows = {(r.step_key, r.channel): (r.received, r.goals) for r in g.steps}
    assert rows == {
        ("hello", "email"): (3, 1),  # Ana, Ben, Dee got it (Cal's was skipped); Ana booked
        ("hello", "sms"): (1, 1),
        ("second", "email"): (2, 1),  # Ben and Dee; Ben booked
        ("third", "sms"): (0, 0),
    }
    t = g.time_to_goal
    assert (t.count, t.median, t.lower_quartile, t.upper_quartile) == (
        3,
        timedelta(hours=2),
        timedelta(hours=1),
        timedelta(hours=14, minutes=30),
    )
    assert dict(t.spans) == {
        "under 1 day": 2,
        "1 to 3 days": 1,
        "3 to 7 days": 0,
        "1 to 2 weeks": 0,
        "2 to 4 weeks": 0,
        "4 weeks or more": 0,
    }
    assert report.to_dict()["goal"]["steps"][0] == {
        "step_key": "hello",
        "channel": "email",
        "position": 1,
        "received": 3,
        "goals": 1,
        "rate": 1 / 3,
    }
    assert report.enrollments.exit_reasons == [("reached the goal visit_booked", 3)]

    # The people's timelines say it too.
    with factory() as s:
        timelines = course_timelines(s, exits, policy, "tiny", "US")
    ana = "\n".join(timeline_lines(timelines[0]))
    assert "exited (reached the goal visit_booked)" in ana
    assert "did visit_booked (the course's goal)" in ana


def test_drip_report_prints_the_goal(factory, clock, exits, policy, tmp_path):
    from click.testing import CliRunner

    from workers.cli import main

    add_and_enroll(factory, clock, exits, policy, email="ana@example.com")
    clock.advance(days=2, hours=5)
    event(factory, clock, exits, policy)
    drip = drip_context(factory, clock)
    drip._runtime.registry = exits
    result = CliRunner().invoke(main, ["report", "tiny"], obj=drip)
    assert result.exit_code == 0, result.output
    out = result.output
    assert (
        "goal: visit_booked (then exit): 1 of 1 enrolled reached it (100.0%); "
        "1 before any step" in out
    )
    assert "time to goal: median 2d 5h (1 people)" in out
    assert "under 1 day 0; 1 to 3 days 1; 3 to 7 days 0" in out
    assert "reached the goal after this step" in out
    as_json = CliRunner().invoke(main, ["report", "tiny", "--json"], obj=drip)
    assert '"reached": 1' in as_json.output


def test_a_campaign_without_a_goal_reports_none(factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, email="ana@example.com")
    with factory() as s:
        report = campaign_report(s, registry, "tiny")
    assert report.goals is None and report.to_dict()["goal"] is None


# ---------------------------------------------------------------- a real worker


@pytest.mark.slow
def test_a_real_worker_skips_the_queued_lesson_of_a_course_that_reached_its_goal(
    tmp_path, db_url, request
):
    """The lesson is queued (claimed, in the outbox) when the goal arrives; the worker's
    reaper hands it to a send task, whose re-check skips it with the goal as the reason."""
    from campaigns.clock import ScaledClock
    from campaigns.db import make_engine, make_session_factory
    from campaigns.sequences.timing import Policy
    from tests.stack import VIRTUAL_EPOCH, Stack

    exits = goal_registry(tmp_path, "goal: {event: visit_booked, then: exit}")
    redis_url = None if db_url.startswith("sqlite") else request.getfixturevalue("redis_url")
    stack = Stack(tmp_path, db_url, redis_url)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    clock = ScaledClock(stack.real_epoch, VIRTUAL_EPOCH, 1.0)
    policy = Policy()
    try:
        _, eid = add_and_enroll(factory, clock, exits, policy, email="ana@example.com")
        assert len(claim(factory, clock, exits, policy).email) == 1  # queued, never enqueued
        event(factory, clock, exits, policy)
        stack.start_worker("w1", DEFINITIONS_DIR=exits.definitions_dir, REQUEUE_AFTER_SECONDS=1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            (m,) = messages(factory)
            if m.status != MessageStatus.QUEUED:
                break
            time.sleep(0.2)
        assert (m.status, m.reason) == (
            MessageStatus.SKIPPED,
            "enrollment exited: reached the goal visit_booked",
        ), stack.logs()
        assert m.attempts == 0 and not (stack.outbox / "email").exists()
    finally:
        stack.stop_all()
        engine.dispose()


def test_the_admin_campaign_page_shows_the_goal(factory, clock, exits, policy, send_ctx):
    import base64

    from fastapi.testclient import TestClient

    from settings import load_settings
    from web.app import create_app

    add_and_enroll(factory, clock, exits, policy, email="ana@example.com")
    add_and_enroll(factory, clock, exits, policy, email="ben@example.com")
    work = claim(factory, clock, exits, policy)
    send_batch(dataclasses.replace(send_ctx, registry=exits), "email", work.email)
    clock.advance(hours=30)
    event(factory, clock, exits, policy)
    settings = load_settings(
        environment="test",
        secret_key="s" * 40,
        definitions_dir=exits.definitions_dir,
        templates_dir=FIXTURES / "templates",
        admin_password="goal-page-password",
    )
    client = TestClient(create_app(settings, factory=factory, clock=clock))
    token = base64.b64encode(b"admin:goal-page-password").decode()
    page = client.get("/admin/campaigns/tiny", headers={"Authorization": f"Basic {token}"})
    assert page.status_code == 200
    html = " ".join(page.text.split())
    assert (
        "<strong>visit_booked</strong> (then exit): <strong>1</strong> of 2 enrolled reached it "
        "(50.0%); 0 before any step reached them." in html
    )
    assert "Time to goal: median 1d 6h (1 people)." in html
    assert "1 to 3 days: 1" in html
    assert (
        '<td>1</td><td>hello</td><td>email</td> <td class="n">2</td><td class="n">1</td>'
        '<td class="n">50.0%</td>' in html
    )


# ---------------------------------------------------------------- the migration


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request, tmp_path):
    import uuid

    import psycopg

    from tests.conftest import database_url

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    name = f"drip_goals_{uuid.uuid4().hex[:8]}"
    pg_admin = request.getfixturevalue("pg_admin")
    admin = psycopg.connect(pg_admin, autocommit=True, connect_timeout=5)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(pg_admin, name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_0013_migrates_a_database_that_holds_courses_and_back(empty_db, clock, policy, registry):
    """Enrollments with messages pointing at them: the goal columns are added in place
    (SQLite would refuse to copy the table), and taken away again."""
    from alembic import command

    from campaigns.db import make_engine, make_session_factory
    from campaigns.migrate import alembic_config, upgrade

    upgrade(empty_db, "0010")
    engine = make_engine(empty_db)
    factory = make_session_factory(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO subscribers (id, email, status, public_token, created_at, updated_at) "
            "VALUES (1, 'ana@example.com', 'active', 'tok', '2026-03-01', '2026-03-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO enrollments (id, subscriber_id, campaign_key, campaign_version, "
            "next_step_key, next_due_at, steps_done, status, source, created_at, updated_at) "
            "VALUES (1, 1, 'tiny', 1, 'second', '2026-03-03', 1, 'active', 'api', "
            "'2026-03-01', '2026-03-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO messages (id, enrollment_id, subscriber_id, campaign_key, "
            "campaign_version, step_key, channel, public_token, status, attempts, due_at, "
            "created_at, updated_at) VALUES (1, 1, 1, 'tiny', 1, 'hello', 'email', 'm1', "
            "'sent', 1, '2026-03-01', '2026-03-01', '2026-03-01')"
        )
    upgrade(empty_db)
    with factory() as s:
        e = s.get(Enrollment, 1)
        assert (e.next_step_key, e.goal_event_id, e.goal_reached_at) == ("second", None, None)
    command.downgrade(alembic_config(empty_db), "0010")
    upgrade(empty_db)
    with factory() as s:
        assert s.get(Enrollment, 1).status == "active"
    engine.dispose()


def test_a_jump_made_while_a_lesson_waits_goes_right_after_it_not_a_delay_later(
    factory, clock, jumps, policy, send_ctx
):
    """The lesson on its way goes first (order); the jumped-to step then goes at once,
    however long that lesson waited (here an hour), not its own delay after it."""
    ctx = dataclasses.replace(send_ctx, registry=jumps)
    _, eid = add_and_enroll(factory, clock, jumps, policy, email="ana@example.com")
    first = claim(factory, clock, jumps, policy)
    event(factory, clock, jumps, policy)
    clock.advance(hours=1)
    send_batch(ctx, "email", first.email)  # an hour late (a queue, an outage)
    clock.advance(seconds=30)
    claim(factory, clock, jumps, policy)
    with factory() as s:
        third = s.scalar(select(Message).where(Message.step_key == "third"))
    assert third is not None and third.created_at == clock.now()
    assert enrollment(factory, eid).status == "completed"
