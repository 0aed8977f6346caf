"""`drip import-events FILE.csv`: person events from a file, checked row by row with the
events API's own schema; bad rows reported by line and written to the rejects file,
nothing lost, the rest imported; a second run records nothing twice. SQLite and
PostgreSQL."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from campaigns.intake.event_imports import import_events
from campaigns.models import Enrollment, PersonEvent
from campaigns.sequences.registry import Registry
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll, drip_context
from workers.cli import main

TINY = (FIXTURES / "definitions" / "tiny.yaml").read_text()
HEADER = "event_id,name,email,phone,subscriber_token,occurred_at,properties\n"


@pytest.fixture
def exits(tmp_path):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "tiny.yaml").write_text(TINY + "goal: {event: visit_booked, then: exit}\n")
    return Registry(defs, FIXTURES / "templates")


@pytest.fixture
def people(factory, clock, exits, policy):
    ana = add_and_enroll(factory, clock, exits, policy, email="ana@example.com")
    ben = add_and_enroll(factory, clock, exits, policy, phone="+12025550143")
    clock.advance(hours=2)
    return ana, ben


def run(factory, clock, exits, policy, path, **kw):
    return import_events(factory, clock, exits, policy, path, **kw)


def events(factory) -> list[tuple[str, str, str | None]]:
    with factory() as s:
        return list(
            s.execute(
                select(PersonEvent.event_id, PersonEvent.name, PersonEvent.source_ref).order_by(
                    PersonEvent.id
                )
            )
        )


GOOD_AND_BAD = (
    HEADER
    + 'bk-1,visit_booked,Ana@Example.com,,,2026-03-02T16:00:00Z,"{""clinic"": ""north""}"\n'
    + "cl-1,class_attended,,(202) 555-0143,,,\n"
    + "bk-2,visit_booked,nobody@example.com,,,,\n"  # line 4: nobody we know
    + "bk-3,visit_booked,ana@example.com,,,,not json\n"  # line 5
    + "bk-4,visit_booked,ana@example.com,,,,[1]\n"  # line 6
    + "bk-5,Visit Booked,not-an-address,,,,\n"  # line 7: two bad fields
    + "bk-6,visit_booked\n"  # line 8: short
    + ",visit_booked,ana@example.com,,,,\n"  # line 9: no id
    + "bk-7,visit_booked,ana@exa\x00mple.com,,,,\n"  # line 10: a NUL
    + "bk-8,visit_booked,ana@example.com,,,2026-03-02 16:00,\n"  # line 11: no zone
    + "bk-1,visit_cancelled,ana@example.com,,,,\n"  # line 12: bk-1 again, another event
    + "bk-1,visit_booked,ana@example.com,,,,\n"  # line 13: bk-1 again, the same event
    + "\n"  # a blank line is no record
    + "=cmd|' /C calc'!A0,visit_booked,@ana,,,,\n"  # line 15: formulas, made safe in rejects
)


def test_good_rows_are_recorded_and_bad_ones_reported_by_line(
    factory, clock, exits, policy, people, tmp_path
):
    path = tmp_path / "events.csv"
    path.write_bytes(GOOD_AND_BAD.encode() + b"bk-9,visit_booked,\xff@example.com,,,,\n")
    report = run(factory, clock, exits, policy, path)
    assert (report.read, report.recorded, report.already_recorded) == (14, 2, 1)
    assert report.goals == [(2, "tiny: exited")]
    why = {r.line: r.reason for r in report.rejects}
    assert why == {
        4: "person: no subscriber has this email",
        5: 'properties: not JSON; write an object like {"clinic": "north"}',
        6: 'properties: must be a JSON object like {"clinic": "north"}',
        7: why[7],
        8: "expected 7 columns, found 2",
        9: "event_id: required",
        10: why[10],
        11: "occurred_at: needs a time zone, like 2026-11-20T14:30:00Z or +01:00 at the end",
        12: "event_id: 'bk-1' was already used for another event (a different name or person); "
        "use a new id",
        15: why[15],
        16: why[16],
    }
    assert why[7].startswith("name: must start with a lower-case letter") and "; email: " in why[7]
    assert why[10].startswith("email: contains the control character 0x00 (NUL)")
    assert "event_id: must be 1 to 100 printable ASCII" in why[15]
    assert why[16].startswith("not UTF-8 text (byte 0xff at column 19)")
    assert events(factory) == [
        ("bk-1", "visit_booked", "events.csv line 2"),
        ("cl-1", "class_attended", "events.csv line 3"),
    ]
    with factory() as s:
        ana = s.get(Enrollment, people[0][1])
    assert (ana.status, ana.exit_reason) == ("exited", "reached the goal visit_booked")

    # Nothing is lost: every rejected record is in the rejects file, safe to open.
    rows = list(csv.reader(report.rejects_path.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0] == ["line", "reason", *HEADER.strip().split(",")]
    assert [int(r[0]) for r in rows[1:]] == sorted(why)
    formula = next(r for r in rows if r[0] == "15")
    assert formula[2:4] == ["'=cmd|' /C calc'!A0", "visit_booked"] and formula[4] == "'@ana"
    assert "\\x00" in next(r for r in rows if r[0] == "10")[4]


def test_importing_again_records_nothing_twice(factory, clock, exits, policy, people, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(GOOD_AND_BAD)
    first = run(factory, clock, exits, policy, path)
    clock.advance(hours=1)
    second = run(factory, clock, exits, policy, path)
    assert (first.recorded, second.recorded) == (2, 0)
    assert second.already_recorded == first.recorded + first.already_recorded
    assert second.goals == []
    assert [r.line for r in second.rejects] == [r.line for r in first.rejects]
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(PersonEvent)) == 2


def test_a_fixed_rejects_file_imports_as_meant(factory, clock, exits, policy, people, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(HEADER + "bk-1,visit_booked,ana@example.com,,,,\n" + "=bk2,x,,,,,\n")
    report = run(factory, clock, exits, policy, path)
    assert [(r.line, r.reason) for r in report.rejects] == [
        (3, "person: give email, phone or subscriber_token to name the person")
    ]
    # Fixed as a person would in a spreadsheet: the phone filled in, the rest as it was.
    rows = list(csv.reader(report.rejects_path.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[1][2] == "'=bk2"  # made safe to open
    rows[1][5] = "+12025550143"
    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    second = run(factory, clock, exits, policy, fixed)
    assert (second.recorded, second.rejects) == (1, [])
    assert second.ignored_columns == ["line", "reason"]
    assert events(factory)[-1][:2] == ("=bk2", "x")  # the quote is dropped again


def test_a_dry_run_writes_nothing(factory, clock, exits, policy, people, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(GOOD_AND_BAD)
    report = run(factory, clock, exits, policy, path, dry_run=True)
    assert (report.recorded, report.dry_run, report.rejects_path) == (2, True, None)
    assert events(factory) == []
    with factory() as s:
        assert s.get(Enrollment, people[0][1]).status == "active"
    assert not (tmp_path / "events.csv.rejects.csv").exists()


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("", "the file is empty"),
        ("name,email\nvisit_booked,ana@example.com\n", "needs event_id, name and one of"),
        ("event_id,name\nbk-1,visit_booked\n", "needs event_id, name and one of"),
        ("event_id,name,email,Email\n", "names the column 'email' twice"),
    ],
)
def test_a_file_that_cannot_be_imported_says_why(factory, clock, tmp_path, content, said):
    path = tmp_path / "events.csv"
    path.write_text(content)
    result = CliRunner().invoke(
        main, ["import-events", str(path)], obj=drip_context(factory, clock)
    )
    assert result.exit_code == 1 and said in result.output, result.output


def test_the_command_prints_the_summary(factory, clock, policy, tmp_path):
    drip = drip_context(factory, clock)
    add_and_enroll(factory, clock, drip.runtime().registry, policy, email="ana@example.com")
    path = tmp_path / "events.csv"
    path.write_text(
        "ID,Event,E-mail\n" + "bk-1,visit_booked,ana@example.com\n" + "bk-2,visit_booked,x\n"
    )
    result = CliRunner().invoke(main, ["import-events", str(path)], obj=drip)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:4] == [
        "read 2 rows",
        "recorded 1 events (already recorded: 0)",
        "goals reached 0",  # the fixture course has no goal
        "skipped 1",
    ]
    assert "  line 3: skipped: email: 'x' is not a valid email address" in result.output
    assert f"rejects written to {path}.rejects.csv" in result.output


def test_a_row_whose_time_cannot_be_stored_is_rejected_and_the_rest_imported(
    factory, clock, exits, policy, people, tmp_path
):
    """Year 1 east of UTC overflows the conversion to UTC: a rejected row, not an import
    that stops with a traceback and records nothing."""
    path = tmp_path / "events.csv"
    path.write_text(
        HEADER
        + "old-1,visit_booked,ana@example.com,,,0001-01-01T00:00:00+14:00,\n"
        + "ok-2,visit_booked,ana@example.com,,,,\n"
    )
    report = run(factory, clock, exits, policy, path)
    assert report.recorded == 1
    assert [r.line for r in report.rejects] == [2]
    assert "occurred_at" in report.rejects[0].reason
    assert [e[0] for e in events(factory)] == ["ok-2"]
