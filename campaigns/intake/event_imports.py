"""Importing person events from a CSV file (`drip import-events FILE`): the events API's
fields as columns, for a system that exports rather than posts.

    event_id,name,email,phone,subscriber_token,occurred_at,properties
    bk-1041,visit_booked,ana@example.com,,,2026-11-20T14:30:00Z,"{""clinic"": ""north""}"

Read like the subscriber import (campaigns.intake.imports: the same streaming reader, the
same line numbers, the same rejects file and its spreadsheet-safe cells): every record is
checked on its own with the API's own schema (campaigns.tracking.person_events) and taken
by the API's own entry point (campaigns.journeys.on_event), so an event does the same
whichever way it came. A record ends as recorded, already recorded (its event id was
known: importing the file again changes nothing) or rejected with its line number and
reason in `<file>.rejects.csv`, which can be fixed and imported again. `properties`
holds a JSON object. Records are committed in batches; a dry run rolls everything back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock
from campaigns.intake.import_batches import RowError
from campaigns.intake.imports import (
    FORMULA_START,
    ImportFileError,
    Reject,
    check_characters,
    read_records,
    summary_text,
    write_rejects,
)
from campaigns.journeys.on_event import take_event
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.tracking.person_events import (
    FIELDS,
    PERSON_FIELDS,
    EventConflict,
    EventInputError,
    UnknownPerson,
    parse_event,
)

ALIASES = {
    "id": "event_id",
    "event": "name",
    "event_name": "name",
    "e_mail": "email",
    "email_address": "email",
    "phone_number": "phone",
    "mobile": "phone",
    "token": "subscriber_token",
    "subscriber": "subscriber_token",
    "occurred": "occurred_at",
    "when": "occurred_at",
    "time": "occurred_at",
}


@dataclass
class EventImportReport:
    read: int = 0
    recorded: int = 0
    already_recorded: int = 0
    goals: list[tuple[int, str]] = field(default_factory=list)  # (line, "campaign: did")
    rejects: list[Reject] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rejects_path: Path | None = None
    dry_run: bool = False


def map_header(header: list[str]) -> tuple[dict[str, int], list[str]]:
    index: dict[str, int] = {}
    ignored = []
    for i, name in enumerate(header):
        key = re.sub(r"[\s\-]+", "_", name.strip().lower())
        key = ALIASES.get(key, key)
        if key not in FIELDS:
            ignored.append(name.strip())
            continue
        if key in index:
            raise ImportFileError(f"the header names the column {key!r} twice")
        index[key] = i
    missing = [c for c in ("event_id", "name") if c not in index]
    if missing or not any(c in index for c in PERSON_FIELDS):
        found = ", ".join(repr(h.strip()) for h in header) or "nothing"
        raise ImportFileError(
            f"the header row needs event_id, name and one of {', '.join(PERSON_FIELDS)} "
            f"(found {found}); columns: {', '.join(FIELDS)}"
        )
    return index, ignored


def row_fields(fields: list[str], index: dict[str, int], header: list[str]) -> dict:
    """The record as the API's fields (blank cells left out); RowError if unreadable."""
    if len(fields) != len(header):
        raise RowError(f"expected {len(header)} columns, found {len(fields)}")
    check_characters(fields, header)
    data = {}
    for name, i in index.items():
        value = fields[i].strip()
        if value[:1] == "'" and value[1:2].startswith(FORMULA_START):
            value = value[1:]  # neutralised in a rejects file: the value as it was
        if value:
            data[name] = value
    if "properties" in data:
        try:
            data["properties"] = json.loads(data["properties"])
        except ValueError:
            raise RowError(
                'properties: not JSON; write an object like {"clinic": "north"}'
            ) from None
        if not isinstance(data["properties"], dict):
            raise RowError('properties: must be a JSON object like {"clinic": "north"}')
    return data


def import_events(
    factory: sessionmaker[Session],
    clock: Clock,
    registry: Registry,
    policy: Policy,
    path: Path,
    *,
    region: str = "US",
    dry_run: bool = False,
    batch_size: int = 500,
) -> EventImportReport:
    """Import every good record of `path`; ImportFileError when the file is unusable."""
    path = Path(path)
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    session = factory()
    try:
        with stream:
            header, records = read_records(stream)
            index, ignored = map_header(header)
            report = EventImportReport(header=header, ignored_columns=ignored, dry_run=dry_run)
            pending = 0
            for line, fields, unreadable in records:
                report.read += 1
                try:
                    if unreadable:
                        raise RowError(unreadable)
                    data = row_fields(fields, index, header)
                    event = parse_event(data, clock.now(), region)
                    with session.begin_nested():
                        taken = take_event(
                            session,
                            clock,
                            registry,
                            policy,
                            event,
                            source="csv",
                            source_ref=f"{path.name} line {line}",
                        )
                except (RowError, EventInputError, UnknownPerson, EventConflict) as exc:
                    report.rejects.append(Reject(line, str(exc), fields))
                    continue
                except (IntegrityError, DataError) as exc:
                    detail = str(exc.orig).splitlines()[0] if exc.orig is not None else "refused"
                    report.rejects.append(
                        Reject(line, f"the database refused this row ({detail})", fields)
                    )
                    continue
                if taken.created:
                    report.recorded += 1
                    report.goals += [(line, f"{g.campaign_key}: {g.did}") for g in taken.goals]
                else:
                    report.already_recorded += 1
                pending += 1
                if pending >= batch_size and not dry_run:
                    session.commit()
                    pending = 0
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


def summary(report: EventImportReport) -> str:
    return summary_text(
        report,
        [
            f"recorded {report.recorded} events (already recorded: {report.already_recorded})",
            f"goals reached {len(report.goals)}",
        ],
        [f"goal: {what}" for _, what in report.goals],
        [line for line, _ in report.goals],
    )
