"""`drip simulate`: a draft of the tiny course for a CSV cohort, checked against the timing
rules by hand-worked times (daylight saving, send windows, the text hours' closed end),
and the command's input checks. Nothing is sent; the engine runs in the test's process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from campaigns.content.rendering import Renderer, Sender
from campaigns.links import Signer
from campaigns.reporting.simulation import generated_cohort, simulate
from campaigns.reporting.timelines import lateness
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.sequences.windows import Window, is_allowed
from tests.conftest import FIXTURES
from workers.cli import main

# The tiny course as a marketer might edit it: a window from 07:00 to 22:00 every day
# (wider than the text hours), the second lesson a day after the first and the third
# twelve hours after that.
DRAFT = """\
key: tiny
version: 2
name: Tiny test course
locales: [en]
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "07:00", end: "22:00"}
steps:
  - {key: hello, delay: 0m, channels: [email, sms], template: hello, subject: "Welcome"}
  - {key: second, delay: 1d, channels: [email], template: second, subject: "Lesson two"}
  - {key: third, delay: 12h, channels: [sms], template: third}
"""
CSV = """\
email,phone,first_name,timezone,locale
ny.both@example.com,+12025550101,Ana,America/New_York,en
ny.mail@example.com,,Ben,America/New_York,en
,+12025550102,Chitra,Asia/Kolkata,en
ldn.both@example.com,+12025550103,Dev,Europe/London,en
"""
# Saturday 7 March 2026, 12:00 UTC: 07:00 in New York, the day before its clocks go
# forward; 12:00 in London; 17:30 in Kolkata.
JOINED = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)

# Worked out by hand from the rules, in each person's local time:
#   hello  due at once, moved to the window: 07:00-22:00 for email alone, narrowed to the
#          text hours 08:00-21:00 when the step also texts the person
#   second 24 hours after hello went out (absolute hours: across New York's change to
#          daylight time on Sunday 8 March, 08:00 EST becomes 09:00 EDT)
#   third  12 hours after second went out; 21:00 is already outside the text hours
#          (closed-open), so a text due at 21:00 waits for 08:00
EXPECTED = {
    "Ana": [
        ("hello", "email", "Sat 07 Mar 08:00 EST"),
        ("hello", "sms", "Sat 07 Mar 08:00 EST"),
        ("second", "email", "Sun 08 Mar 09:00 EDT"),
        ("third", "sms", "Mon 09 Mar 08:00 EDT"),  # due Sun 21:00 EDT: closed end
    ],
    "Ben": [
        ("hello", "email", "Sat 07 Mar 07:00 EST"),  # the window opens as he joins
        ("second", "email", "Sun 08 Mar 08:00 EDT"),
        ("third", "sms", None),  # no phone: skipped, with its reason
    ],
    "Chitra": [
        ("hello", "sms", "Sat 07 Mar 17:30 IST"),
        ("second", "email", None),  # email only, no fallback, no email address
        ("third", "sms", "Mon 09 Mar 08:00 IST"),  # due 05:30 IST: before the text hours
    ],
    "Dev": [
        ("hello", "email", "Sat 07 Mar 12:00 GMT"),
        ("hello", "sms", "Sat 07 Mar 12:00 GMT"),
        ("second", "email", "Sun 08 Mar 12:00 GMT"),
        ("third", "sms", "Mon 09 Mar 08:00 GMT"),  # due midnight
    ],
}


@pytest.fixture
def draft(tmp_path):
    path = tmp_path / "drafts" / "tiny.yaml"
    path.parent.mkdir()
    path.write_text(DRAFT)
    return path


@pytest.fixture
def people_csv(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    return path


def run(args, env=None):
    env = {
        "DEFINITIONS_DIR": str(FIXTURES / "definitions"),
        "TEMPLATES_DIR": str(FIXTURES / "templates"),
        **(env or {}),
    }
    return CliRunner().invoke(main, ["simulate", *args], env=env)


def local(when: datetime, zone: str) -> str:
    t = when.astimezone(ZoneInfo(zone))
    return f"{t:%a %d %b %H:%M} {t.tzname()}"


def test_a_draft_for_a_csv_cohort_keeps_every_timing_rule(draft, people_csv):
    result = run([str(draft), "--cohort", str(people_csv), "--joined", "2026-03-07 12:00"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Simulating tiny v2" in out and f"({draft})" in out and "Nothing is sent." in out
    # Every expected moment is in the printed timelines, in the person's own time.
    for name, steps in EXPECTED.items():
        assert f"{name}: " in out
        for _step, _channel, when in steps:
            if when:
                assert when in out, (name, when)
    assert "0 later than that; 0 outside their window; 0 lessons out of order" in out
    assert "third/sms not sent: skipped" in out and "second/email not sent: skipped" in out


def test_the_simulated_times_are_the_rules_own(draft, people_csv, tmp_path):
    """The same run through the function: each message went out at the moment worked out
    by hand, inside its window, and the texts inside the text hours."""
    scratch = tmp_path / "defs"
    scratch.mkdir()
    (scratch / "tiny.yaml").write_text(DRAFT)
    registry = Registry(scratch, FIXTURES / "templates")
    policy = Policy(default_timezone="America/New_York")
    people = [
        dict(
            zip(
                ("email", "phone", "first_name", "timezone", "locale"), line.split(","), strict=True
            )
        )
        for line in CSV.splitlines()[1:]
    ]
    people = [{k: (v or None) for k, v in p.items()} for p in people]
    sim = simulate(
        registry,
        "tiny",
        people,
        start=JOINED,
        days=5,
        policy=policy,
        renderer=Renderer(FIXTURES / "templates", Sender("Lunara", "1 Test Street")),
        signer=Signer(b"test-secret-key-for-links-0123456789"),
        base_url="https://care.example",
        default_country="US",
    )
    figures = lateness(sim.timelines)
    assert figures.clean and figures.largest == timedelta(0)
    text_hours = Window.every_day(8, 21)
    campaign_window = registry.get("tiny").window
    for timeline in sim.timelines:
        got = [
            (e.step_key, e.channel, local(e.sent_at, timeline.zone) if e.sent_at else None)
            for e in timeline.entries
        ]
        assert got == EXPECTED[timeline.first_name], timeline.first_name
        zone = ZoneInfo(timeline.zone)
        for e in timeline.sent:
            assert is_allowed(e.sent_at, campaign_window, zone)
            if e.channel == "sms":
                assert is_allowed(e.sent_at, text_hours, zone)
    assert sim.still_in_course == 0 and sim.rejected == []


def test_a_generated_cohort_spreads_across_zones_and_channels():
    people = generated_cohort(9, ("Asia/Kolkata", "America/Chicago", "Pacific/Honolulu"))
    assert {p["timezone"] for p in people} == {
        "Asia/Kolkata",
        "America/Chicago",
        "Pacific/Honolulu",
    }
    reach = [(bool(p["email"]), bool(p["phone"])) for p in people[:3]]
    assert reach == [(True, False), (False, True), (True, True)]
    assert len({p["phone"] for p in people if p["phone"]}) == 6  # distinct numbers
    with pytest.raises(ValueError, match="1 to"):
        generated_cohort(0)


def test_a_deployed_course_for_generated_people_in_chosen_zones():
    result = run(["tiny", "--cohort", "6", "--zone", "Asia/Kolkata", "--show", "1"])
    assert result.exit_code == 0, result.output
    assert "for 6 people (generated)" in result.output
    assert "Asia/Kolkata" in result.output and "(timelines of 1 of 6 people" in result.output
    assert " IST " in result.output and " EST " not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nothing_here"], "no deployed campaign 'nothing_here'"),
        (["missing.yaml"], "no such file"),
        (["tiny", "--cohort", "missing.csv"], "is not a file, a number or 'sample'"),
        (["tiny", "--days", "0"], "from 1 to 3660"),
        (["tiny", "--zone", "Mars/Olympus"], "Mars/Olympus"),
        (["tiny", "--cohort", "100000"], "a generated cohort has 1 to"),
    ],
)
def test_bad_input_is_refused_with_a_reason(args, message):
    result = run(args)
    assert result.exit_code != 0 and message in result.output, result.output


def test_a_csv_row_that_cannot_be_read_stops_the_simulation(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("email,phone,timezone\nok@example.com,,Europe/Madrid\nnot-an-email,,UTC\n")
    result = run(["tiny", "--cohort", str(path)])
    assert result.exit_code == 1 and "line 3" in result.output, result.output


def test_a_text_number_the_deployment_may_not_text_is_refused(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("phone,timezone\n+34911234567,Europe/Madrid\n")  # a Spanish landline
    result = run(["tiny", "--cohort", str(path)])
    assert result.exit_code == 1 and "line 2" in result.output, result.output
