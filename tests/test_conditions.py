"""Conditions and waits in the sequence file (campaigns/sequences/conditions.py), on SQLite
and PostgreSQL, through the real tick, claim and send path and the real event paths (the
link pages' record_engagement, a provider webhook's record_event): each condition of the
vocabulary, a wait that runs out and one an open or click ends, the skipped step's row and
reason, order per person, the cost of reading what conditions need, schema errors that
name file, step and field, and imports that set attributes. (The real worker and web app
run a branch end to end in tests/test_demo.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, update

from campaigns.audience.opt_outs import unsubscribe
from campaigns.care.contact_queue import request_contact
from campaigns.db import transaction
from campaigns.delivery import scheduler
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.providers import Outcome
from campaigns.delivery.sending import send_batch
from campaigns.intake.imports import import_file
from campaigns.models import Enrollment, Event, Message, Subscriber
from campaigns.reporting.funnels import campaign_report
from campaigns.reporting.timelines import course_timelines
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from campaigns.sequences.registry import Registry
from campaigns.states import EventType
from campaigns.tracking.events import NormalizedEvent, Recorded, record_event
from campaigns.tracking.machine import Why
from campaigns.tracking.portal import Visit, record_engagement
from tests.conftest import FIXTURES, T0
from tests.helpers import add_and_enroll, messages
from tests.test_order import Scripted

HEAD = """\
key: branchy
version: 1
name: Branching test course
locales: [en, es]
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
steps:
"""
LESSON = (
    "  - {key: lesson, delay: 0m, channels: [email], fallback: sms, template: note, "
    'subject: "Lesson"}\n'
)
BY_TEXT = """\
  - key: lesson_by_text
    wait_for: {event: opened, step: lesson, at_most: 2d}
    if: {has_channel: [email, sms]}
    unless: {opened: lesson}
    channels: [sms]
    template: note
"""
FOLLOW = '  - {key: follow, delay: 1d, channels: [email], template: note, subject: "Follow"}\n'
BOTH = {"email": "ana@example.com", "phone": "+12025550143", "first_name": "Ana"}
OTHER = {"email": "ben@example.com", "phone": "+12025550144", "first_name": "Ben"}


def course(tmp_path, steps: str, name: str = "defs") -> Registry:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "branchy.yaml").write_text(HEAD + steps)
    return Registry(folder, FIXTURES / "templates")


@pytest.fixture
def ctx(send_ctx):
    return send_ctx


def tick(ctx, reg):
    """A scheduler tick and its send tasks; the tick's totals."""
    ctx.registry = reg
    sent = []
    total = scheduler.tick(ctx.factory, ctx.clock, reg, ctx.policy, sent.append)
    for work in sent:
        send_batch(ctx, "email", work.email)
        send_batch(ctx, "sms", work.sms)
    return total


def enroll(ctx, reg, **person) -> int:
    return add_and_enroll(ctx.factory, ctx.clock, reg, ctx.policy, campaign="branchy", **person)[1]


def rows(factory, eid, step) -> list[Message]:
    return [m for m in messages(factory) if (m.enrollment_id, m.step_key) == (eid, step)]


def cursor(factory, eid) -> Enrollment:
    with factory() as s:
        return s.get(Enrollment, eid)


def engage(ctx, eid, step, kind="opened", automated=False, channel="email") -> None:
    """What the open pixel or a link page records (campaigns.tracking.portal)."""
    with transaction(ctx.factory) as s:
        msg = s.scalar(
            select(Message).where(
                Message.enrollment_id == eid, Message.step_key == step, Message.channel == channel
            )
        )
        visit = Visit(msg, s.get(Subscriber, msg.subscriber_id))
        route = {"opened": "o", "clicked": "m"}[kind]
        why = Why.SCANNER if automated else None  # a machine's, as the link pages judge it
        record_engagement(s, ctx.clock, visit, kind, {"route": route}, why=why)


def ask_for_call(ctx, reg, eid, step) -> None:
    with transaction(ctx.factory) as s:
        msg = s.scalar(
            select(Message).where(Message.enrollment_id == eid, Message.step_key == step)
        )
        visit = Visit(msg, s.get(Subscriber, msg.subscriber_id))
        request_contact(s, ctx.clock, reg, visit, preferred_channel="phone", preferred_time=None,
                        note=None)  # fmt: skip


def went(factory, eid, step) -> bool:
    return any(m.sent_at is not None for m in rows(factory, eid, step))


def skipped_by_condition(factory, eid, step) -> list[str]:
    found = rows(factory, eid, step)
    assert found and all(
        (m.status, m.reason_code, m.sent_at) == ("skipped", "condition", None) for m in found
    ), [(m.channel, m.status, m.reason) for m in found]
    return [m.reason for m in found]


# ---------------------------------------------------------------- waits


def test_a_non_opener_gets_the_text_version_when_the_wait_runs_out(ctx, tmp_path):
    reg = course(tmp_path, LESSON + BY_TEXT + FOLLOW)
    eid = enroll(ctx, reg, **BOTH)
    tick(ctx, reg)
    assert went(ctx.factory, eid, "lesson")
    waiting = cursor(ctx.factory, eid)
    assert waiting.next_step_key == "lesson_by_text"
    assert waiting.next_due_at == T0 + timedelta(days=2)
    assert waiting.waiting_for == "opened:lesson>lesson_by_text"
    ctx.clock.current = T0 + timedelta(days=2) - timedelta(minutes=1)
    assert tick(ctx, reg).claimed == 0
    ctx.clock.current = T0 + timedelta(days=2)
    tick(ctx, reg)
    (text,) = rows(ctx.factory, eid, "lesson_by_text")
    assert (text.channel, text.status, text.sent_at) == ("sms", "sent", T0 + timedelta(days=2))
    # The text is the whole lesson (`text_only`): its email never reached them.
    (body,) = [p.read_text() for p in (tmp_path / "outbox" / "sms").glob("*.txt")]
    assert "lesson_by_text (whole):" in body
    after = cursor(ctx.factory, eid)
    assert (after.next_step_key, after.next_due_at, after.waiting_for) == (
        "follow",
        T0 + timedelta(days=3),
        None,
    )


def test_an_open_ends_the_wait_at_once_and_the_step_ends_skipped_with_its_reason(
    ctx, tmp_path, registry
):
    reg = course(tmp_path, LESSON + BY_TEXT + FOLLOW)
    eid = enroll(ctx, reg, **BOTH)
    tick(ctx, reg)
    ctx.clock.advance(hours=1)
    engage(ctx, eid, "lesson")
    assert cursor(ctx.factory, eid).next_due_at == T0 + timedelta(hours=1)  # woken
    tick(ctx, reg)
    assert skipped_by_condition(ctx.factory, eid, "lesson_by_text") == [
        "condition: unless opened lesson, which holds"
    ]
    # The course moves on from the skip: the next delay counts from then.
    after = cursor(ctx.factory, eid)
    assert (after.next_step_key, after.next_due_at) == ("follow", T0 + timedelta(hours=25))
    # The report and the person's timeline say so.
    with ctx.factory() as s:
        report = campaign_report(s, reg, "branchy")
        (timeline,) = course_timelines(s, reg, ctx.policy, "branchy", "US")
    (step,) = [r for r in report.steps if r.step_key == "lesson_by_text"]
    assert step.skipped == 1
    assert step.skip_reasons == [("condition: unless opened lesson, which holds", 1)]
    (entry,) = [e for e in timeline.entries if e.step_key == "lesson_by_text"]
    assert (entry.status, entry.reason) == (
        "skipped",
        "condition: unless opened lesson, which holds",
    )
    assert any("opened the email of step 1 (lesson" in a.what for a in timeline.actions)


def test_a_click_ends_a_wait_for_an_open_and_a_machine_s_open_ends_nothing(ctx, tmp_path):
    reg = course(tmp_path, LESSON + BY_TEXT + FOLLOW)
    clicker, scanned = enroll(ctx, reg, **BOTH), enroll(ctx, reg, **OTHER)
    tick(ctx, reg)
    ctx.clock.advance(minutes=30)
    engage(ctx, clicker, "lesson", "clicked")  # images off: no pixel, but a click
    engage(ctx, scanned, "lesson", "opened", automated=True)  # a mail scanner's fetch
    assert cursor(ctx.factory, clicker).next_due_at == ctx.clock.now()
    assert cursor(ctx.factory, scanned).next_due_at == T0 + timedelta(days=2)
    tick(ctx, reg)
    skipped_by_condition(ctx.factory, clicker, "lesson_by_text")
    assert rows(ctx.factory, scanned, "lesson_by_text") == []
    ctx.clock.current = T0 + timedelta(days=2)
    tick(ctx, reg)
    assert went(ctx.factory, scanned, "lesson_by_text")  # a machine's open is no open


def test_a_wake_whose_click_is_judged_a_machine_s_afterwards_waits_to_its_old_end(ctx, tmp_path):
    """A burst of clicks is judged a machine's only when its second click comes: by then
    the first has woken the cursor. The claim finds the wait not over and puts the cursor
    back to the end it always had, so a later real open still counts."""
    reg = course(tmp_path, LESSON + BY_TEXT + FOLLOW)
    eid = enroll(ctx, reg, **BOTH)
    tick(ctx, reg)
    ctx.clock.advance(minutes=30)
    engage(ctx, eid, "lesson", "clicked")  # judged a person's when it came: wakes the cursor
    assert cursor(ctx.factory, eid).next_due_at == ctx.clock.now()
    with transaction(ctx.factory) as s:  # the burst's second click re-judges the first
        s.execute(update(Event).values(automated=True, automated_reason="many_links_at_once"))
    total = tick(ctx, reg)
    assert total.held == 1 and rows(ctx.factory, eid, "lesson_by_text") == []
    assert cursor(ctx.factory, eid).next_due_at == T0 + timedelta(days=2)
    ctx.clock.advance(hours=5)
    engage(ctx, eid, "lesson", "opened")  # the person opens it, later
    tick(ctx, reg)
    skipped_by_condition(ctx.factory, eid, "lesson_by_text")  # unless opened: it holds


def test_a_provider_s_open_webhook_ends_the_wait_once(ctx, tmp_path):
    reg = course(tmp_path, LESSON + BY_TEXT + FOLLOW)
    eid = enroll(ctx, reg, **BOTH)
    tick(ctx, reg)
    ctx.clock.advance(hours=2)
    (email,) = rows(ctx.factory, eid, "lesson")

    def opened(event_id: str) -> Recorded:
        ev = NormalizedEvent(
            provider="sendgrid",
            channel="email",
            provider_event_id=event_id,
            type=EventType.OPENED,
            reference=email.public_token,
            provider_message_id=None,
            occurred_at=ctx.clock.now(),
        )
        with transaction(ctx.factory) as s:
            return record_event(s, ctx.clock, ev)

    assert opened("sg-open-1") == Recorded.APPLIED
    assert cursor(ctx.factory, eid).next_due_at == T0 + timedelta(hours=2)
    tick(ctx, reg)
    skipped_by_condition(ctx.factory, eid, "lesson_by_text")
    ctx.clock.advance(minutes=5)
    assert opened("sg-open-1") == Recorded.DUPLICATE  # a redelivery moves nothing
    assert cursor(ctx.factory, eid).next_due_at == T0 + timedelta(hours=26)


def test_nobody_waits_for_a_step_that_will_not_go_to_them_either_way(ctx, tmp_path):
    """No phone, or no email: the text version can never be theirs, opened or not, so the
    step ends at once instead of after the two days."""
    reg = course(tmp_path, LESSON + BY_TEXT + FOLLOW)
    mail_only = enroll(ctx, reg, email="m@example.com")
    text_only = enroll(ctx, reg, phone="+12025550145")
    tick(ctx, reg)
    for eid in (mail_only, text_only):
        assert cursor(ctx.factory, eid).next_due_at == T0  # due at once
    tick(ctx, reg)
    for eid in (mail_only, text_only):
        assert skipped_by_condition(ctx.factory, eid, "lesson_by_text") == [
            "condition: if has email and text, which does not hold"
        ]
        assert cursor(ctx.factory, eid).next_due_at == T0 + timedelta(days=1)
    # The text-only person got the lesson itself by text, once.
    assert [m.channel for m in rows(ctx.factory, text_only, "lesson") if m.sent_at] == ["sms"]


def test_a_wait_whose_event_came_before_the_cursor_reached_it_is_over_at_once(ctx, tmp_path):
    reg = course(
        tmp_path,
        LESSON
        + '  - {key: second, delay: 1d, channels: [email], template: note, subject: "Two"}\n'
        + "  - key: clicked_thanks\n"
        + "    wait_for: {event: clicked, step: lesson, at_most: 3d}\n"
        + "    if: {clicked: lesson}\n"
        + '    channels: [email]\n    template: note\n    subject: "Thanks"\n',
    )
    eid = enroll(ctx, reg, **BOTH)
    tick(ctx, reg)
    ctx.clock.advance(hours=3)
    engage(ctx, eid, "lesson", "clicked")  # waits on `second`: wakes nothing
    assert cursor(ctx.factory, eid).next_due_at == T0 + timedelta(days=1)
    ctx.clock.current = T0 + timedelta(days=1)
    tick(ctx, reg)
    assert went(ctx.factory, eid, "second")
    assert cursor(ctx.factory, eid).next_due_at == T0 + timedelta(days=1)  # not 3 days on
    ctx.clock.advance(seconds=5)
    tick(ctx, reg)
    assert went(ctx.factory, eid, "clicked_thanks")


def test_a_wait_ended_at_night_waits_for_the_text_hours(ctx, tmp_path):
    reg = course(
        tmp_path,
        LESSON
        + "  - key: quick_tip\n"
        + "    wait_for: {event: clicked, step: lesson, at_most: 3d}\n"
        + "    if: {clicked: lesson}\n"
        + "    channels: [sms]\n    template: note\n",
    )
    eid = enroll(ctx, reg, **BOTH)
    tick(ctx, reg)
    ctx.clock.current = datetime(2026, 3, 3, 4, 0, tzinfo=UTC)  # 23:00 in New York
    engage(ctx, eid, "lesson", "clicked")
    total = tick(ctx, reg)
    assert total.held == 1 and rows(ctx.factory, eid, "quick_tip") == []
    morning = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # 08:00 in New York
    assert cursor(ctx.factory, eid).next_due_at == morning
    ctx.clock.current = morning
    tick(ctx, reg)
    (tip,) = rows(ctx.factory, eid, "quick_tip")
    assert (tip.status, tip.sent_at) == ("sent", morning)


def test_a_woken_step_waits_for_the_message_still_on_its_way_before_it(ctx, tmp_path):
    """Order per person (invariant 10): the open wakes the wait, but the lesson's text is
    still being retried, so the next step goes only once that text has gone."""
    reg = course(
        tmp_path,
        '  - {key: lesson, delay: 0m, channels: [email, sms], template: note, subject: "L"}\n'
        "  - key: deeper\n"
        "    wait_for: {event: opened, step: lesson, at_most: 2d}\n"
        "    if: {opened: lesson}\n"
        '    channels: [email]\n    template: note\n    subject: "Deeper"\n',
    )
    ctx.sms_provider = Scripted({"outcome": Outcome.TRANSIENT, "retry_after": 600})
    eid = enroll(ctx, reg, **BOTH)
    tick(ctx, reg)
    (text,) = [m for m in rows(ctx.factory, eid, "lesson") if m.channel == "sms"]
    assert text.status == "retry"
    ctx.clock.advance(minutes=1)
    engage(ctx, eid, "lesson")
    total = tick(ctx, reg)
    assert total.held == 1 and rows(ctx.factory, eid, "deeper") == []
    for _ in range(130):
        ctx.clock.advance(seconds=5)
        tick(ctx, reg)
    (text,) = [m for m in rows(ctx.factory, eid, "lesson") if m.channel == "sms"]
    (deeper,) = rows(ctx.factory, eid, "deeper")
    assert text.status == "sent" and deeper.status == "sent"
    assert deeper.sent_at >= text.sent_at


# ---------------------------------------------------------------- each condition


FIRST = '  - {key: first, delay: 0m, channels: [email, sms], template: note, subject: "One"}\n'


def _gated(condition: str) -> str:
    return (
        FIRST + f"  - key: gated\n    delay: 1h\n    {condition}\n"
        '    channels: [email, sms]\n    template: note\n    subject: "Gated"\n'
    )


def _open(ctx, reg, eid):
    engage(ctx, eid, "first")


def _click(ctx, reg, eid):
    engage(ctx, eid, "first", "clicked")


def _call(ctx, reg, eid):
    ask_for_call(ctx, reg, eid, "first")


def _stop_email(ctx, reg, eid):
    with transaction(ctx.factory) as s:
        sub = s.get(Subscriber, s.get(Enrollment, eid).subscriber_id)
        unsubscribe(s, ctx.clock, sub, channels=("email",), source="link")


def _plan(value):
    def set_plan(ctx, reg, eid):
        with transaction(ctx.factory) as s:
            s.get(Subscriber, s.get(Enrollment, eid).subscriber_id).attributes = {"plan": value}

    return set_plan


def _vip(ctx, reg, eid):
    with transaction(ctx.factory) as s:
        s.get(Subscriber, s.get(Enrollment, eid).subscriber_id).attributes = {"vip": "TRUE"}


def _open_then_call(ctx, reg, eid):
    _open(ctx, reg, eid)
    _call(ctx, reg, eid)


def _nothing(ctx, reg, eid):
    pass


ES = {**BOTH, "locale": "es-MX"}
PHONE = {"phone": "+12025550146", "first_name": "Pat"}
MAIL = {"email": "mo@example.com", "first_name": "Mo"}

# (condition, (person, doing) it holds for, (person, doing) it does not hold for)
CASES = [
    ("if: {opened: first}", (BOTH, _open), (BOTH, _nothing)),
    ("if: {opened: first} # a click", (BOTH, _click), (BOTH, _nothing)),  # proves the open
    ("if: {clicked: first}", (BOTH, _click), (BOTH, _open)),  # an open is no click
    ("unless: {opened: first}", (BOTH, _nothing), (BOTH, _open)),
    ("if: {asked_for_call: true}", (BOTH, _call), (BOTH, _nothing)),
    ("unless: {asked_for_call: true}", (BOTH, _nothing), (BOTH, _call)),
    ("if: {asked_for_call: false}", (BOTH, _nothing), (BOTH, _call)),
    ("if: {has_channel: sms}", (PHONE, _nothing), (MAIL, _nothing)),
    ("if: {has_channel: [email, sms]}", (BOTH, _nothing), (PHONE, _nothing)),
    ("if: {has_channel: email} # unsubscribed", (BOTH, _nothing), (BOTH, _stop_email)),
    ("if: {lacks_channel: email}", (PHONE, _nothing), (BOTH, _nothing)),
    ("if: {lacks_channel: email} # unsubscribed", (BOTH, _stop_email), (BOTH, _nothing)),
    ("if: {locale: es}", (ES, _nothing), (BOTH, _nothing)),
    ("if: {attribute: {plan: medicare}}", (BOTH, _plan("Medicare ")), (BOTH, _plan("other"))),
    ("if: {attribute: {plan: [a, medicare]}}", (BOTH, _plan("medicare")), (BOTH, _nothing)),
    ("unless: {attribute: {vip: true}}", (BOTH, _plan("x")), (BOTH, _vip)),
    ("if: {any: [{locale: es}, {opened: first}]}", (BOTH, _open), (BOTH, _nothing)),
    ("if: {all: [{opened: first}, {has_channel: sms}]}", (BOTH, _open), (MAIL, _open)),
    ("if: {opened: first, asked_for_call: true}", (BOTH, _open_then_call), (BOTH, _call)),
]


@pytest.mark.parametrize(("condition", "holds", "fails"), CASES, ids=[c[0] for c in CASES])
def test_each_condition_decides_whether_its_step_goes(ctx, tmp_path, condition, holds, fails):
    reg = course(tmp_path, _gated(condition))
    people = []
    for n, case in enumerate((holds, fails)):
        person = dict(case[0])
        for key in ("email", "phone"):
            if person.get(key):  # two people, two addresses
                person[key] = person[key].replace("@", f"+{n}@") if key == "email" else (
                    person[key][:-1] + str(n))  # fmt: skip
        people.append((enroll(ctx, reg, **person), case[1], n == 0))
    tick(ctx, reg)
    ctx.clock.advance(minutes=10)
    for eid, doing, _ in people:
        doing(ctx, reg, eid)
    ctx.clock.current = T0 + timedelta(hours=1)
    tick(ctx, reg)
    for eid, _, applies in people:
        if applies:
            assert went(ctx.factory, eid, "gated"), [
                (m.channel, m.status, m.reason) for m in rows(ctx.factory, eid, "gated")
            ]
        else:
            (why, *_) = skipped_by_condition(ctx.factory, eid, "gated")
            assert why.startswith("condition: ")
        assert cursor(ctx.factory, eid).status == "completed"


# ---------------------------------------------------------------- what it costs


def _statements(engine, during) -> list[str]:
    seen = []

    def note(_conn, _cursor, statement, *_):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        during()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


@pytest.mark.parametrize("people", [3, 12])
def test_conditions_are_read_once_per_batch_and_only_when_a_step_branches(
    ctx, engine, tmp_path, people
):
    """A claim in which no step branches sends the statements it always sent; one whose
    steps test opens, calls and the language adds one query for each, for the whole
    batch, however many people it holds."""
    reg = course(tmp_path, _gated("if: {opened: first, asked_for_call: false, locale: en}"))
    straight = Registry(FIXTURES / "definitions", FIXTURES / "templates")
    (tmp_path / "defs" / "tiny.yaml").write_text(
        (FIXTURES / "definitions" / "tiny.yaml").read_text()
    )
    for i in range(people):
        add_and_enroll(ctx.factory, ctx.clock, straight, ctx.policy, email=f"t{i}@example.com")
        enroll(ctx, reg, email=f"b{i}@example.com")

    def claim():
        with transaction(ctx.factory) as s:
            return claim_due(s, ctx.clock, reg, ctx.policy)

    reads = ("events", "contact_requests", "attributes")
    work = []
    first = _statements(engine, lambda: work.append(claim()))  # first steps: no branches
    assert not [q for q in first if any(r in q for r in reads)], first
    ctx.registry = reg
    send_batch(ctx, "email", work[0].email)
    ctx.clock.current = T0 + timedelta(hours=1)  # the branchy people's `gated`, alone
    gated = _statements(engine, claim)
    extra = [q for q in gated if any(r in q for r in reads)]
    assert len(extra) == 3 and len(gated) == len(first) + 3, gated
    with ctx.factory() as s:
        statuses = {m.status for m in s.scalars(select(Message).where(Message.step_key == "gated"))}
    assert statuses == {"skipped"}  # nobody opened `first`


# ---------------------------------------------------------------- the file


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        (
            FIRST + "  - {key: two, delay: 1d, if: {openned: first}, channels: [email], "
            'template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field if: unknown condition 'openned' (known: opened,",
        ),
        (
            FIRST + '  - {key: two, delay: 1d, if: "opened first", channels: [email], '
            'template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field if: write a condition as a mapping",
        ),
        (
            FIRST + "  - {key: two, delay: 1d, unless: {}, channels: [email], template: note, "
            'subject: "x"}\n',
            "branchy.yaml: step 2 (two) field unless: a condition needs at least one test",
        ),
        (
            FIRST + "  - {key: two, delay: 1d, if: {opened: three}, channels: [email], "
            'template: note, subject: "x"}\n'
            '  - {key: three, delay: 1d, channels: [email], template: note, subject: "y"}\n',
            "branchy.yaml: step 2 (two) field if.opened: 'three' is not an earlier step",
        ),
        (
            FIRST + "  - {key: two, delay: 1d, if: {any: [{clicked: nowhere}]}, "
            'channels: [email], template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field if.clicked: 'nowhere' is not a step of this course",
        ),
        (
            "  - {key: one, delay: 0m, channels: [sms], template: note}\n"
            "  - {key: two, delay: 1d, if: {opened: one}, channels: [email], template: note, "
            'subject: "x"}\n',
            "branchy.yaml: step 2 (two) field if.opened: step 'one' sends no email",
        ),
        (
            FIRST + "  - {key: two, delay: 1d, if: {locale: fr}, channels: [email], "
            'template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field if.locale: 'fr' is not one of the course's locales",
        ),
        (
            FIRST + "  - {key: two, delay: 1d, if: {has_channel: fax}, channels: [email], "
            'template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field if.has_channel.0: Input should be 'email' or 'sms'",
        ),
        (
            FIRST + "  - {key: two, delay: 1d, if: {asked_for_call: diagnosis}, "
            'channels: [email], template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field if.asked_for_call: Input should be a valid boolean",
        ),
        (
            FIRST + "  - {key: two, delay: 1d, if: {attribute: {Plan: x}}, channels: [email], "
            'template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field if.attribute: attribute name 'Plan'",
        ),
        (
            FIRST + "  - {key: two, wait_for: {event: opened, step: first, at_most: 0m}, "
            'channels: [email], template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field wait_for.at_most: at_most must be longer than 0m",
        ),
        (
            FIRST + "  - {key: two, wait_for: {event: bounced, step: first, at_most: 1d}, "
            'channels: [email], template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field wait_for.event: Input should be 'opened' or "
            "'clicked'",
        ),
        (
            FIRST + "  - {key: two, delay: 1d, wait_for: {event: opened, step: first, "
            'at_most: 1d}, channels: [email], template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field delay: give `delay` or `wait_for`, not both",
        ),
        (
            FIRST + "  - {key: two, wait_for: {event: opened, step: two, at_most: 1d}, "
            'channels: [email], template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field wait_for.step: 'two' is not an earlier step",
        ),
        (
            "  - {key: one, wait_for: {event: opened, step: one, at_most: 1d}, "
            'channels: [email], template: note, subject: "x"}\n',
            "branchy.yaml: step 1 (one) field wait_for: the first step has no step before it",
        ),
        (
            FIRST + '  - {key: two, channels: [email], template: note, subject: "x"}\n',
            "branchy.yaml: step 2 (two) field delay: Field required (or `wait_for`)",
        ),
    ],
)
def test_a_schema_error_names_the_file_the_step_and_the_field(tmp_path, steps, problem):
    path = tmp_path / "branchy.yaml"
    path.write_text(HEAD + steps)
    with pytest.raises(DefinitionError) as caught:
        parse_campaign(path, FIXTURES / "templates")
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_the_vocabulary_reads_back_as_a_marketer_wrote_it(tmp_path):
    path = tmp_path / "branchy.yaml"
    path.write_text(
        HEAD
        + FIRST
        + "  - key: two\n"
        + "    wait_for: {event: clicked, step: first, at_most: 1d 12h}\n"
        + "    if: {any: [{locale: es}, {attribute: {plan: [a, B]}}], lacks_channel: sms}\n"
        + "    unless: {asked_for_call: true}\n"
        + '    channels: [email]\n    template: note\n    subject: "x"\n'
    )
    step = parse_campaign(path, FIXTURES / "templates").steps[1]
    assert step.delay == timedelta(days=1, hours=12)
    assert step.branch.describe() == (
        "if has no text and (reads es or plan is a or b), unless asked for a call"
    )
    assert step.wait_for.describe() == "up to 1d 12h for a click in first"


# ---------------------------------------------------------------- attributes from an import


def test_an_import_sets_attributes_and_a_condition_tests_them(ctx, tmp_path):
    reg = course(tmp_path, _gated("if: {attribute: {plan: medicare}}"))
    people = tmp_path / "people.csv"
    people.write_text(
        "email,consent_email,attr_plan,Attr Region\n"
        "m1@example.com,yes,Medicare,north\n"
        "m2@example.com,yes,other,\n"
        f"m3@example.com,yes,{'x' * 201},\n"
    )
    report = import_file(ctx.factory, ctx.clock, reg, ctx.policy, people, campaign_key="branchy")
    assert report.imported == 2 and [r.line for r in report.rejects] == [4]
    assert "attr_plan: longer than 200 characters" in report.rejects[0].reason
    with ctx.factory() as s:
        found = {x.email: x.attributes for x in s.scalars(select(Subscriber))}
    assert found == {
        "m1@example.com": {"plan": "Medicare", "region": "north"},
        "m2@example.com": {"plan": "other"},
    }
    # Again, with a blank cell: the attribute stays as it was.
    people.write_text("email,consent_email,attr_plan,attr_region\nm1@example.com,yes,,south\n")
    import_file(ctx.factory, ctx.clock, reg, ctx.policy, people, campaign_key="branchy")
    with ctx.factory() as s:
        one = s.scalar(select(Subscriber).where(Subscriber.email == "m1@example.com"))
        ids = {x.email: e.id for x, e in s.execute(select(Subscriber, Enrollment).join(Enrollment))}
        assert one.attributes == {"plan": "Medicare", "region": "south"}
    tick(ctx, reg)
    ctx.clock.current = T0 + timedelta(hours=1)
    tick(ctx, reg)
    assert went(ctx.factory, ids["m1@example.com"], "gated")
    skipped_by_condition(ctx.factory, ids["m2@example.com"], "gated")
