"""Importing subscribers from a CSV file (`drip import FILE --campaign KEY`).

    file ─► lines, read as a stream (BOM and CR stripped; a line that is not UTF-8, or
            longer than MAX_LINE, is rejected alone)
         ─► header (case, spaces and a few aliases forgiven; email or phone required)
         ─► each record checked in full (parse_row; control characters such as NUL
            reject the record, since the database would refuse or keep junk)
         ─► batches of `batch_size` checked records, each written set-based in its own
            savepoint and committed (campaigns.intake.import_batches): find people by
            address ─► fill blanks or create ─► consent (only if none on record) ─► enroll
            A batch the database refuses goes again one record per savepoint, so only
            the record at fault is rejected.

Every record ends as imported (enrolled, already enrolled, or not enrolled: no consent)
or rejected with its line number and reason; rejects are written, with the original
values and a `reason` column, to `<file>.rejects.csv`, so nothing in the file is lost.
A cell there that a spreadsheet would run as a formula (starting with = + - @, a tab or
a carriage return, as OWASP's CSV-injection advice lists) is prefixed with a single
quote; reading a file, a quote before such a character is dropped again, so a fixed
rejects file imports as it was meant.

Re-running a file creates nothing new: subscribers are found by address, enrollment is
idempotent, and consent is recorded only for a channel with no history at all. That last
rule also means an old list can never undo a later unsubscribe or STOP.

Memory stays flat whatever the file's size: one line and one batch at a time, plus the
report (rejects and records not enrolled). Committing every batch means a long import
does not hold SQLite's write lock (and the scheduler) for its whole run; stopping
half-way and running again is safe. A dry run does everything in one transaction and
rolls it back.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from campaigns.audience.subscribers import (
    InvalidSubscriber,
    check_textable,
    check_timezone,
    normalize_email,
    normalize_phone,
)
from campaigns.clock import Clock
from campaigns.intake.import_batches import Outcome, Row, RowError, write_batch, write_row
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.spreadsheets import FORMULA_START, spreadsheet_safe
from campaigns.states import Channel

__all__ = ["ImportFileError", "ImportReport", "Reject", "Row", "RowError", "import_file"]

COLUMNS = (
    "email",
    "phone",
    "first_name",
    "locale",
    "timezone",
    "consent_email",
    "consent_sms",
    "consent_source",
    "consent_date",
)
ALIASES = {
    "e_mail": "email",
    "email_address": "email",
    "phone_number": "phone",
    "mobile": "phone",
    "mobile_phone": "phone",
    "cell": "phone",
    "firstname": "first_name",
    "language": "locale",
    "time_zone": "timezone",
    "tz": "timezone",
}
# Subscriber attributes, for sequence conditions (`attribute: {plan: medicare}`):
# a column `attr_plan` sets the attribute `plan`; a blank cell leaves it as it is.
ATTRIBUTE_PREFIX = "attr_"
_ATTRIBUTE = re.compile(r"^attr_[a-z][a-z0-9_]{0,39}$")
MAX_ATTRIBUTE = 200  # characters of a value
YES = {"yes", "y", "true", "1"}
NO = {"no", "n", "false", "0", ""}
_LOCALE = re.compile(r"^[a-z]{2}([-_][a-z]{2})?$")


class ImportFileError(ValueError):
    """The whole file is unusable (no header, no email or phone column, not UTF-8 text)."""


@dataclass
class Reject:
    line: int
    reason: str
    values: list[str]


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    created: int = 0  # new subscribers among the imported
    enrolled: int = 0  # new enrollments
    already_enrolled: int = 0
    not_enrolled: list[tuple[int, str]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rejects_path: Path | None = None
    dry_run: bool = False


# ---------------------------------------------------------------- reading


MAX_LINE = 1 << 20  # bytes; a longer line is rejected, and never held whole
# Control characters other than tab and line breaks: PostgreSQL refuses NUL in text, and
# the others are damage, never part of a name or an address.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _lines(stream: BinaryIO, bad: dict[int, str]) -> Iterator[str]:
    """The file's lines as text, one at a time; an unreadable line's reason goes in `bad`
    (its text is kept, escaped, for the rejects file)."""
    for number in count(1):
        chunk = stream.readline(MAX_LINE + 1)
        if not chunk:
            return
        if number == 1:
            if chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise ImportFileError(
                    "the file is UTF-16 text; save it as 'CSV UTF-8' and import again"
                )
            if chunk.startswith(b"\xef\xbb\xbf"):  # Excel's "CSV UTF-8" starts with a BOM
                chunk = chunk[3:]
        if len(chunk) > MAX_LINE:  # skip to the end of the line without holding it
            while (rest := stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
            bad[number] = f"the line is longer than {MAX_LINE // 1024} KiB"
            yield "\n"
            continue
        chunk = chunk.removesuffix(b"\n").rstrip(b"\r")  # Windows line endings
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad[number] = (
                f"not UTF-8 text (byte 0x{chunk[exc.start]:02x} at column {exc.start + 1}); "
                f"save the file as 'CSV UTF-8'"
            )
            text = chunk.decode("utf-8", "backslashreplace")  # kept, escaped, for the rejects file
        yield text + "\n"


def read_records(
    stream: BinaryIO,
) -> tuple[list[str], Iterator[tuple[int, list[str], str | None]]]:
    """The header, and each record as (first line number, fields, reason it is
    unreadable), read from `stream` as the records are taken."""
    bad: dict[int, str] = {}  # line number → why it is unreadable, until its record is out
    reader = csv.reader(_lines(stream, bad))
    consumed = 0  # lines the reader has taken so far

    def next_record():
        # A quoted field may span lines, so a record is every line the reader took for it.
        nonlocal consumed
        while True:
            try:
                fields, problem = next(reader), None
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field over the size limit: that record only
                fields, problem = [], f"not readable as CSV ({exc})"
            spanned = range(consumed + 1, reader.line_num + 1) or [reader.line_num]
            consumed = reader.line_num
            reasons = [bad.pop(n) for n in spanned if n in bad]
            problem = reasons[0] if reasons else problem
            if problem or any(f.strip() for f in fields):  # blank lines are not records
                yield spanned[0], fields, problem

    records = next_record()
    first = next(records, None)
    if first is None:
        raise ImportFileError("the file is empty: no header row")
    line, header, reason = first
    if reason:
        raise ImportFileError(f"line {line}: the header row is {reason}")
    return header, records


def map_header(header: list[str]) -> tuple[dict[str, int], list[str]]:
    """Column name → index, and the names ignored. Refuses a file it cannot import."""
    index: dict[str, int] = {}
    ignored = []
    for i, name in enumerate(header):
        key = re.sub(r"[\s\-]+", "_", name.strip().lower())
        key = ALIASES.get(key, key)
        if key not in COLUMNS and not _ATTRIBUTE.match(key):
            ignored.append(name.strip())
            continue
        if key in index:
            raise ImportFileError(f"the header names the column {key!r} twice")
        index[key] = i
    if "email" not in index and "phone" not in index:
        found = ", ".join(repr(h.strip()) for h in header) or "nothing"
        raise ImportFileError(
            f"the header row has no email or phone column (found {found}); "
            f"expected columns: {', '.join(COLUMNS)}"
        )
    return index, ignored


def _flag(value: str, name: str) -> bool:
    word = value.strip().lower()
    if word in YES:
        return True
    if word in NO:
        return False
    raise RowError(f"{name}: {value!r} is not yes/no/true/false/1/0")


def check_characters(fields: list[str], header: list[str]) -> None:
    """RowError for a control character (NUL and the like) anywhere in the record."""
    for i, value in enumerate(fields):
        found = _CONTROL.search(value)
        if found:
            name = header[i].strip() if i < len(header) and header[i].strip() else f"column {i + 1}"
            code = ord(found.group())
            what = " (NUL)" if code == 0 else ""
            raise RowError(
                f"{name}: contains the control character 0x{code:02x}{what} at position "
                f"{found.start() + 1}; the file is damaged or not plain text there"
            )


def parse_row(
    line: int,
    fields: list[str],
    index: dict[str, int],
    header: list[str],
    now: datetime,
    sms_countries: tuple[str, ...] | None = None,
) -> Row:
    """Every check a record needs, before anything is written. With `sms_countries`, a row
    that consents to texts must give a mobile number in one of them."""
    width = len(header)
    if len(fields) != width:
        raise RowError(f"expected {width} columns, found {len(fields)}")
    check_characters(fields, header)

    def get(name: str) -> str | None:
        value = fields[index[name]].strip() if name in index else ""
        if value[:1] == "'" and value[1:2].startswith(FORMULA_START):
            value = value[1:]  # neutralised in a rejects file: the value as it was
        return value or None

    try:
        email = normalize_email(get("email")) if get("email") else None
        phone = normalize_phone(get("phone")) if get("phone") else None
        timezone = check_timezone(get("timezone"))
    except InvalidSubscriber as exc:
        raise RowError(str(exc)) from None
    if not email and not phone:
        raise RowError("email or phone: at least one is required")
    locale = get("locale")
    if locale and not _LOCALE.match(locale.lower()):
        raise RowError(f"locale: {locale!r} is not a language code like en or es")
    attributes = []
    for key in index:
        if key.startswith(ATTRIBUTE_PREFIX) and get(key):
            value = get(key)
            if len(value) > MAX_ATTRIBUTE:
                raise RowError(f"{key}: longer than {MAX_ATTRIBUTE} characters")
            attributes.append((key.removeprefix(ATTRIBUTE_PREFIX), value))
    consent = []
    for channel, address, what in (
        (Channel.EMAIL, email, "email address"),
        (Channel.SMS, phone, "phone number"),
    ):
        if _flag(get(f"consent_{channel}") or "", f"consent_{channel}"):
            if not address:
                raise RowError(f"consent_{channel}: yes, but the row has no {what}")
            if channel == Channel.SMS and sms_countries is not None:
                try:
                    check_textable(address, sms_countries)
                except InvalidSubscriber as exc:
                    raise RowError(str(exc)) from None
            consent.append(channel)
    date = get("consent_date")
    if date:
        try:
            when = datetime.fromisoformat(date)
        except ValueError:
            raise RowError(f"consent_date: {date!r} is not a date like 2026-01-31") from None
        if (when if when.tzinfo else when.replace(tzinfo=UTC)) > now:
            raise RowError(f"consent_date: {date!r} is in the future")
    return Row(
        line,
        email,
        phone,
        get("first_name"),
        locale.lower() if locale else None,
        timezone,
        tuple(consent),
        get("consent_source"),
        date,
        tuple(sorted(attributes)),
    )


# ---------------------------------------------------------------- importing


def import_file(
    factory: sessionmaker[Session],
    clock: Clock,
    registry: Registry,
    policy: Policy,
    path: Path,
    *,
    campaign_key: str,
    source: str = "import",
    dry_run: bool = False,
    batch_size: int = 1000,
    bulk: bool = True,
    sms_countries: tuple[str, ...] | None = None,
) -> ImportReport:
    """Import every good record of `path`; ImportFileError when the file is unusable.

    `bulk=False` writes every record in its own savepoint, the way a batch the database
    refused is retried; bench/imports.py times it beside the set-based path."""
    path = Path(path)
    registry.get(campaign_key)  # a missing or broken campaign stops here, before any row
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    session = factory()
    try:
        with stream:
            header, records = read_records(stream)
            index, ignored = map_header(header)
            report = ImportReport(header=header, ignored_columns=ignored, dry_run=dry_run)
            writer = _BatchWriter(
                session, clock, registry, policy, report, bulk, campaign_key, source, path.name
            )
            batch: list[tuple[Row, list[str]]] = []
            for line, fields, unreadable in records:
                report.read += 1
                try:
                    if unreadable:
                        raise RowError(unreadable)
                    row = parse_row(line, fields, index, header, clock.now(), sms_countries)
                    batch.append((row, fields))
                except RowError as exc:
                    report.rejects.append(Reject(line, str(exc), fields))
                if len(batch) >= batch_size:
                    writer.write(batch)
                    batch = []
            writer.write(batch)
        if dry_run:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    if not dry_run:
        report.rejects_path = write_rejects(path, header, report.rejects)
    return report


_REFUSED = (IntegrityError, DataError)  # a batch or a record the database would not take


@dataclass
class _BatchWriter:
    session: Session
    clock: Clock
    registry: Registry
    policy: Policy
    report: ImportReport
    bulk: bool
    campaign_key: str
    source: str
    file_name: str

    def write(self, batch: list[tuple[Row, list[str]]]) -> None:
        """One batch: set-based in a savepoint, else (refused, or `bulk` off) record by
        record; then committed, unless this is a dry run."""
        if not batch:
            return
        rows = [row for row, _ in batch]
        outcomes = None
        if self.bulk:
            try:
                with self.session.begin_nested():
                    outcomes = write_batch(*self._args(), rows, **self._context())
            except _REFUSED:
                outcomes = None  # nothing of it stands: again, one record at a time
        if outcomes is None:
            outcomes = [self._one(row) for row in rows]
        report = self.report
        for (_, fields), outcome in zip(batch, outcomes, strict=True):
            if outcome.rejected:
                report.rejects.append(Reject(outcome.line, outcome.rejected, fields))
                continue
            report.imported += 1
            report.created += outcome.created
            report.enrolled += outcome.enrolled
            report.already_enrolled += outcome.already_enrolled
            if outcome.not_enrolled:
                report.not_enrolled.append((outcome.line, outcome.not_enrolled))
        if not report.dry_run:
            self.session.commit()

    def _one(self, row: Row) -> Outcome:
        try:
            with self.session.begin_nested():
                return write_row(*self._args(), row, **self._context())
        except RowError as exc:
            return Outcome(row.line, rejected=str(exc))
        except IntegrityError:  # someone else wrote the same address meanwhile
            return Outcome(row.line, rejected=CONFLICT)
        except DataError as exc:
            return Outcome(row.line, rejected=_refused(exc))

    def _args(self) -> tuple:
        return self.session, self.clock, self.registry, self.policy

    def _context(self) -> dict:
        return {
            "campaign_key": self.campaign_key,
            "source": self.source,
            "file_name": self.file_name,
        }


CONFLICT = "conflicts with a subscriber saved at the same time; import the file again"


def _refused(exc: DataError) -> str:
    # The driver's first line names the problem ("value too long for type ..."); the
    # statement and parameters (addresses) are left out.
    detail = str(exc.orig).splitlines()[0] if exc.orig is not None else "refused"
    return f"the database refused a value in this row ({detail})"


def write_rejects(path: Path, header: list[str], rejects: list[Reject]) -> Path:
    """`<file>.rejects.csv`: line, reason, then the record as it was (made safe to open in a
    spreadsheet). Always written, so a stale file from an earlier run is never mistaken
    for this one's."""
    out = path.with_name(path.name + ".rejects.csv")
    buffer = io.StringIO()
    # Every cell quoted too, so a spreadsheet that splits on ";" keeps a cell whole.
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow([spreadsheet_safe(c) for c in ["line", "reason", *header]])
    for reject in sorted(rejects, key=lambda r: r.line):
        writer.writerow([spreadsheet_safe(c) for c in [reject.line, reject.reason, *reject.values]])
    out.write_text(buffer.getvalue(), encoding="utf-8-sig", newline="")
    return out


def summary(report: ImportReport) -> str:
    return summary_text(
        report,
        [
            f"imported {report.imported} ({report.created} new subscribers)",
            f"enrolled {report.enrolled} (already enrolled: {report.already_enrolled})",
            f"not enrolled {len(report.not_enrolled)}",
        ],
        [f"not enrolled: {reason}" for _, reason in report.not_enrolled],
        [line for line, _ in report.not_enrolled],
    )


def summary_text(report, counts: list[str], notes: list[str], note_lines: list[int]) -> str:
    """What an import (of people, of events) prints: rows read, its own `counts`, what
    was skipped, then a line per row note and per skipped row, and where the rejects went."""
    lines = [
        f"{'dry run, nothing written: ' if report.dry_run else ''}read {report.read} rows",
        *counts,
        f"skipped {len(report.rejects)}",
    ]
    if report.ignored_columns:
        lines.append(f"ignored columns: {', '.join(report.ignored_columns)}")
    lines += [f"  line {line}: {note}" for line, note in zip(note_lines, notes, strict=True)]
    lines += [
        f"  line {r.line}: skipped: {r.reason}"
        for r in sorted(report.rejects, key=lambda r: r.line)
    ]
    if report.rejects_path is not None:
        lines.append(f"rejects written to {report.rejects_path}")
    return "\n".join(lines)
