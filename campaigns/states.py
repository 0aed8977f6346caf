"""Every state machine and closed set of the domain, as enums.

They are `StrEnum`s: stored as their plain values, equal to them in comparisons, so a row
written before these enums existed reads back the same.

The message lifecycle:

    queued ──► sending ──► sent ──► delivered
      ▲  │        │          └────► failed / bounced (from provider webhooks)
      │  │        ├──► retry (transient error; due again at next_attempt_at) ──► queued
      │  │        ├──► failed (permanent error, or retries used up)
      │  │        └──► unconfirmed (lease ran out: the provider call may have happened)
      │  │                 └──► sent / delivered / failed (webhook or provider lookup),
      │  │                      queued (provider says it never got it), or ops decides
      │  ├──► suppressed (unsubscribed, STOP, bounce, complaint: checked at send time)
      │  ├──► skipped (no address or consent for the channel, enrollment stopped)
      │  └──► deferred (outside the text hours or send window at send time) ──► queued when allowed
      └── the reaper, for a queued message whose task was lost before it started

Terminal states carry a reason (campaigns.reasons). "sent" is terminal for the engine;
webhooks may still move it forward to delivered/failed/bounced, never backwards.

Enrollments: active ──► completed; active ◄──► paused (a contact request, a missing
step); active / paused ──► exited (unsubscribed, a contact request, ops).
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


CHANNELS: tuple[Channel, ...] = tuple(Channel)


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    RETRY = "retry"
    DEFERRED = "deferred"
    UNCONFIRMED = "unconfirmed"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"
    SKIPPED = "skipped"


_M = MessageStatus
WAITING = (_M.QUEUED, _M.RETRY, _M.DEFERRED)
IN_FLIGHT = (*WAITING, _M.SENDING, _M.UNCONFIRMED)
TERMINAL = (_M.SENT, _M.DELIVERED, _M.FAILED, _M.BOUNCED, _M.SUPPRESSED, _M.SKIPPED)
# What counts as having reached the provider (for "first text says STOP/HELP").
HANDED_OVER = (_M.SENT, _M.DELIVERED, _M.UNCONFIRMED)

# Webhook-driven moves only go up this ladder (invariant 6: never backwards).
RANK = {
    _M.QUEUED: 0,
    _M.RETRY: 0,
    _M.DEFERRED: 0,
    _M.SENDING: 1,
    _M.UNCONFIRMED: 2,
    _M.SENT: 3,
    _M.DELIVERED: 4,
    _M.FAILED: 5,
    _M.BOUNCED: 5,
}


def may_advance(current: str, new: str) -> bool:
    if current in (_M.SUPPRESSED, _M.SKIPPED):
        return False
    return RANK.get(new, -1) > RANK.get(current, -1)


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    EXITED = "exited"


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # signed up on the web form, not yet confirmed
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    # Erased at their request (campaigns.people.erasure): the row stays, without identity,
    # so messages, events and answers keep their counts; nothing is ever sent to it.
    ERASED = "erased"


class ConsentAction(StrEnum):
    GRANTED = "granted"
    REVOKED = "revoked"


class ContactStatus(StrEnum):
    OPEN = "open"
    CONTACTED = "contacted"
    CLOSED = "closed"


class InboxStatus(StrEnum):
    """A text waiting for a person: open until answered (done) or treated as an opt-out."""

    OPEN = "open"
    DONE = "done"
    OPTED_OUT = "opted_out"


class EventType(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    FAILED = "failed"
    OPENED = "opened"
    CLICKED = "clicked"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    INBOUND = "inbound"
    CONTACT_REQUESTED = "contact_requested"
    CONTACT_HANDLED = "contact_handled"
