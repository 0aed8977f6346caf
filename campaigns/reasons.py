"""Why a message stands where it does: reason codes as data.

Every status change the engine makes records a code (`messages.reason_code`, stable,
for queries) beside a human sentence (`messages.reason`, which may carry a detail such
as the suppression's cause or the attempt count). What decides by a reason asks for its
code (provider health tells retries used up from a refusal by RETRIES_EXHAUSTED), so
rewording a sentence changes a label, never a count; funnels list the sentences, whose
details (which suppression) are what a marketer acts on.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # Stopped before a send (invariants 4 and 5)
    NO_ADDRESS = "no_address"
    NO_CONSENT = "no_consent"
    UNSUBSCRIBED = "unsubscribed"
    ADDRESS_SUPPRESSED = "address_suppressed"
    ENROLLMENT_EXITED = "enrollment_exited"
    OUTSIDE_TEXT_HOURS = "outside_text_hours"
    OUTSIDE_SEND_WINDOW = "outside_send_window"
    TEMPLATE_ERROR = "template_error"
    FALLBACK = "fallback"
    CONDITION = "condition"  # the step's `if` / `unless` did not hold for this person
    HOLDOUT = "holdout"  # the person is in the campaign's holdout: enrolled, never messaged
    ERASED = "erased"  # the person's data was erased at their request (campaigns.people)
    # A provider's answer (campaigns.delivery.outcomes)
    ACCEPTED = "accepted"
    TEMPORARY_ERROR = "temporary_error"
    RETRIES_EXHAUSTED = "retries_exhausted"
    REJECTED = "rejected"
    CHANNEL_PAUSED = "channel_paused"
    OUTCOME_UNKNOWN = "outcome_unknown"
    LEASE_EXPIRED = "lease_expired"
    # Settling an unconfirmed message (campaigns.delivery.unconfirmed)
    CONFIRMED_BY_LOOKUP = "confirmed_by_lookup"
    NOT_RECEIVED = "not_received"
    SETTLED_SENT = "settled_sent"
    SETTLED_FAILED = "settled_failed"
    SETTLED_RESEND = "settled_resend"
    NEEDS_OPS = "needs_ops"
    # What a provider webhook said (campaigns.tracking.events)
    WEBHOOK = "webhook"

    def text(self, **details: object) -> str:
        """The human sentence, with its details filled in (at most 200 characters,
        the column's width)."""
        return TEXTS[self].format(**details)[:200]

    def values(self, **details: object) -> dict[str, str]:
        """The two columns a status change writes."""
        return {"reason_code": self.value, "reason": self.text(**details)}


class ExitReason(StrEnum):
    """Why an enrollment left its course or waits (enrollments.exit_reason), when the
    person caused it. The engine's own pauses name what is missing (`missing_step`)."""

    UNSUBSCRIBED = "unsubscribed"
    CONTACT_REQUESTED = "asked to be contacted"
    ERASED = "erased"  # the person's data was erased (campaigns.people.erasure)
    # The care team, from the person page or the CLI (campaigns.people.actions).
    PAUSED_BY_STAFF = "paused by staff"
    EXITED_BY_STAFF = "exited by staff"


def missing_campaign(campaign_key: str) -> str:
    return f"campaign {campaign_key!r} is not deployed"


def missing_step(step_key: str | None) -> str:
    return f"step {step_key!r} no longer exists"


def goal_reached(event_name: str) -> str:
    """Why an enrollment left its course on reaching the campaign's goal (exit_reason)."""
    return f"reached the goal {event_name}"[:80]


def is_missing_step(exit_reason: str | None) -> bool:
    """Paused by the engine for a step an edit removed: the next deploy may resume it."""
    return (
        bool(exit_reason)
        and exit_reason.startswith("step ")
        and exit_reason.endswith(" no longer exists")
    )


TEXTS: dict[Reason, str] = {
    Reason.NO_ADDRESS: "no {address}",
    Reason.NO_CONSENT: "no {channel} consent",
    Reason.UNSUBSCRIBED: "subscriber unsubscribed",
    Reason.ADDRESS_SUPPRESSED: "address suppressed: {cause}",
    Reason.ENROLLMENT_EXITED: "enrollment exited: {cause}",
    Reason.OUTSIDE_TEXT_HOURS: "outside text hours in the subscriber's time zone",
    Reason.OUTSIDE_SEND_WINDOW: "outside the course's send window in the subscriber's time zone",
    Reason.FALLBACK: "sent by text instead: the email could not go ({why})",
    Reason.CONDITION: "condition: {condition}",
    Reason.HOLDOUT: "holdout: kept from messages to compare with",
    Reason.ERASED: "person erased",
    Reason.TEMPLATE_ERROR: "template error",
    Reason.ACCEPTED: "accepted by provider",
    Reason.TEMPORARY_ERROR: "temporary provider error",
    Reason.RETRIES_EXHAUSTED: "gave up after {attempts} attempts",
    Reason.REJECTED: "{cause}",
    Reason.CHANNEL_PAUSED: "channel paused: provider configuration error ({error})",
    Reason.OUTCOME_UNKNOWN: "provider call outcome unknown; awaiting webhook",
    Reason.LEASE_EXPIRED: "lease expired during the provider call; it may have been sent",
    Reason.CONFIRMED_BY_LOOKUP: "confirmed by provider look-up",
    Reason.NOT_RECEIVED: "provider never received it; sending again",
    Reason.SETTLED_SENT: "settled by ops: provider has it",
    Reason.SETTLED_FAILED: "settled by ops: provider never sent it; not resending",
    Reason.SETTLED_RESEND: "settled by ops: resending",
    Reason.NEEDS_OPS: "no answer from the provider after {minutes} min; for ops to settle",
    Reason.WEBHOOK: "{provider} webhook: {event}{detail}",
}
