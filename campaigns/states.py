"""The message lifecycle, in one place.

    queued ──► sending ──► sent ──► delivered
      ▲  │        │          └────► failed / bounced (from provider webhooks)
      │  │        ├──► retry (transient error; due again at next_attempt_at) ──► queued
      │  │        ├──► failed (permanent error, or retries used up)
      │  │        └──► unconfirmed (lease ran out: the provider call may have happened)
      │  │                 └──► sent / delivered / failed (webhook or provider lookup),
      │  │                      queued (provider says it never got it), or ops decides
      │  ├──► suppressed (unsubscribed, STOP, bounce, complaint: checked at send time)
      │  ├──► skipped (no address or consent for the channel, enrollment stopped)
      │  └──► deferred (outside the text hours at send time) ──► queued when allowed
      └── the reaper, for a queued message whose task was lost before it started

Terminal states carry a reason. "sent" is terminal for the engine; webhooks may still
move it forward to delivered/failed/bounced, never backwards.
"""

from __future__ import annotations

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

WAITING = (QUEUED, RETRY, DEFERRED)
TERMINAL = (SENT, DELIVERED, FAILED, BOUNCED, SUPPRESSED, SKIPPED)
ALL = (QUEUED, SENDING, RETRY, DEFERRED, UNCONFIRMED) + TERMINAL

# Webhook-driven moves only go up this ladder (invariant 6: never backwards).
RANK = {
    QUEUED: 0,
    RETRY: 0,
    DEFERRED: 0,
    SENDING: 1,
    UNCONFIRMED: 2,
    SENT: 3,
    DELIVERED: 4,
    FAILED: 5,
    BOUNCED: 5,
}


def may_advance(current: str, new: str) -> bool:
    if current in (SUPPRESSED, SKIPPED):
        return False
    return RANK.get(new, -1) > RANK.get(current, -1)


class EventType:
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
