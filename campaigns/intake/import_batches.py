"""Writing checked import records: a batch at a time, or one record at a time.

`write_batch` is the import's normal path. It reads everything a batch needs in a few
queries (the people its addresses already belong to, their consent history, the
suppressions on its addresses, their enrollments in the campaign), decides every record
in memory in file order, then writes new people, consent grants and enrollments with one
statement each. `write_row` is the same decision for one record, by queries of its own;
the import uses it for a batch the database refused as a whole (a person saved by
someone else meanwhile, a value it does not take), so only the record at fault is
rejected. Both keep the same rules, record by record:

- a person is found by email, else by phone; a record whose email and phone belong to
  two people, or that would replace an address on file, is rejected (addresses are
  never replaced by an import: a changed one needs a person to look);
- a blank address, first name, language or time zone is filled from the record;
- attributes (attr_<name> columns) are set from the record where it gives a value;
- consent is granted for a channel the record consents to only when that channel has no
  history at all for the person and its address is not suppressed, so an old list never
  undoes an unsubscribe or STOP;
- the person is enrolled only on the consent the record gives, and only while that
  consent still stands (never someone unsubscribed); a pending web sign-up becomes
  active, since the file's consent does; enrolling twice creates nothing.

A record repeated within a batch sees what the records before it did, exactly as it
would one record at a time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from campaigns.audience.consent import record_consent
from campaigns.audience.eligibility import reachable_channels
from campaigns.audience.subscribers import address_for, upsert_subscriber
from campaigns.audience.suppression import stored_form, suppressed_addresses, suppression_for
from campaigns.clock import Clock
from campaigns.db import id_in
from campaigns.delivery.enrollment import enroll
from campaigns.models import ConsentRecord, Enrollment, Subscriber
from campaigns.sequences.registry import Registry
from campaigns.sequences.revisions import ensure_revision
from campaigns.sequences.timing import Policy, due_time
from campaigns.states import (
    CHANNELS,
    Channel,
    ConsentAction,
    EnrollmentStatus,
    SubscriberStatus,
)


class RowError(ValueError):
    """One record is bad; the message is the reason written to the rejects file."""


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
    # (name, value) of the file's attr_<name> columns with a value: sequence conditions
    # test them; the file's value replaces the person's, a blank cell leaves it.
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass
class Outcome:
    """What became of one record: rejected (with the reason), or imported."""

    line: int
    rejected: str | None = None
    created: bool = False
    enrolled: bool = False
    already_enrolled: bool = False
    not_enrolled: str | None = None


NO_CONSENT = "the row gives no consent"
NEVER_AGAIN = "an import never subscribes anyone again"
TWO_PEOPLE = "email and phone belong to two different subscribers"
OTHER_EMAIL = "phone: this number belongs to a subscriber with a different email address"
OTHER_PHONE = "email: this address belongs to a subscriber with a different phone number"


def _evidence(row: Row, source: str, file_name: str) -> dict:
    return {
        "file": file_name,
        "line": row.line,
        "import_source": source,
        "consent_source": row.consent_source or source,
        "consent_date": row.consent_date,
    }


def _address_conflict(row: Row, by_email, by_phone) -> str | None:
    if by_email is not None and by_phone is not None and by_email is not by_phone:
        return TWO_PEOPLE
    known = by_email or by_phone
    if known is not None and row.email and known.email and known.email != row.email:
        return OTHER_EMAIL
    if known is not None and row.phone and known.phone and known.phone != row.phone:
        return OTHER_PHONE
    return None


# ---------------------------------------------------------------- one record


def write_row(
    session: Session,
    clock: Clock,
    registry: Registry,
    policy: Policy,
    row: Row,
    *,
    campaign_key: str,
    source: str,
    file_name: str,
) -> Outcome:
    """One record by its own queries; RowError when it must be rejected."""
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
    conflict = _address_conflict(row, by_email, by_phone)
    if conflict:
        raise RowError(conflict)
    known = by_email or by_phone
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
    _set_attributes(sub, row)
    evidence = _evidence(row, source, file_name)
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
    outcome = Outcome(row.line, created=known is None)
    if not row.consent:
        outcome.not_enrolled = NO_CONSENT
        return outcome
    if sub.status == SubscriberStatus.UNSUBSCRIBED or not set(row.consent) & set(
        reachable_channels(session, sub)
    ):
        causes = [
            getattr(suppression_for(session, c, address_for(sub, c)), "reason", None)
            for c in row.consent
        ]
        outcome.not_enrolled = _why_not(row.consent, causes)
        return outcome
    if sub.status == SubscriberStatus.PENDING:
        # Awaiting a web sign-up's confirmation: the file's consent will do.
        sub.status = SubscriberStatus.ACTIVE
    existing = session.scalar(
        select(Enrollment.id).where(
            Enrollment.subscriber_id == sub.id, Enrollment.campaign_key == campaign_key
        )
    )
    enroll(session, clock, registry, sub, campaign_key, policy, source="import")
    outcome.enrolled, outcome.already_enrolled = existing is None, existing is not None
    return outcome


def _set_attributes(sub: Subscriber, row: Row) -> None:
    if row.attributes:
        # A new dict: the JSON column is not tracked for changes made in place.
        sub.attributes = {**(sub.attributes or {}), **dict(row.attributes)}


def _why_not(channels: tuple[str, ...], causes: list[str | None]) -> str:
    found = [
        f"{channel} suppressed ({cause})" if cause else f"{channel} opted out"
        for channel, cause in zip(channels, causes, strict=True)
    ]
    return "; ".join(found) + "; " + NEVER_AGAIN


# ---------------------------------------------------------------- a batch


class _Facts:
    """What the database holds about a batch's addresses, read in four queries and then
    kept up to date in memory as the batch's records are decided."""

    def __init__(self, session: Session, rows: list[Row], campaign_key: str):
        emails = {r.email for r in rows if r.email}
        phones = {r.phone for r in rows if r.phone}
        people = list(
            session.scalars(
                select(Subscriber).where(
                    id_in(session, Subscriber.email, emails)
                    | id_in(session, Subscriber.phone, phones)
                )
            )
        )
        self.by_email = {s.email: s for s in people if s.email}
        self.by_phone = {s.phone: s for s in people if s.phone}
        by_id = {s.id: s for s in people}
        # (person, channel) → the latest consent action; a key present means history.
        self.consent: dict[tuple[Subscriber, str], str] = {}
        self.enrolled: set[Subscriber] = set()
        if by_id:
            rows_ = session.execute(
                select(ConsentRecord.subscriber_id, ConsentRecord.channel, ConsentRecord.action)
                .where(id_in(session, ConsentRecord.subscriber_id, by_id))
                .order_by(ConsentRecord.created_at, ConsentRecord.id)
            )
            for sid, channel, action in rows_:  # ordered: the latest record wins
                self.consent[(by_id[sid], channel)] = action
            self.enrolled = {
                by_id[sid]
                for sid in session.scalars(
                    select(Enrollment.subscriber_id).where(
                        Enrollment.campaign_key == campaign_key,
                        id_in(session, Enrollment.subscriber_id, by_id),
                    )
                )
            }
        self.suppressed = suppressed_addresses(session, emails, phones)

    def suppression(self, channel: str, address: str | None) -> str | None:
        if not address:
            return None
        return self.suppressed.get((channel, stored_form(channel, address)))

    def reachable(self, sub: Subscriber) -> list[str]:
        return [
            c
            for c in CHANNELS
            if address_for(sub, c) and self.consent.get((sub, c)) == ConsentAction.GRANTED
        ]


def write_batch(
    session: Session,
    clock: Clock,
    registry: Registry,
    policy: Policy,
    rows: list[Row],
    *,
    campaign_key: str,
    source: str,
    file_name: str,
) -> list[Outcome]:
    """Every record of `rows`, in file order, in a few set-based statements. The caller
    holds a savepoint: an IntegrityError or DataError here means nothing of the batch
    stands, and it goes again one record at a time."""
    campaign = registry.get(campaign_key)
    now = clock.now()
    facts = _Facts(session, rows, campaign_key)
    created: list[Subscriber] = []
    grants: list[tuple[Subscriber, str, dict]] = []
    enrollments: list[tuple[Subscriber, datetime]] = []
    outcomes = []
    for row in rows:
        by_email = facts.by_email.get(row.email) if row.email else None
        by_phone = facts.by_phone.get(row.phone) if row.phone else None
        conflict = _address_conflict(row, by_email, by_phone)
        if conflict:
            outcomes.append(Outcome(row.line, rejected=conflict))
            continue
        sub = by_email or by_phone
        outcome = Outcome(row.line, created=sub is None)
        outcomes.append(outcome)
        if sub is None:
            sub = Subscriber(
                email=row.email,
                phone=row.phone,
                status=SubscriberStatus.ACTIVE,
                public_token=secrets.token_urlsafe(32),
                created_at=now,
                updated_at=now,
            )
            created.append(sub)
        else:  # the blanks filled, as upsert_subscriber does
            sub.email = sub.email or row.email
            sub.phone = sub.phone or row.phone
            sub.updated_at = now
        if sub.email:
            facts.by_email[sub.email] = sub
        if sub.phone:
            facts.by_phone[sub.phone] = sub
        if row.first_name is not None:
            sub.first_name = row.first_name.strip()[:100] or None
        if row.locale:
            sub.locale = row.locale
        if row.timezone:
            sub.timezone = row.timezone
        _set_attributes(sub, row)
        evidence = _evidence(row, source, file_name)
        for channel in row.consent:
            address = row.email if channel == Channel.EMAIL else row.phone
            if (sub, channel) not in facts.consent and facts.suppression(channel, address) is None:
                grants.append((sub, channel, evidence))
                facts.consent[(sub, channel)] = ConsentAction.GRANTED
        if not row.consent:
            outcome.not_enrolled = NO_CONSENT
            continue
        reachable = facts.reachable(sub)
        if sub.status == SubscriberStatus.UNSUBSCRIBED or not set(row.consent) & set(reachable):
            causes = [facts.suppression(c, address_for(sub, c)) for c in row.consent]
            outcome.not_enrolled = _why_not(row.consent, causes)
            continue
        if sub.status == SubscriberStatus.PENDING:
            sub.status = SubscriberStatus.ACTIVE
        if sub in facts.enrolled:
            outcome.already_enrolled = True
            continue
        first = campaign.steps[0]
        enrollments.append((sub, due_time(now, campaign, first, sub, reachable, policy)))
        facts.enrolled.add(sub)
        outcome.enrolled = True

    session.add_all(created)
    session.flush()  # new people in one INSERT .. RETURNING id, changes to known ones
    if grants:
        session.execute(
            insert(ConsentRecord),
            [
                {
                    "subscriber_id": sub.id,
                    "channel": channel,
                    "action": ConsentAction.GRANTED,
                    "source": "import",
                    "evidence": evidence,
                    "created_at": now,
                }
                for sub, channel, evidence in grants
            ],
        )
    if enrollments:
        revision = ensure_revision(session, clock, campaign)
        session.execute(
            insert(Enrollment),
            [
                {
                    "subscriber_id": sub.id,
                    "campaign_key": campaign.key,
                    "campaign_version": campaign.version,
                    "campaign_revision": revision,
                    "cursor_base_at": now,
                    "next_step_key": campaign.steps[0].key,
                    "next_due_at": due,
                    "steps_done": 0,
                    "status": EnrollmentStatus.ACTIVE,
                    "source": "import",
                    "created_at": now,
                    "updated_at": now,
                }
                for sub, due in enrollments
            ],
        )
    return outcomes
