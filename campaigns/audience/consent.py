"""Consent: a history of append-only records per subscriber and channel; the latest
record decides."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import ConsentRecord, Subscriber
from campaigns.states import ConsentAction


def record_consent(
    session: Session,
    clock: Clock,
    subscriber: Subscriber,
    channel: str,
    action: str,
    source: str,
    evidence: dict | None = None,
) -> ConsentRecord:
    record = ConsentRecord(
        subscriber_id=subscriber.id,
        channel=channel,
        action=action,
        source=source,
        evidence=evidence,
        created_at=clock.now(),
    )
    session.add(record)
    session.flush()
    return record


def has_consent(session: Session, subscriber_id: int, channel: str) -> bool:
    latest = session.scalar(
        select(ConsentRecord.action)
        .where(ConsentRecord.subscriber_id == subscriber_id, ConsentRecord.channel == channel)
        .order_by(ConsentRecord.created_at.desc(), ConsentRecord.id.desc())
        .limit(1)
    )
    return latest == ConsentAction.GRANTED


# Evidence keys that say how consent was given without saying who gave it: the channel
# and wording (the TCPA record), the keyword, the provider's message id, the import
# file and line. Everything else (a browser's user agent, a text's own words, a staff
# member's note about the person) is theirs, and an erasure removes it. An allow-list, so
# a key some future path adds is wiped until someone decides it may stay.
IMPERSONAL_EVIDENCE = frozenset(
    {
        "via",
        "method",
        "form_locale",
        "sms_consent_text",
        "keyword",
        "message_sid",
        "provider_event_id",
        "asked_at",
        "inbox_item",
        "by",
        "file",
        "line",
        "import_source",
        "consent_source",
        "consent_date",
    }
)


def erase_evidence(session: Session, subscriber_id: int) -> int:
    """Wipe the personal fields of one person's consent evidence; how many records changed.

    The one exception to "consent records are append-only" (the listener in
    campaigns.models refuses every ORM update or delete). A person's right to erasure
    outranks our copy of their user agent or their words, but not the record that they
    agreed or withdrew and when: channel, action, source and dates stay, and so does the
    consent wording they were shown. This runs as explicit UPDATE statements, one per
    record, that set only `evidence`; nothing else in the code may change these rows.
    """
    changed = 0
    rows = session.execute(
        select(ConsentRecord.id, ConsentRecord.evidence).where(
            ConsentRecord.subscriber_id == subscriber_id
        )
    ).all()
    for record_id, evidence in rows:
        kept = {k: v for k, v in (evidence or {}).items() if k in IMPERSONAL_EVIDENCE}
        if evidence and kept != evidence:
            kept["erased"] = True
            session.execute(
                update(ConsentRecord)
                .where(ConsentRecord.id == record_id)
                .values(evidence=kept)
                .execution_options(synchronize_session=False)
            )
            changed += 1
    # Rows already loaded in this session still hold the old evidence: read them afresh.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, ConsentRecord) and obj.subscriber_id == subscriber_id:
            session.expire(obj)
    return changed
