"""Importing subscribers from a CSV file (`drip import FILE --campaign KEY`).

    bytes ─► lines (BOM and CR stripped; a line that is not UTF-8 is rejected alone)
          ─► header (case, spaces and a few aliases forgiven; email or phone required)
          ─► each record: checked in full, then written in its own savepoint
               ─► upsert subscriber ─► consent (only if none on record) ─► enroll

Every record ends as imported (enrolled, already enrolled, or not enrolled: no consent)
or rejected with its line number and reason; rejects are written, with the original
values and a `reason` column, to `<file>.rejects.csv`, so nothing in the file is lost.

Re-running a file creates nothing new: subscribers are found by address, enrollment is
idempotent, and consent is recorded only for a channel with no history at all. That last
rule also means an old list can never undo a later unsubscribe or STOP.

Commits come every `batch_size` records, so a long import does not hold SQLite's write
lock (and the scheduler) for its whole run; stopping half-way and running again is safe.
A dry run does everything in one transaction and rolls it back.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from campaigns.audience.consent import record_consent
from campaigns.audience.eligibility import reachable_channels
from campaigns.audience.subscribers import (
    InvalidSubscriber,
    address_for,
    check_timezone,
    normalize_email,
    normalize_phone,
    upsert_subscriber,
)
from campaigns.audience.suppression import suppression_for
from campaigns.clock import Clock
from campaigns.delivery.enrollment import enroll
from campaigns.models import ConsentRecord, Enrollment, Subscriber
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.states import Channel, ConsentAction, SubscriberStatus

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
YES = {"yes", "y", "true", "1"}
NO = {"no", "n", "false", "0", ""}
_LOCALE = re.compile(r"^[a-z]{2}([-_][a-z]{2})?$")


class ImportFileError(ValueError):
    """The whole file is unusable (no header, no email or phone column, not UTF-8 text)."""


class RowError(ValueError):
    """One record is bad; the message is the reason written to the rejects file."""


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


@dataclass(frozen=True)
class Row:
    line: int
    email: str | None
    phone: str | None
    first_name: str | None
    locale: str | None
    timezone: str | None
    consent: tuple[str, ...]
    consent_source: str | None
    consent_date: str | None


# ---------------------------------------------------------------- reading


def read_records(raw: bytes) -> tuple[list[str], Iterator[tuple[int, list[str], str | None]]]:
    """The header, and each record as (first line number, fields, reason it is unreadable)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ImportFileError("the file is UTF-16 text; save it as 'CSV UTF-8' and import again")
    if raw.startswith(b"\xef\xbb\xbf"):  # Excel's "CSV UTF-8" starts with a byte order mark
        raw = raw[3:]
    numbers: list[int] = []  # physical line number of each line handed to the csv reader
    texts: list[str] = []
    bad: dict[int, str] = {}
    for number, chunk in enumerate(raw.split(b"\n"), 1):
        chunk = chunk.rstrip(b"\r")  # Windows line endings
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad[number] = (
                f"not UTF-8 text (byte 0x{chunk[exc.start]:02x} at column {exc.start + 1}); "
                f"save the file as 'CSV UTF-8'"
            )
            text = chunk.decode("utf-8", "backslashreplace")  # kept, escaped, for the rejects file
        numbers.append(number)
        texts.append(text + "\n")
    reader = csv.reader(texts)
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
            spanned = numbers[consumed : reader.line_num] or numbers[-1:]
            consumed = reader.line_num
            problem = next((bad[n] for n in spanned if n in bad), problem)
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
        if key not in COLUMNS:
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


def parse_row(
    line: int, fields: list[str], index: dict[str, int], width: int, now: datetime
) -> Row:
    """Every check a record needs, before anything is written."""
    if len(fields) != width:
        raise RowError(f"expected {width} columns, found {len(fields)}")

    def get(name: str) -> str | None:
        value = fields[index[name]].strip() if name in index else ""
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
    consent = []
    for channel, address, what in (
        (Channel.EMAIL, email, "email address"),
        (Channel.SMS, phone, "phone number"),
    ):
        if _flag(get(f"consent_{channel}") or "", f"consent_{channel}"):
            if not address:
                raise RowError(f"consent_{channel}: yes, but the row has no {what}")
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
    )


# ---------------------------------------------------------------- writing


def _import_row(
    session: Session,
    clock: Clock,
    registry: Registry,
    policy: Policy,
    row: Row,
    *,
    campaign_key: str,
    source: str,
    file_name: str,
    report: ImportReport,
) -> None:
    by_email = (
        session.scalar(select(Subscriber).where(Subscriber.email == row.email))
        if row.email
        else None
    )
    by_phone = (
        session.scalar(select(Subscriber).where(Subscriber.phone == row.phone))
        if row.phone
        else None
    )
    if by_email is not None and by_phone is not None and by_email.id != by_phone.id:
        raise RowError("email and phone belong to two different subscribers")
    known = by_email or by_phone
    # Addresses are never replaced by an import: a changed one needs a person to look.
    if known is not None and row.email and known.email and known.email != row.email:
        raise RowError("phone: this number belongs to a subscriber with a different email address")
    if known is not None and row.phone and known.phone and known.phone != row.phone:
        raise RowError("email: this address belongs to a subscriber with a different phone number")
    sub = upsert_subscriber(
        session,
        clock,
        email=row.email,
        phone=row.phone,
        first_name=row.first_name,
        locale=row.locale,
        timezone=row.timezone,
        source="import",
    )
    evidence = {
        "file": file_name,
        "line": row.line,
        "import_source": source,
        "consent_source": row.consent_source or source,
        "consent_date": row.consent_date,
    }
    for channel in row.consent:
        history = session.scalar(
            select(ConsentRecord.id)
            .where(ConsentRecord.subscriber_id == sub.id, ConsentRecord.channel == channel)
            .limit(1)
        )
        address = row.email if channel == Channel.EMAIL else row.phone
        # A channel with any history (granted, or revoked since) is left as it is.
        if history is None and suppression_for(session, channel, address) is None:
            record_consent(session, clock, sub, channel, ConsentAction.GRANTED, "import", evidence)
    report.imported += 1
    report.created += known is None
    # Enrolled on the consent this row gives, and only while that consent still stands.
    if not row.consent:
        report.not_enrolled.append((row.line, "the row gives no consent"))
        return
    if sub.status == SubscriberStatus.UNSUBSCRIBED or not set(row.consent) & set(
        reachable_channels(session, sub)
    ):
        report.not_enrolled.append((row.line, _why_not(session, sub, row.consent)))
        return
    if sub.status == SubscriberStatus.PENDING:
        # Awaiting a web sign-up's confirmation: the file's consent will do.
        sub.status = SubscriberStatus.ACTIVE
    existing = session.scalar(
        select(Enrollment.id).where(
            Enrollment.subscriber_id == sub.id, Enrollment.campaign_key == campaign_key
        )
    )
    enroll(session, clock, registry, sub, campaign_key, policy, source="import")
    if existing is None:
        report.enrolled += 1
    else:
        report.already_enrolled += 1


def _why_not(session: Session, sub: Subscriber, channels: tuple[str, ...]) -> str:
    found = []
    for channel in channels:
        sup = suppression_for(session, channel, address_for(sub, channel))
        found.append(f"{channel} suppressed ({sup.reason})" if sup else f"{channel} opted out")
    return "; ".join(found) + "; an import never subscribes anyone again"


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
    batch_size: int = 200,
) -> ImportReport:
    """Import every good record of `path`; ImportFileError when the file is unusable."""
    path = Path(path)
    registry.get(campaign_key)  # a missing or broken campaign stops here, before any row
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    header, records = read_records(raw)
    index, ignored = map_header(header)
    report = ImportReport(header=header, ignored_columns=ignored, dry_run=dry_run)
    session = factory()
    try:
        for line, fields, unreadable in records:
            report.read += 1
            if unreadable:
                report.rejects.append(Reject(line, unreadable, fields))
                continue
            try:
                row = parse_row(line, fields, index, len(header), clock.now())
                with session.begin_nested():
                    _import_row(
                        session,
                        clock,
                        registry,
                        policy,
                        row,
                        campaign_key=campaign_key,
                        source=source,
                        file_name=path.name,
                        report=report,
                    )
            except RowError as exc:
                report.rejects.append(Reject(line, str(exc), fields))
            except IntegrityError:  # someone else wrote the same address meanwhile
                report.rejects.append(
                    Reject(
                        line,
                        "conflicts with a subscriber saved at the same time; import the file again",
                        fields,
                    )
                )
            if not dry_run and report.read % batch_size == 0:
                session.commit()
        if dry_run:
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    if not dry_run:
        report.rejects_path = write_rejects(path, header, report.rejects)
    return report


def write_rejects(path: Path, header: list[str], rejects: list[Reject]) -> Path:
    """`<file>.rejects.csv`: line, reason, then the record as it was. Always written, so a
    stale file from an earlier run is never mistaken for this one's."""
    out = path.with_name(path.name + ".rejects.csv")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["line", "reason", *header])
    for reject in sorted(rejects, key=lambda r: r.line):
        writer.writerow([reject.line, reject.reason, *reject.values])
    out.write_text(buffer.getvalue(), encoding="utf-8-sig", newline="")
    return out


def summary(report: ImportReport) -> str:
    lines = [
        f"{'dry run, nothing written: ' if report.dry_run else ''}read {report.read} rows",
        f"imported {report.imported} ({report.created} new subscribers)",
        f"enrolled {report.enrolled} (already enrolled: {report.already_enrolled})",
        f"not enrolled {len(report.not_enrolled)}",
        f"skipped {len(report.rejects)}",
    ]
    if report.ignored_columns:
        lines.append(f"ignored columns: {', '.join(report.ignored_columns)}")
    lines += [f"  line {line}: not enrolled: {reason}" for line, reason in report.not_enrolled]
    lines += [
        f"  line {r.line}: skipped: {r.reason}"
        for r in sorted(report.rejects, key=lambda r: r.line)
    ]
    if report.rejects_path is not None:
        lines.append(f"rejects written to {report.rejects_path}")
    return "\n".join(lines)
