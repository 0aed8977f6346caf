"""Erasing a person at their request: what identifies them goes, what we did stays.

    subscribers       email, phone, first name, attributes, time zone wiped; status
                      erased, erased_at set; a new public token, so links in old messages
                      open nothing of theirs
    consent_records   kept (that they agreed or withdrew, and when); personal evidence
                      wiped (campaigns.audience.consent.erase_evidence)
    suppressions      every suppression of their addresses kept, the address replaced by
                      its keyed hash; a channel they had opted out of without one gets one,
                      hashed. So a STOP stays honoured, a bounce stays a bounce, and every
                      check (sending, sign-up, imports, inbound texts) still matches the
                      address if it comes back (campaigns.audience.suppression)
    enrollments       kept; live ones exited ("erased"), so nothing more is claimed
    messages          kept for the counts; waiting ones skipped; address or name in an
                      error or reason text replaced
    events            kept; their payload's addresses, bodies, IPs and user agents removed
    contact_requests  kept; note, preferred time and call-back number wiped, open ones
                      closed; the care team's notes on them kept (who, when), text wiped
    inbox_items       kept; the phone and what they wrote wiped
    answers           kept as values (the person they belong to no longer has an identity)
    person_events     kept; properties wiped
    audit_log         one entry, ids and counts only

A new sign-up with the same email afterwards is a new person: a new row, no consent,
the full double opt-in.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from campaigns.audience.consent import erase_evidence
from campaigns.audience.suppression import Cause, hash_required, is_hashed
from campaigns.clock import Clock
from campaigns.models import Subscriber, Suppression
from campaigns.people.profile import person
from campaigns.people.records import TARGET, records_for
from campaigns.reasons import ExitReason, Reason
from campaigns.staff import audit
from campaigns.staff.audit import Actor
from campaigns.states import (
    WAITING,
    Channel,
    ConsentAction,
    ContactStatus,
    EnrollmentStatus,
    InboxStatus,
    MessageStatus,
    SubscriberStatus,
)

ERASED = "[erased]"
# Payload keys that carry a person, in the providers' own spelling (SendGrid's event
# `email`, `ip`, `useragent`; Twilio's `From`, `To`, `Body`, `FromCity`...; ours, with
# `agent`, the user agent campaigns.tracking.portal.engage keeps beside a machine's hit).
PERSONAL_KEYS = frozenset(
    {"email", "to", "from", "body", "ip", "useragent", "user_agent", "agent", "phone"}
    | {"first_name"}
)
TWILIO_PLACE = re.compile(r"^(?:From|To)[A-Z]")  # FromCity, ToZip, FromCountry...


@dataclass(frozen=True)
class Erased:
    subscriber_id: int
    already: bool
    counts: dict[str, int]


class _Scrubber:
    """Finds the person in free text: their addresses, their phone's digits, their name."""

    def __init__(self, sub: Subscriber):
        needles = [x for x in (sub.email, sub.phone) if x]
        if sub.phone:
            needles.append(sub.phone.lstrip("+"))
            needles.append(sub.phone[-10:])  # the national number, as a US provider writes it
        self.pattern = (
            re.compile("|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True)), re.I)
            if needles
            else None
        )
        self.name = (
            re.compile(rf"\b{re.escape(sub.first_name)}\b", re.I) if sub.first_name else None
        )

    def text(self, value: str | None) -> str | None:
        if not value:
            return value
        if self.pattern is not None:
            value = self.pattern.sub(ERASED, value)
        if self.name is not None:
            value = self.name.sub(ERASED, value)
        return value

    def payload(self, value):
        if isinstance(value, dict):
            return {
                k: self.payload(v)
                for k, v in value.items()
                if k.lower() not in PERSONAL_KEYS and not TWILIO_PLACE.match(k)
            }
        if isinstance(value, list):
            return [self.payload(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def _keep_suppressions(session: Session, clock: Clock, sub: Subscriber, rec) -> int:
    """Every suppression of the person's addresses kept as a hash, plus one for each
    channel they opted out of that has none. Returns how many hashed rows they now have."""
    latest: dict[str, str] = {}
    for c in rec.consent_records:  # in order: the latest record wins
        latest[c.channel] = c.action
    kept = 0
    for channel, address in ((Channel.EMAIL, sub.email), (Channel.SMS, sub.phone)):
        if not address:
            continue
        digest = hash_required(session, channel, address)
        mine = [s for s in rec.suppressions if s.channel == channel]
        already = next((s for s in mine if s.address == digest), None)
        for row in mine:
            if is_hashed(row.address):
                continue
            if already is None:
                row.address = digest  # the same row, its cause and date kept
                already = row
            else:
                session.delete(row)  # the hashed row of an earlier erasure stands for both
        if already is None and latest.get(channel) == ConsentAction.REVOKED:
            cause = Cause.STOP if channel == Channel.SMS else Cause.UNSUBSCRIBED
            already = Suppression(
                channel=channel,
                address=digest,
                reason=cause,
                source="erasure",
                created_at=clock.now(),
            )
            session.add(already)
        kept += already is not None
    session.flush()
    return kept


def erase(session: Session, clock: Clock, actor: Actor, subscriber_id: int) -> Erased:
    """Erase one person (see the module docstring); erasing again changes nothing."""
    sub = person(session, subscriber_id)
    if sub.status == SubscriberStatus.ERASED:
        return Erased(sub.id, True, {})
    now = clock.now()
    rec = records_for(session, sub)
    scrub = _Scrubber(sub)
    counts = {"suppressions_hashed": _keep_suppressions(session, clock, sub, rec)}
    counts["consent_records"] = erase_evidence(session, sub.id)

    for e in rec.enrollments:
        if e.status in (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED):
            e.status, e.exit_reason, e.updated_at = EnrollmentStatus.EXITED, ExitReason.ERASED, now
    for m in rec.messages:
        if m.status in WAITING:
            m.status, m.next_attempt_at = MessageStatus.SKIPPED, None
            m.reason_code, m.reason = Reason.ERASED.value, Reason.ERASED.text()
        m.reason, m.last_error = scrub.text(m.reason), scrub.text(m.last_error)
        m.updated_at = now
    for ev in rec.events:
        ev.payload = scrub.payload(ev.payload) if ev.payload else ev.payload
    for c in rec.contact_requests:
        c.note = c.preferred_time = c.callback_phone = None
        if c.status == ContactStatus.OPEN:
            c.status, c.handled_at = ContactStatus.CLOSED, now
    for n in rec.contact_request_notes:
        n.body = ""
    for item in rec.inbox_items:
        item.phone, item.body = "", ""
        if item.status == InboxStatus.OPEN:
            item.status, item.handled_at, item.handled_by = InboxStatus.DONE, now, actor.by
    for pe in rec.person_events:
        pe.properties = None
    counts.update(
        {
            "messages": len(rec.messages),
            "events": len(rec.events),
            "contact_requests": len(rec.contact_requests),
            "contact_request_notes": len(rec.contact_request_notes),
            "inbox_items": len(rec.inbox_items),
            "person_events": len(rec.person_events),
            "answers": len(rec.answers),
        }
    )

    sub.email = sub.phone = sub.first_name = sub.timezone = None
    sub.attributes = None
    sub.confirmation_requested_at = sub.sms_confirmation_requested_at = None
    sub.public_token = secrets.token_urlsafe(32)
    sub.status, sub.erased_at, sub.updated_at = SubscriberStatus.ERASED, now, now
    session.flush()
    audit.record(
        session,
        clock,
        actor,
        "person.erase",
        TARGET,
        sub.id,
        before=None,
        after={"status": SubscriberStatus.ERASED, **counts},
    )
    return Erased(sub.id, False, counts)
