"""CSV import on SQLite and PostgreSQL: good rows imported and enrolled, each kind of bad
row skipped with its line number and reason (and kept in the rejects file), re-runs
create nothing, a dry run writes nothing, an old list never undoes an unsubscribe."""

import csv

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from campaigns.audience.consent import has_consent
from campaigns.audience.opt_outs import unsubscribe
from campaigns.db import transaction
from campaigns.intake.imports import ImportFileError, import_file, summary
from campaigns.models import ConsentRecord, Enrollment, Subscriber
from tests.helpers import drip_context
from workers.cli import main

HEADER = (
    b" Email ,PHONE,First Name,locale,TimeZone,Consent_Email, consent_sms ,"
    b"consent_source,consent_date"
)
ROWS = [
    b"ana@example.com,(202) 555-0143,Ana,es,America/Chicago,yes,yes,clinic intake,2026-01-15",  # 2
    b"bo@example.com,,Bo,en,,TRUE,0,,",  # 3 email only
    b"cy@example.com,,Cy,,,no,no,,",  # 4 no consent: imported, not enrolled
    b"dee@example.com,12345,Dee,,,yes,yes,,",  # 5 bad phone
    b"not-an-email,,Ed,,,yes,,,",  # 6 bad email
    b"fay@example.com,,Fay,,Mars/Olympus,yes,no,,",  # 7 unknown zone
    b",+12025550144,Gus,,,yes,no,,",  # 8 email consent without an email
    b"hal@example.com,yes",  # 9 wrong column count
    b"jos\xe9@example.com,,Jos\xe9,es,,yes,no,,",  # 10 Latin-1, not UTF-8
    b'kim@example.com,+1 202 555 0145,"Kim, Jr.",en,America/New_York,1,1,,',  # 11 quoted comma
    b"lu@example.com,,Lu,,,maybe,no,,",  # 12 not a yes/no
    b"",  # a blank line is not a row
    b"mo@example.com,,Mo,,,yes,no,,2031-01-01",  # 14 consent date in the future
]
SKIPPED = {
    5: "phone:",
    6: "email:",
    7: "timezone:",
    8: "consent_email: yes, but the row has no email",
    9: "expected 9 columns, found 2",
    10: "not UTF-8 text (byte 0xe9",
    12: "consent_email: 'maybe'",
    14: "consent_date: '2031-01-01' is in the future",
}


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "patients.csv"
    # Excel's "CSV UTF-8": a byte order mark and Windows line endings.
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join([HEADER, *ROWS]) + b"\r\n")
    return path


def run(factory, clock, registry, policy, path, **kw):
    return import_file(factory, clock, registry, policy, path, campaign_key="tiny", **kw)


def counts(factory):
    with factory() as s:
        return tuple(
            s.scalar(select(func.count(m.id))) for m in (Subscriber, ConsentRecord, Enrollment)
        )


def test_good_rows_imported_bad_rows_rejected_with_line_and_reason(
    factory, clock, registry, policy, csv_file
):
    report = run(factory, clock, registry, policy, csv_file, source="clinic-2026-03")
    assert (report.read, report.imported, report.created, report.enrolled) == (12, 4, 4, 3)
    assert report.not_enrolled == [(4, "the row gives no consent")]
    assert {r.line: r.reason for r in report.rejects}.keys() == SKIPPED.keys()
    for reject in report.rejects:
        assert reject.reason.startswith(SKIPPED[reject.line]), reject

    with factory() as s:
        ana = s.scalar(select(Subscriber).where(Subscriber.email == "ana@example.com"))
        kim = s.scalar(select(Subscriber).where(Subscriber.email == "kim@example.com"))
        cy = s.scalar(select(Subscriber).where(Subscriber.email == "cy@example.com"))
        grants = s.scalars(select(ConsentRecord).where(ConsentRecord.subscriber_id == ana.id)).all()
        enrolled = set(
            s.scalars(select(Enrollment.subscriber_id).where(Enrollment.campaign_key == "tiny"))
        )
        assert not has_consent(s, cy.id, "email")
    assert (ana.phone, ana.locale, ana.timezone, ana.first_name) == (
        "+12025550143",
        "es",
        "America/Chicago",
        "Ana",
    )
    assert kim.first_name == "Kim, Jr." and kim.phone == "+12025550145"
    assert sorted(g.channel for g in grants) == ["email", "sms"]
    assert {g.source for g in grants} == {"import"}
    assert grants[0].evidence == {
        "file": "patients.csv",
        "line": 2,
        "import_source": "clinic-2026-03",
        "consent_source": "clinic intake",
        "consent_date": "2026-01-15",
    }
    assert (
        ana.id in enrolled and kim.id in enrolled and cy.id not in enrolled and len(enrolled) == 3
    )
    assert counts(factory) == (4, 5, 3)  # nothing of a rejected row was half-written

    rejects_path = csv_file.with_name("patients.csv.rejects.csv")
    assert report.rejects_path == rejects_path
    with rejects_path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [
        "line",
        "reason",
        " Email ",
        "PHONE",
        "First Name",
        "locale",
        "TimeZone",
        "Consent_Email",
        " consent_sms ",
        "consent_source",
        "consent_date",
    ]
    kept = {int(r[0]): r for r in rows[1:]}
    assert kept.keys() == SKIPPED.keys()
    assert kept[5][2:5] == ["dee@example.com", "12345", "Dee"]  # the row as it was
    assert kept[9][2:] == ["hal@example.com", "yes"]
    assert kept[10][2] == "jos\\xe9@example.com"  # the undecodable byte kept, escaped

    text = summary(report)
    assert "read 12 rows" in text and "skipped 8" in text and "line 7: skipped: timezone:" in text
    assert "line 4: not enrolled" in text


def test_running_the_same_file_again_creates_nothing(factory, clock, registry, policy, csv_file):
    run(factory, clock, registry, policy, csv_file)
    before = counts(factory)
    clock.advance(hours=1)
    again = run(factory, clock, registry, policy, csv_file)
    assert counts(factory) == before
    assert (again.imported, again.created, again.enrolled, again.already_enrolled) == (4, 0, 0, 3)
    assert len(again.rejects) == len(SKIPPED)


def test_an_old_list_never_undoes_an_unsubscribe(factory, clock, registry, policy, csv_file):
    run(factory, clock, registry, policy, csv_file)
    with transaction(factory) as s:
        ana = s.scalar(select(Subscriber).where(Subscriber.email == "ana@example.com"))
        unsubscribe(s, clock, ana, channels=("email", "sms"))
    clock.advance(days=1)
    report = run(factory, clock, registry, policy, csv_file)
    with factory() as s:
        assert not has_consent(s, ana.id, "email") and not has_consent(s, ana.id, "sms")
        assert s.get(Subscriber, ana.id).status == "unsubscribed"
    assert (
        2,
        "email suppressed (unsubscribed); sms suppressed (unsubscribed); "
        "an import never subscribes anyone again",
    ) in report.not_enrolled


def test_dry_run_writes_nothing(factory, clock, registry, policy, csv_file):
    report = run(factory, clock, registry, policy, csv_file, dry_run=True)
    assert (report.imported, report.created, report.enrolled, len(report.rejects)) == (
        4,
        4,
        3,
        len(SKIPPED),
    )
    assert counts(factory) == (0, 0, 0)
    assert not csv_file.with_name("patients.csv.rejects.csv").exists()
    assert summary(report).startswith("dry run, nothing written")


def test_row_whose_email_and_phone_belong_to_two_people_is_rejected(
    factory, clock, registry, policy, tmp_path
):
    path = tmp_path / "a.csv"
    path.write_text(
        "email,phone,consent_email,consent_sms\n"
        "ana@example.com,+12025550145,yes,no\n,+12025550143,no,yes\n"
        "ana@example.com,+12025550143,yes,yes\n"  # two records: not merged
        "ana@example.com,+12025550144,yes,yes\n"
    )  # a different phone: not replaced
    report = run(factory, clock, registry, policy, path)
    assert [(r.line, r.reason.split(":")[0]) for r in report.rejects] == [
        (4, "email and phone belong to two different subscribers"),
        (5, "email"),
    ]
    assert counts(factory)[0] == 2


@pytest.mark.parametrize(
    "content, message",
    [
        (b"first_name,locale\nAna,en\n", "no email or phone column (found 'first_name', 'locale')"),
        (b"", "the file is empty"),
        (b"\xff\xfee\x00m\x00", "UTF-16"),
        (b"email,E-mail\na@example.com,b@example.com\n", "names the column 'email' twice"),
    ],
)
def test_a_file_it_cannot_import_is_refused_with_a_clear_error(
    factory, clock, registry, policy, tmp_path, content, message
):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(factory, clock, registry, policy, path)
    assert counts(factory) == (0, 0, 0)


def test_drip_import_command(factory, clock, csv_file, tmp_path):
    rt = drip_context(factory, clock)
    result = CliRunner().invoke(
        main, ["import", str(csv_file), "--campaign", "tiny", "--source", "clinic"], obj=rt
    )
    assert result.exit_code == 0, result.output
    assert (
        "imported 4 (4 new subscribers)" in result.output
        and "line 9: skipped: expected 9 columns" in result.output
    )
    assert "patients.csv.rejects.csv" in result.output

    dry = CliRunner().invoke(
        main, ["import", str(csv_file), "--campaign", "tiny", "--dry-run"], obj=rt
    )
    assert dry.exit_code == 0 and "enrolled 0 (already enrolled: 3)" in dry.output

    unknown = CliRunner().invoke(main, ["import", str(csv_file), "--campaign", "nope"], obj=rt)
    assert unknown.exit_code == 1 and "no campaign 'nope'" in unknown.output
    bad = tmp_path / "names.csv"
    bad.write_text("name\nAna\n")
    refused = CliRunner().invoke(main, ["import", str(bad), "--campaign", "tiny"], obj=rt)
    assert refused.exit_code == 1 and "no email or phone column" in refused.output


def test_a_record_the_csv_reader_cannot_read_is_skipped_alone(
    factory, clock, registry, policy, tmp_path
):
    path = tmp_path / "big.csv"
    giant = '"' + "x" * 200_000 + '"'
    path.write_text(
        f"email,first_name,consent_email\nana@example.com,{giant},yes\nbo@example.com,Bo,yes\n"
    )
    report = run(factory, clock, registry, policy, path)
    assert [(r.line, r.reason.split(" (")[0]) for r in report.rejects] == [
        (2, "not readable as CSV")
    ]
    assert (report.imported, report.enrolled) == (1, 1)
