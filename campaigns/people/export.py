"""Everything held on a person, as they may ask for it (a right of access): one JSON
document, or a zip of CSV files.

The CSV form is one file per table, not one long file: each table has its own columns,
so each file opens in a spreadsheet with a header that means something, and a person
(or the care team) reads "messages.csv" without filtering a `table` column through a
union of every table's columns. JSON values inside a row (an event's payload, consent
evidence) stay JSON text in their cell. Both forms come from campaigns.people.records,
the same rows the person page shows and an erasure changes.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.people.profile import person
from campaigns.people.records import TARGET, records_for
from campaigns.staff import audit
from campaigns.staff.audit import Actor

FORMATS = ("json", "csv")
# Columns about someone else: which staff member acted, and from which address. The
# person learns what was done with their data and when, not who on the team did it.
OMIT = {"audit_log": frozenset({"actor", "origin"})}


def _value(value):
    return value.isoformat() if isinstance(value, datetime) else value


def row_dict(row, omit: frozenset[str] = frozenset()) -> dict:
    return {
        a.key: _value(getattr(row, a.key))
        for a in inspect(row).mapper.column_attrs
        if a.key not in omit
    }


def document(session: Session, subscriber_id: int, now: datetime) -> dict:
    rec = records_for(session, person(session, subscriber_id))
    return {
        "person_id": subscriber_id,
        "exported_at": now.isoformat(),
        "tables": {
            name: [row_dict(r, OMIT.get(name, frozenset())) for r in rows]
            for name, rows in rec.tables().items()
        },
    }


def to_json(doc: dict) -> bytes:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False).encode("utf-8")


def to_zip(doc: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, rows in doc["tables"].items():
            text = io.StringIO()
            if rows:
                writer = csv.DictWriter(text, fieldnames=list(rows[0]))
                writer.writeheader()
                for row in rows:
                    writer.writerow(
                        {
                            k: json.dumps(v, ensure_ascii=False)
                            if isinstance(v, dict | list)
                            else ("" if v is None else v)
                            for k, v in row.items()
                        }
                    )
            archive.writestr(f"person-{doc['person_id']}/{name}.csv", text.getvalue())
    return buffer.getvalue()


def export(
    session: Session, clock: Clock, actor: Actor, subscriber_id: int, fmt: str
) -> tuple[bytes, str]:
    """The export in `fmt` (json | csv) and its file name; recorded in the audit log
    (the person's id and the format, nothing of what was exported). The caller commits."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    doc = document(session, subscriber_id, clock.now())
    audit.record(
        session, clock, actor, "person.export", TARGET, subscriber_id, after={"format": fmt}
    )
    if fmt == "json":
        return to_json(doc), f"person-{subscriber_id}.json"
    return to_zip(doc), f"person-{subscriber_id}.zip"
