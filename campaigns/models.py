"""Tables. The database is the source of truth; the broker only carries work due now.

subscribers ─┬─ consent_records   (append-only history of grants and revocations)
             ├─ enrollments       (a cursor per campaign: next step, next due time)
             │     └─ messages    (the outbox: one row per enrollment, step and channel)
             ├─ events            (provider and tracking events, raw payload kept)
             ├─ person_events     (what the person did elsewhere: a visit booked; goals)
             ├─ cap_holds         (a step held back by the frequency cap, and until when)
             ├─ answers           (their answers to a check-in question: pain 0 to 10)
             └─ contact_requests  (asks to be contacted by the care team)
suppressions                      (addresses that must not be sent to, any campaign)
api_keys                          (who may post person events; only a hash of each key)
audit_log                         (who did what in the workspace or the CLI: append-only)
staff_accounts ── staff_sessions  (who signs in, their role; one row per signed-in browser)
sequence_revisions                (each published version of a campaign: its file and templates)
sequence_drafts                   (a campaign's draft being edited in the workspace, one each)
scheduler_leases ── scheduler_instances  (which scheduler leads; every scheduler's heartbeat)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from campaigns.states import ContactStatus, EnrollmentStatus, InboxStatus, SubscriberStatus


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the domain works in aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Primary keys are INTEGER columns: 32-bit on PostgreSQL. An id from outside beyond this
# names no row, and PostgreSQL refuses to even compare it; callers check with is_row_id.
ROW_ID_MAX = 2**31 - 1


def is_row_id(value: int) -> bool:
    return 1 <= value <= ROW_ID_MAX


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict] = {datetime: UTCDateTime()}


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)  # E.164
    first_name: Mapped[str | None] = mapped_column(String(100))
    locale: Mapped[str | None] = mapped_column(String(10))
    timezone: Mapped[str | None] = mapped_column(String(64))
    # campaigns.states.SubscriberStatus
    status: Mapped[str] = mapped_column(String(20), default=SubscriberStatus.ACTIVE)
    # Double opt-in: when a confirmation email was asked for, and when one was last handed
    # to the provider; the notify task sends whenever the request is newer than the send.
    confirmation_requested_at: Mapped[datetime | None]
    confirmation_sent_at: Mapped[datetime | None]
    # SMS double opt-in for a phone given on the form: when a "reply YES" text was asked
    # for (cleared when the phone answers YES), and when one was last handed to the provider.
    sms_confirmation_requested_at: Mapped[datetime | None]
    sms_confirmation_sent_at: Mapped[datetime | None]
    # Random, unguessable; links carry tokens signed over it, never the id or address.
    public_token: Mapped[str] = mapped_column(String(43), unique=True)
    # What sequence conditions can test (`attribute: {plan: medicare}`): names to text
    # values, from an import's attr_<name> columns (campaigns.sequences.conditions).
    attributes: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # When the person's data was erased (status erased; campaigns.people.erasure).
    erased_at: Mapped[datetime | None]

    enrollments: Mapped[list[Enrollment]] = relationship(back_populates="subscriber")


class ConsentRecord(Base):
    """What the subscriber agreed to or withdrew, when and how. Never updated or deleted."""

    __tablename__ = "consent_records"
    __table_args__ = (
        # Covering: the claim and the send read every person's consent history in a batch
        # (campaigns.audience.eligibility.Facts) from the index alone, not from a heap page
        # per person (migration 0010).
        Index(
            "ix_consent_records_subscriber_id",
            "subscriber_id",
            postgresql_include=["channel", "action", "created_at", "id"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"))
    channel: Mapped[str] = mapped_column(String(10))  # email | sms
    action: Mapped[str] = mapped_column(String(10))  # granted | revoked
    source: Mapped[str] = mapped_column(String(40))  # form, import, sms_keyword, unsubscribe, ...
    evidence: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime]


@event.listens_for(ConsentRecord, "before_update")
@event.listens_for(ConsentRecord, "before_delete")
def _consent_is_append_only(_mapper, _conn, target):
    raise ValueError("consent records are append-only; add a new record instead")


class Suppression(Base):
    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("channel", "address", name="uq_suppression_address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    # Lower-cased email or E.164 phone; or, once its person was erased, a keyed hash of it
    # ("hmac:<hex>", campaigns.audience.suppression.hashed), which every check also asks for.
    address: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(40))  # unsubscribed, stop, bounce, complaint, ...
    source: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]


# The enrollments a live edit may move onto a campaign's new shape
# (campaigns.sequences.revisions.reconcile): active ones, and those the engine paused for a
# step an edit removed (campaigns.reasons.missing_step). Literal SQL, shared by the partial
# index below and the query that uses it, so PostgreSQL proves the index applies.
RECONCILABLE = (
    "status = 'active' OR (status = 'paused' AND exit_reason LIKE 'step % no longer exists')"
)


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        # One enrollment per person and campaign, or one per entry where the campaign lets
        # people join again (`reentry: true`, campaigns.journeys.triggers).
        UniqueConstraint(
            "subscriber_id", "campaign_key", "entry", name="uq_enrollment_subscriber_campaign"
        ),
        # A trigger (a course completed, a call asked for...) enrolls at most once.
        UniqueConstraint("campaign_key", "trigger_ref", name="uq_enrollment_trigger"),
        Index("ix_enrollments_due", "status", "next_due_at"),
        # Every tick asks "anyone here not on the deployed revision?"; answered from this
        # index in a few probes, however many are enrolled (migration 0010).
        Index(
            "ix_enrollments_reconcile",
            "campaign_key",
            "campaign_revision",
            postgresql_where=text(RECONCILABLE),
            sqlite_where=text(RECONCILABLE),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"))
    campaign_key: Mapped[str] = mapped_column(String(63))
    campaign_version: Mapped[int] = mapped_column(Integer)
    # Which shape of the sequence (campaigns.sequences.revisions) the cursor was computed against.
    campaign_revision: Mapped[str | None] = mapped_column(String(16))
    # When the cursor last moved (joining, or the previous step going out): delays count
    # from here, so an edited delay can be re-applied to people already waiting.
    cursor_base_at: Mapped[datetime | None]
    # The cursor: which step goes next and when. Steps are followed by key, so a
    # marketer's edit to the file maps onto people already enrolled.
    next_step_key: Mapped[str | None] = mapped_column(String(63))
    next_due_at: Mapped[datetime | None]
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    # While the next step waits for an event (`wait_for`): "<event>:<awaited step>><next
    # step>", so an open or a click wakes it in one UPDATE (campaigns.sequences.waits).
    waiting_for: Mapped[str | None] = mapped_column(String(140))
    # campaigns.states.EnrollmentStatus
    status: Mapped[str] = mapped_column(String(20), default=EnrollmentStatus.ACTIVE)
    exit_reason: Mapped[str | None] = mapped_column(String(80))
    source: Mapped[str] = mapped_column(String(40), default="api")
    # 1, or the how-many-th time this person joined a campaign that allows joining again.
    entry: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    # What enrolled them, when a trigger did ("completed:12", "event:40"...): one each.
    trigger_ref: Mapped[str | None] = mapped_column(String(40))
    # The campaign's goal (campaigns.journeys.goals): the person event that reached it and
    # when the person did it; set once, whatever the goal then did to the cursor.
    goal_event_id: Mapped[int | None] = mapped_column(ForeignKey("person_events.id"))
    goal_reached_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    subscriber: Mapped[Subscriber] = relationship(back_populates="enrollments")


class Message(Base):
    """The outbox. The unique key is what makes "at most one message per step" hold
    whatever workers crash, retry or run twice."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_key", "channel", name="uq_message_enrollment_step"),
        Index("ix_messages_status_next", "status", "next_attempt_at"),
        Index("ix_messages_funnel", "campaign_key", "step_key", "channel", "status"),
        Index("ix_messages_updated", "updated_at"),
        # Only rows a provider has named: a row is written three or four times before it
        # has a provider id (claim, lease, result), and each write would add an entry.
        Index(
            "ix_messages_provider_id",
            "provider",
            "provider_message_id",
            postgresql_where=text("provider_message_id IS NOT NULL"),
            sqlite_where=text("provider_message_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    campaign_key: Mapped[str] = mapped_column(String(63))
    campaign_version: Mapped[int] = mapped_column(Integer)
    step_key: Mapped[str] = mapped_column(String(63))
    channel: Mapped[str] = mapped_column(String(10))
    # Random; signed links name the message by this, never by id (campaigns.links).
    public_token: Mapped[str] = mapped_column(String(22), unique=True)
    # campaigns.states.MessageStatus, with the lifecycle drawn there.
    status: Mapped[str] = mapped_column(String(20))
    # Why it stands there: a stable code (campaigns.reasons) and its human sentence.
    reason_code: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_until: Mapped[datetime | None]
    provider: Mapped[str | None] = mapped_column(String(20))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The step's experiment arm this person got (campaigns.sequences.experiments); None
    # for a step without variants. Re-renders and reports read it here.
    variant: Mapped[str | None] = mapped_column(String(20))


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id", name="uq_event_provider_id"),
        # Retention finds old events by this (campaigns.reporting.retention).
        Index("ix_events_occurred", "occurred_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"), index=True)
    type: Mapped[str] = mapped_column(String(20))  # campaigns.states.EventType
    provider: Mapped[str] = mapped_column(String(20))  # sendgrid, twilio, outbox, tracking
    provider_event_id: Mapped[str | None] = mapped_column(String(120))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    payload: Mapped[dict | None] = mapped_column(JSON)
    # Possibly a machine's (a mail scanner fetching every link, a provider's machine-open
    # flag): reports leave these out of opens and clicks.
    automated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Why (campaigns.tracking.machine.Why); NULL on events flagged before reasons were kept.
    automated_reason: Mapped[str | None] = mapped_column(String(40))


class EventRollup(Base):
    """What reports read of opens and clicks that retention deleted (campaigns.reporting.
    retention): one row per message and kind of event, so unique counts (distinct
    messages) and first-open days add up exactly with the raw events still kept.
    Campaign, step, channel, variant and day come from the message, which is kept."""

    __tablename__ = "event_rollups"
    __table_args__ = (
        UniqueConstraint(
            "message_id", "type", "automated", "detail_key", name="uq_event_rollup_detail"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    type: Mapped[str] = mapped_column(String(20))
    automated: Mapped[bool] = mapped_column(Boolean)
    # '' for none: a NULL would make every row distinct under the unique key.
    automated_reason: Mapped[str] = mapped_column(String(40), default="")
    route: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(Text, default="")
    # sha256 of (reason, route, link, url): a URL can outgrow a btree key.
    detail_key: Mapped[str] = mapped_column(String(64))
    events: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]


class ContactRequest(Base):
    __tablename__ = "contact_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    campaign_key: Mapped[str | None] = mapped_column(String(63))
    step_key: Mapped[str | None] = mapped_column(String(63))
    preferred_channel: Mapped[str | None] = mapped_column(String(10))  # phone, email, sms
    preferred_time: Mapped[str | None] = mapped_column(String(100))
    # A number the person typed on the call-request form when we held no phone for them
    # (E.164): for the care team to call, never texted and never the person's own phone.
    callback_phone: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    # campaigns.states.ContactStatus
    status: Mapped[str] = mapped_column(String(20), default=ContactStatus.OPEN)
    created_at: Mapped[datetime]
    handled_at: Mapped[datetime | None]
    notified_at: Mapped[datetime | None]  # when the care team was told
    # Who on the care team has it: the staff member's name as they signed in (a string,
    # not a key, so the queue does not depend on how staff accounts are stored).
    assigned_to: Mapped[str | None] = mapped_column(String(80))
    assigned_at: Mapped[datetime | None]


class ContactRequestNote(Base):
    """A care-team note on a contact request: what was tried, what was agreed. Kept apart
    from the subscriber's own note (ContactRequest.note), which is their words."""

    __tablename__ = "contact_request_notes"
    __table_args__ = (Index("ix_contact_request_notes_request", "request_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("contact_requests.id"))
    author: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class InboxItem(Base):
    """A text a person wrote that is neither a keyword nor an opt-out: it waits here for a
    person of the care team (invariant 12), who answers it or treats it as an opt-out."""

    __tablename__ = "inbox_items"
    __table_args__ = (Index("ix_inbox_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), unique=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"))
    phone: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    # campaigns.states.InboxStatus
    status: Mapped[str] = mapped_column(String(20), default=InboxStatus.OPEN)
    created_at: Mapped[datetime]
    handled_at: Mapped[datetime | None]
    handled_by: Mapped[str | None] = mapped_column(String(80))
    # The check-in question this text may be a reply to (the last one we sent the person,
    # within the reply window): shown beside it, so a person reads it in context.
    question_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))


class Answer(Base):
    """A person's answer to a check-in question (a step with `asks`), one per enrollment
    and step: answering again (another value, or by text after the email) replaces it.
    Health data: never logged, never in a URL, a subject or provider metadata."""

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_key", name="uq_answer_enrollment_step"),
        Index("ix_answers_campaign_step", "campaign_key", "step_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"))
    campaign_key: Mapped[str] = mapped_column(String(63))
    step_key: Mapped[str] = mapped_column(String(63))
    question: Mapped[str] = mapped_column(String(40))  # campaigns.sequences.questions
    value: Mapped[int] = mapped_column(Integer)
    # The message whose question was answered, and how: `link` (the answer page of an
    # email's or a read-online page's link) or `text` (a reply to a text).
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    via: Mapped[str] = mapped_column(String(10))
    # The inbound text's event, for a reply by text (its body holds the value too).
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    answered_at: Mapped[datetime]
    created_at: Mapped[datetime]


class ChannelPause(Base):
    """A channel stopped by a provider configuration error (bad key, unverified sender)
    or by ops. While paused, queued messages wait instead of failing one by one."""

    __tablename__ = "channel_pauses"

    channel: Mapped[str] = mapped_column(String(10), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    paused_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]


class CampaignRevision(Base):
    """The shape of a deployed sequence (step order, delays, channels), kept so that
    people enrolled under an older shape can be moved onto a newer one."""

    __tablename__ = "campaign_revisions"
    __table_args__ = (UniqueConstraint("campaign_key", "revision", name="uq_campaign_revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_key: Mapped[str] = mapped_column(String(63))
    revision: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    structure: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime]


class PersonEvent(Base):
    """Something a person did outside the messages (a visit booked), posted to the events
    API or imported from a CSV (campaigns.tracking.person_events). `event_id` is the
    sender's own id for it: the same id twice is one event."""

    __tablename__ = "person_events"
    __table_args__ = (Index("ix_person_events_name_created", "name", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    occurred_at: Mapped[datetime]
    properties: Mapped[dict | None] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(10))  # api | csv
    # Which key posted it (its display prefix), or which file and line held it.
    source_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]


class ApiKey(Base):
    """A key for the events API. Only a SHA-256 of the key is kept (campaigns.api_keys):
    the key itself is shown once, when it is made."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(16))  # for display: which key this is
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class CapHold(Base):
    """A due step the frequency cap held back (campaigns.delivery.frequency_cap): one row
    each time, so the person's timeline and the report show it after the step has gone.
    The cursor itself only carries the new due time."""

    __tablename__ = "cap_holds"
    __table_args__ = (Index("ix_cap_holds_campaign_step", "campaign_key", "step_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"))
    campaign_key: Mapped[str] = mapped_column(String(63))
    step_key: Mapped[str] = mapped_column(String(63))
    cap: Mapped[str] = mapped_column(String(10))  # day | week: the one that was full
    # What the cap allowed and how many the person had had when the step fell due.
    allowed: Mapped[int] = mapped_column(Integer)
    counted: Mapped[int] = mapped_column(Integer)
    held_at: Mapped[datetime]
    held_until: Mapped[datetime]  # the step's new due time


class AuditEntry(Base):
    """One state-changing action a staff member (or the CLI) took: who, what, on what,
    when, and the fields it changed before and after (campaigns.staff.audit). Append-only:
    the log is the record of who did what, so nothing here edits or removes a row."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_target", "target_type", "target_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(80))  # a staff user name, or cli:<os user>
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(63))  # e.g. contact_request.assign
    target_type: Mapped[str] = mapped_column(String(40))  # e.g. contact_request
    target_id: Mapped[str | None] = mapped_column(String(80))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    # Where the request came from (the client address the app saw), or "cli".
    origin: Mapped[str | None] = mapped_column(String(64))


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
def _audit_is_append_only(_mapper, _conn, target):
    raise ValueError("the audit log is append-only")


class StaffAccount(Base):
    """A person who signs in to the workspace (campaigns.staff.accounts): a role, and an
    argon2 hash of the password, never the password itself."""

    __tablename__ = "staff_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)  # what they sign in with
    display_name: Mapped[str | None] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]  # set: no sign-in, and its sessions are gone


class StaffSession(Base):
    """One signed-in browser (campaigns.staff.sessions). The cookie holds a random token;
    only its SHA-256 is kept, so a copy of this table signs nobody in. Deleting the row
    (sign-out, disable, a new password) ends the session at its next request."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # None: the bootstrap admin of ADMIN_USER / ADMIN_PASSWORD, who has no account row.
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(80))
    # The bootstrap's: a keyed hash of its credentials, so changing them ends its sessions.
    bootstrap_tag: Mapped[str | None] = mapped_column(String(64))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    seen_at: Mapped[datetime]
    origin: Mapped[str | None] = mapped_column(String(64))


class SequenceRevision(Base):
    """A published version of a campaign: its definition file and every template file, as
    text (campaigns.sequences.store). The highest number per campaign is what runs; a
    rollback publishes an older one's files again as a new number, so history only grows."""

    __tablename__ = "sequence_revisions"
    __table_args__ = (UniqueConstraint("campaign_key", "number", name="uq_sequence_revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_key: Mapped[str] = mapped_column(String(63))
    number: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(String(80))
    definition: Mapped[str] = mapped_column(Text)
    templates: Mapped[dict] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    # seed (the shipped file, first start), push (drip campaigns push), browser (a draft
    # published), rollback, promote (an experiment's winner kept)
    source: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(String(500))
    published_by: Mapped[str] = mapped_column(String(80))
    published_at: Mapped[datetime]


@event.listens_for(SequenceRevision, "before_update")
@event.listens_for(SequenceRevision, "before_delete")
def _revisions_are_history(mapper, connection, target):
    raise ValueError("a published revision is history: publish a new one instead")


class SequenceDraft(Base):
    """The draft of a campaign being edited in the workspace: a whole copy of its files,
    started from revision `base_number`. Publishing it makes the next revision."""

    __tablename__ = "sequence_drafts"

    campaign_key: Mapped[str] = mapped_column(String(63), primary_key=True)
    base_number: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(String(80))
    definition: Mapped[str] = mapped_column(Text)
    templates: Mapped[dict] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(80))
    updated_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime]


class SchedulerLease(Base):
    """Who may publish beat's entries (campaigns.delivery.leadership): one row per lease,
    held by one scheduler process until `expires_at` unless it renews it."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    # Bumped each time another process takes the lease: how many handovers there were.
    term: Mapped[int] = mapped_column(Integer, default=1)
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class SchedulerInstance(Base):
    """One running scheduler process (`drip beat`, or a worker's embedded one): its
    heartbeat, whether it leads, and when it last published a tick."""

    __tablename__ = "scheduler_instances"

    holder: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(160))
    pid: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[datetime]
    last_seen: Mapped[datetime]
    last_tick_at: Mapped[datetime | None] = mapped_column(nullable=True)
