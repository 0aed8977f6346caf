"""The frequency cap across campaigns (campaigns/delivery/frequency_cap.py), on SQLite and
PostgreSQL, through the real tick, claim and send path: two campaigns for one person over
the day cap, held to the next day in the person's own zone and then sent (nothing
dropped, each campaign's order kept), the week cap, a campaign's override, the one-offs
that are exempt, the hold in the timeline and the report, the counts read once per batch
and only when a cap is set, and bad settings and files refused with a clear error. (A
real worker and its scheduler release a held step in tests/test_frequency_cap_workers.py.)"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from campaigns.db import transaction
from campaigns.delivery import scheduler
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.sending import send_batch
from campaigns.intake.confirmations import send_confirmations
from campaigns.links import Signer
from campaigns.models import CapHold, Enrollment, Message, Subscriber
from campaigns.reporting.funnels import campaign_report
from campaigns.reporting.timelines import course_timelines, timeline_lines
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from campaigns.sequences.caps import Cap
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.tracking.inbound import HelpDesk, InboundText, handle_inbound_sms
from settings import SettingsError, load_settings
from tests.conftest import FIXTURES, T0
from tests.helpers import add_and_enroll
from tests.test_conditions import _statements
from workers.cli.reports import hold_lines
from workers.providers.outbox import LocalOutbox

ALL_DAY = 'send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}'
TINY = f"""\
key: tiny
version: 1
name: Tiny
locales: [en]
{ALL_DAY}
@CAP@steps:
  - {{key: a1, delay: 0m, channels: [email], template: hello, subject: "A1"}}
  - {{key: a2, delay: 1d, channels: [email], template: second, subject: "A2"}}
"""
BRANCHY = f"""\
key: branchy
version: 1
name: Other course
locales: [en]
{ALL_DAY}
@CAP@steps:
@STEPS@"""
SECRET = "cap-test-secret-key-0123456789abcdefghij"
PACIFIC = ZoneInfo("America/Los_Angeles")
NEW_YORK = ZoneInfo("America/New_York")
PERSON = {"email": "ana@example.com", "first_name": "Ana", "timezone": "America/Los_Angeles"}


def _steps(n: int) -> str:
    return "".join(
        f"  - {{key: b{i}, delay: {'0m' if i == 1 else '1d'}, channels: [email], "
        f'template: note, subject: "B{i}"}}\n'
        for i in range(1, n + 1)
    )


def courses(tmp_path, tiny_cap: str = "", other_cap: str = "", other_steps: int = 2) -> Registry:
    folder = tmp_path / "defs"
    folder.mkdir(exist_ok=True)
    (folder / "tiny.yaml").write_text(TINY.replace("@CAP@", tiny_cap))
    (folder / "branchy.yaml").write_text(
        BRANCHY.replace("@CAP@", other_cap).replace("@STEPS@", _steps(other_steps))
    )
    return Registry(folder, FIXTURES / "templates")


@pytest.fixture
def ctx(send_ctx):
    return send_ctx


def capped(ctx, per_day=0, per_week=0):
    ctx.policy = dataclasses.replace(ctx.policy, frequency_cap=Cap(per_day, per_week))
    return ctx.policy


def tick(ctx, reg):
    ctx.registry = reg
    sent = []
    total = scheduler.tick(ctx.factory, ctx.clock, reg, ctx.policy, sent.append)
    for work in sent:
        send_batch(ctx, "email", work.email)
        send_batch(ctx, "sms", work.sms)
    return total


def enroll(ctx, reg, campaign, **person) -> int:
    return add_and_enroll(ctx.factory, ctx.clock, reg, ctx.policy, campaign=campaign, **person)[1]


def sent(factory) -> list[Message]:
    with factory() as s:
        return s.scalars(
            select(Message).where(Message.sent_at.is_not(None)).order_by(Message.sent_at)
        ).all()


def holds(factory) -> list[CapHold]:
    with factory() as s:
        return s.scalars(select(CapHold).order_by(CapHold.id)).all()


def cursor(factory, eid) -> Enrollment:
    with factory() as s:
        return s.get(Enrollment, eid)


def local_midnight(day: int, zone=PACIFIC) -> datetime:
    """Midnight starting 2 March 2026 + `day` days in `zone`, in UTC."""
    return datetime(2026, 3, 2 + day, tzinfo=zone).astimezone(UTC)


# ---------------------------------------------------------------- the day cap


def test_two_campaigns_over_the_day_cap_are_held_to_the_next_day_in_the_persons_zone(ctx, tmp_path):
    """One a day: the second campaign's first step waits for the person's own midnight
    (Los Angeles, not the service's New York), then goes; every step goes in the end, one
    per local day, each campaign in its own order."""
    reg = courses(tmp_path)
    capped(ctx, per_day=1)
    tiny = enroll(ctx, reg, "tiny", **PERSON)
    other = enroll(ctx, reg, "branchy", **PERSON)
    assert tick(ctx, reg).held == 1
    assert [m.step_key for m in sent(ctx.factory)] == ["a1"]
    held = cursor(ctx.factory, other)
    assert (held.next_step_key, held.next_due_at) == ("b1", local_midnight(1))
    (hold,) = holds(ctx.factory)
    assert (hold.enrollment_id, hold.step_key, hold.cap, hold.allowed, hold.counted) == (
        other,
        "b1",
        "day",
        1,
        1,
    )
    assert hold.held_until == local_midnight(1) and hold.held_at == T0
    # Midnight in New York is not the person's midnight: nothing yet.
    ctx.clock.current = local_midnight(1, NEW_YORK)
    assert tick(ctx, reg).claimed == 0
    ctx.clock.current = local_midnight(1)
    tick(ctx, reg)
    assert [m.step_key for m in sent(ctx.factory)] == ["a1", "b1"]
    # tiny's a2 falls due a day after a1, on the day b1 took: held to the next one.
    ctx.clock.current = T0 + timedelta(days=1)
    assert tick(ctx, reg).held == 1
    assert cursor(ctx.factory, tiny).next_due_at == local_midnight(2)
    # Both a2 (held there) and b2 (a day after b1) fall due at that midnight: one goes.
    ctx.clock.current = local_midnight(2)
    assert tick(ctx, reg).held == 1
    ctx.clock.current = local_midnight(3)
    tick(ctx, reg)
    went = sent(ctx.factory)
    assert [m.step_key for m in went] == ["a1", "b1", "a2", "b2"]  # nothing dropped
    days = [m.sent_at.astimezone(PACIFIC).date() for m in went]
    assert len(set(days)) == 4  # one a day, in the person's own days
    assert {cursor(ctx.factory, e).status for e in (tiny, other)} == {"completed"}
    assert [(h.step_key, h.held_until) for h in holds(ctx.factory)] == [
        ("b1", local_midnight(1)),
        ("a2", local_midnight(2)),
        ("b2", local_midnight(3)),
    ]


def test_a_step_that_does_not_send_is_not_held_and_does_not_count(ctx, tmp_path):
    """A step the person cannot get (no address for its channel) ends at once with its
    reason, cap or no cap; and what never went leaves room for the next."""
    reg = courses(tmp_path)
    capped(ctx, per_day=1)
    phone_only = {"phone": "+12025550143", "first_name": "Ben"}
    tiny = enroll(ctx, reg, "tiny", **phone_only)
    other = enroll(ctx, reg, "branchy", **phone_only)
    assert tick(ctx, reg).held == 0
    assert not holds(ctx.factory)
    with ctx.factory() as s:
        assert {m.status for m in s.scalars(select(Message))} == {"skipped"}
    assert cursor(ctx.factory, tiny).next_step_key == "a2"
    assert cursor(ctx.factory, other).next_step_key == "b2"


# ---------------------------------------------------------------- the week cap


def test_the_week_cap_holds_a_step_until_the_seven_days_have_room(ctx, tmp_path):
    """Three a week, a course with a step a day: the fourth waits until the first has
    left the seven days (today and the six before), at the person's midnight across the
    change to daylight saving time (8 March); then the rest go."""
    reg = courses(tmp_path, other_steps=5)
    capped(ctx, per_week=3)
    eid = enroll(ctx, reg, "branchy", email="cy@example.com")  # New York, the default
    for day in range(4):
        ctx.clock.current = T0 + timedelta(days=day)
        tick(ctx, reg)
    assert [m.step_key for m in sent(ctx.factory)] == ["b1", "b2", "b3"]
    (hold,) = holds(ctx.factory)
    assert (hold.step_key, hold.cap, hold.allowed, hold.counted) == ("b4", "week", 3, 3)
    # Monday 9 March: Monday 2 March has left the week; midnight is 04:00 UTC (EDT now).
    monday = datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
    assert hold.held_until == monday == local_midnight(7, NEW_YORK)
    assert cursor(ctx.factory, eid).next_due_at == monday
    ctx.clock.current = monday - timedelta(minutes=1)
    assert tick(ctx, reg).claimed == 0
    ctx.clock.current = monday
    tick(ctx, reg)
    ctx.clock.current = monday + timedelta(days=1)
    tick(ctx, reg)
    assert [m.step_key for m in sent(ctx.factory)] == ["b1", "b2", "b3", "b4", "b5"]
    assert cursor(ctx.factory, eid).status == "completed"
    assert len(holds(ctx.factory)) == 1


# ---------------------------------------------------------------- a campaign's override


def test_a_campaign_override_lifts_the_cap_for_its_own_steps(ctx, tmp_path):
    reg = courses(tmp_path, other_cap="frequency_cap: {per_day: 0}\n")
    capped(ctx, per_day=1)
    enroll(ctx, reg, "tiny", **PERSON)
    enroll(ctx, reg, "branchy", **PERSON)
    assert tick(ctx, reg).held == 0
    assert sorted(m.step_key for m in sent(ctx.factory)) == ["a1", "b1"]


def test_a_campaign_override_caps_its_steps_counting_every_campaign(ctx, tmp_path):
    """No cap in the settings; tiny's file says one a day: what another campaign sent
    today counts against it."""
    reg = courses(tmp_path, tiny_cap="frequency_cap: {per_day: 1}\n")
    assert not ctx.policy.frequency_cap.active
    other = enroll(ctx, reg, "branchy", **PERSON)
    tiny = enroll(ctx, reg, "tiny", **PERSON)
    assert tick(ctx, reg).held == 1
    assert [m.step_key for m in sent(ctx.factory)] == ["b1"]
    assert cursor(ctx.factory, tiny).next_due_at == local_midnight(1)
    assert cursor(ctx.factory, other).next_step_key == "b2"


# ---------------------------------------------------------------- exempt one-offs


def test_confirmations_and_keyword_replies_are_neither_capped_nor_counted(ctx, tmp_path):
    """One a day. A sign-up confirmation mailed today leaves the first lesson its place;
    with the lesson sent, a HELP text is still answered and another confirmation still
    mailed: they never go through the outbox the cap counts."""
    reg = courses(tmp_path)
    capped(ctx, per_day=1)
    outbox = LocalOutbox(tmp_path / "confirmations")

    def confirm() -> int:
        return send_confirmations(
            ctx.factory,
            ctx.clock,
            outbox,
            Signer(b"confirm-test-secret-0123456789abcdef"),
            templates_dir=FIXTURES / "templates",
            brand="Lunara",
            postal_address="1 Main St",
            base_url="https://care.example",
        )

    def pending(email: str) -> None:
        with transaction(ctx.factory) as s:
            s.add(
                Subscriber(
                    email=email,
                    status="pending",
                    public_token=secrets.token_urlsafe(32),
                    created_at=ctx.clock.now(),
                    updated_at=ctx.clock.now(),
                    confirmation_requested_at=ctx.clock.now(),
                )
            )

    pending("ana@example.com")
    assert confirm() == 1
    eid = enroll(ctx, reg, "tiny", **PERSON, phone="+12025550143")
    assert tick(ctx, reg).held == 0
    assert [(m.enrollment_id, m.step_key) for m in sent(ctx.factory)] == [(eid, "a1")]
    with transaction(ctx.factory) as s:
        reply = handle_inbound_sms(
            s, ctx.clock, InboundText("twilio", "+12025550143", "HELP", "SMhelp1"),
            help_desk=HelpDesk(),
        )  # fmt: skip
    assert reply and "Lunara" in reply
    pending("ben@example.com")
    assert confirm() == 1


# ---------------------------------------------------------------- the timeline and the report


def test_the_timeline_and_the_report_show_the_hold_before_and_after_it_is_sent(ctx, tmp_path):
    reg = courses(tmp_path)
    capped(ctx, per_day=1)
    enroll(ctx, reg, "tiny", **PERSON)
    enroll(ctx, reg, "branchy", **PERSON)
    tick(ctx, reg)

    def read():
        with ctx.factory() as s:
            (timeline,) = course_timelines(s, reg, ctx.policy, "branchy", "US")
            return timeline, campaign_report(s, reg, "branchy"), campaign_report(s, reg, "tiny")

    timeline, report, untouched = read()
    (hold,) = timeline.holds
    assert (hold.step_key, hold.position, hold.cap, hold.until) == (
        "b1",
        1,
        "day",
        local_midnight(1),
    )
    assert (
        "Mon 02 Mar 07:00 PST  step 1 (b1) HELD by the frequency cap (1 of 1 this day) "
        "until Tue 03 Mar 00:00 PST"
    ) in "\n".join(timeline_lines(timeline))
    held = report.held
    assert (held.holds, held.people, held.still_held, held.by_cap) == (1, 1, 1, {"day": 1})
    assert [(s.step_key, s.holds, s.people, s.still_held) for s in held.steps] == [("b1", 1, 1, 1)]
    assert report.to_dict()["held_by_frequency_cap"]["still_held"] == 1
    assert hold_lines(held)[1] == (
        "held by the frequency cap: 1 hold(s) of 1 person(s) (1 by the day cap); "
        "1 still held, to be sent later (never dropped)"
    )
    assert untouched.held.holds == 0 and hold_lines(untouched.held)[1].endswith(": none")
    ctx.clock.current = local_midnight(1)
    tick(ctx, reg)
    timeline, report, _ = read()
    assert len(timeline.holds) == 1  # kept after the step went
    (entry,) = [e for e in timeline.entries if e.step_key == "b1"]
    assert entry.sent_at == local_midnight(1) and entry.late == timedelta(0)
    assert (report.held.holds, report.held.still_held) == (1, 0)
    (b1,) = [s for s in report.steps if s.step_key == "b1"]
    assert b1.sent == 1


# ---------------------------------------------------------------- what it costs


@pytest.mark.parametrize("people", [3, 12])
def test_the_counts_are_read_once_per_batch_and_only_when_a_cap_is_set(
    ctx, engine, tmp_path, people
):
    reg = courses(tmp_path)
    for i in range(people):
        enroll(ctx, reg, "tiny", email=f"t{i}@example.com")
        enroll(ctx, reg, "branchy", email=f"t{i}@example.com")

    def claim():
        with transaction(ctx.factory) as s:
            return claim_due(s, ctx.clock, reg, ctx.policy)

    def reads(statements):
        return [q for q in statements if "coalesce(messages.sent_at" in q.lower()]

    work = []
    uncapped = _statements(engine, lambda: work.append(claim()))  # every first step goes
    assert not reads(uncapped) and work[0].held == 0
    ctx.registry = reg
    send_batch(ctx, "email", work[0].email)
    ctx.clock.current = T0 + timedelta(days=1)  # every second step falls due
    capped(ctx, per_day=1)
    statements = _statements(engine, lambda: work.append(claim()))
    assert len(reads(statements)) == 1, statements
    assert work[1].held == people  # each person's second campaign waits
    # The read, the held cursors' UPDATE and the holds' INSERT, whatever the batch holds.
    assert len(statements) == len(uncapped) + 3, statements


# ---------------------------------------------------------------- settings and files


def test_settings_give_the_cap_zero_or_empty_is_none():
    s = load_settings(environment="test", secret_key=SECRET)
    assert (s.frequency_cap_per_day, s.frequency_cap_per_week) == (2, 5)
    assert Policy.from_settings(s).frequency_cap == Cap(2, 5)
    off = load_settings(
        environment="test", secret_key=SECRET, frequency_cap_per_day="", frequency_cap_per_week=0
    )
    assert not Policy.from_settings(off).frequency_cap.active


def test_an_empty_environment_variable_is_no_cap(monkeypatch):
    monkeypatch.setenv("FREQUENCY_CAP_PER_WEEK", "")
    monkeypatch.setenv("FREQUENCY_CAP_PER_DAY", "3")
    assert Policy.from_settings(
        load_settings(environment="test", secret_key=SECRET)
    ).frequency_cap == Cap(3, 0)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"frequency_cap_per_day": -1}, "FREQUENCY_CAP_PER_DAY: Input should be greater than"),
        ({"frequency_cap_per_week": "many"}, "FREQUENCY_CAP_PER_WEEK: Input should be a valid"),
        (
            {"frequency_cap_per_day": 3, "frequency_cap_per_week": 2},
            "FREQUENCY_CAP_PER_WEEK must be 0 (no cap) or at least FREQUENCY_CAP_PER_DAY",
        ),
    ],
)
def test_bad_cap_settings_are_refused_naming_the_variable(values, problem):
    with pytest.raises(SettingsError) as err:
        load_settings(environment="test", secret_key=SECRET, **values)
    assert problem in str(err.value)


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        (
            "{per_day: -1}",
            "tiny.yaml: field frequency_cap.per_day: Input should be greater than or equal to 0",
        ),
        ("{per_day: lots}", "tiny.yaml: field frequency_cap.per_day: Input should be a valid"),
        ("{per_month: 3}", "tiny.yaml: field frequency_cap.per_month: Extra inputs are not"),
        (
            "{per_day: 3, per_week: 2}",
            "tiny.yaml: field frequency_cap: per_week (2) must be 0 (no cap) or at least "
            "per_day (3)",
        ),
        ("{}", "tiny.yaml: field frequency_cap: give per_day, per_week or both (0 is no cap)"),
        ("3", "tiny.yaml: field frequency_cap: Input should be a valid dictionary"),
    ],
)
def test_a_bad_frequency_cap_in_a_file_names_file_and_field(tmp_path, written, problem):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("@CAP@", f"frequency_cap: {written}\n"))
    with pytest.raises(DefinitionError) as err:
        parse_campaign(path, FIXTURES / "templates")
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_a_file_s_override_keeps_the_setting_it_does_not_name(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("@CAP@", "frequency_cap: {per_week: 9}\n"))
    campaign = parse_campaign(path, FIXTURES / "templates")
    assert Policy(frequency_cap=Cap(2, 5)).cap_for(campaign) == Cap(2, 9)


def test_the_admin_campaign_page_shows_the_hold(ctx, tmp_path):
    from fastapi.testclient import TestClient

    from tests.test_admin import AUTH, make_app

    reg = courses(tmp_path)
    capped(ctx, per_day=1)
    enroll(ctx, reg, "tiny", **PERSON)
    enroll(ctx, reg, "branchy", **PERSON)
    tick(ctx, reg)
    client = TestClient(
        make_app(ctx.factory, ctx.clock, tmp_path, definitions_dir=tmp_path / "defs")
    )
    page = client.get("/admin/campaigns/branchy", headers=AUTH)
    assert page.status_code == 200
    held = page.text.split('<h2 id="held">Held by the frequency cap</h2>')[1].split("<h2")[0]
    assert "<strong>1</strong> hold(s) of 1 person(s); 1 by the day cap;" in held
    assert "<strong>1</strong> still held" in held
    assert '<td>b1</td>\n      <td class="n">1</td><td class="n">1</td><td class="n">1</td>' in held
    other = client.get("/admin/campaigns/tiny", headers=AUTH).text
    assert "Nothing held." in other
