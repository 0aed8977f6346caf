"""Order per person (invariant 10): when a due cursor may be claimed.

A course's steps reach a person one after another: the next step is claimed only once
every message of the enrollment has reached a final state (sent, delivered, failed,
bounced, suppressed, skipped), and its delay counts from when the previous step actually
went out (`messages.sent_at`, the moment of its provider call), not from when it was
claimed. So whatever holds a step back (the text hours, a retry's backoff, rate-limit
tokens, an outage, an `unconfirmed` answer waiting to be settled) holds the steps after
it too, and they keep their spacing: a held step is sent late, but in order, and the
next one comes its full delay after it.

This is judged at claim time, on the rows the claim reads anyway (one query per batch):

- a cursor with a message still in flight is not claimed; its `next_due_at` moves to the
  earliest moment worth looking again (`read_again_at`), so a blocked person is read a
  handful of times while they wait (at most once a minute once the wait is long), not
  on every tick;
- a cursor whose previous step went out later than the cursor assumed (it was claimed at
  one time and sent at another) gets its due time recomputed from the real send time,
  through the step's window, and waits for it if that is still ahead.

It is stricter than "per channel": one cursor moves a person through a course, so a text
held overnight also holds the next step's email. An `unconfirmed` message holds its
person until it is settled (by a webhook, a provider look-up, or ops).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.db import id_in
from campaigns.models import Enrollment, Message
from campaigns.sequences.timing import Policy
from campaigns.states import IN_FLIGHT, MessageStatus

# In flight with a known earliest next move: nothing changes before next_attempt_at.
_WAITING_UNTIL = (MessageStatus.RETRY, MessageStatus.DEFERRED)


@dataclass
class History:
    """What one enrollment's outbox rows say about its cursor."""

    received: set[str] = field(default_factory=set)  # steps it has a row for
    in_flight: bool = False  # some message has not reached a final state
    settles_after: datetime | None = None  # the latest next_attempt_at of those waiting
    waiting_since: datetime | None = None  # when the oldest of them was claimed
    last_sent: datetime | None = None  # when the latest message went out


def histories(session: Session, enrollment_ids) -> dict[int, History]:
    """The history of each enrollment of a batch, in one query."""
    out = {eid: History() for eid in enrollment_ids}
    if not out:
        return out
    rows = session.execute(
        select(
            Message.enrollment_id,
            Message.step_key,
            Message.status,
            Message.next_attempt_at,
            Message.sent_at,
            Message.created_at,
        ).where(id_in(session, Message.enrollment_id, out))
    )
    for eid, key, status, next_attempt_at, sent_at, created_at in rows:
        h = out[eid]
        h.received.add(key)
        if status in IN_FLIGHT:
            h.in_flight = True
            h.waiting_since = _earlier(h.waiting_since, created_at)
            if status in _WAITING_UNTIL and next_attempt_at is not None:
                h.settles_after = _later(h.settles_after, next_attempt_at)
        if sent_at is not None:
            h.last_sent = _later(h.last_sent, sent_at)
    return out


def read_again_at(history: History, now: datetime, policy: Policy) -> datetime:
    """When to look at a blocked cursor again: a pause after the last of its waiting
    messages may move (at its next_attempt_at for a retry or a deferred text; now for a
    queued, sending or unconfirmed one). A message claimed moments ago usually goes
    within seconds, so the pause starts at one tick (policy.order_slack) and grows with
    how long the message has been waiting, up to policy.order_recheck (a minute): a
    person held for an hour is read about 65 times, not 720."""
    waited = now - (history.waiting_since or now)
    pause = min(policy.order_recheck, max(policy.order_slack, waited))
    return _later(now, history.settles_after) + pause


def went_out_late(enrollment: Enrollment, history: History, policy: Policy) -> datetime | None:
    """When the previous step went out, if that was more than a tick after the cursor
    moved (its provisional due time counts from the claim): the base the next step's
    delay must count from instead. None when the provisional due time stands."""
    assumed = enrollment.cursor_base_at or enrollment.created_at
    if history.last_sent is not None and history.last_sent > assumed + policy.order_slack:
        return history.last_sent
    return None


def _later(a: datetime | None, b: datetime | None) -> datetime:
    return b if a is None or (b is not None and b > a) else a


def _earlier(a: datetime | None, b: datetime | None) -> datetime:
    return b if a is None or (b is not None and b < a) else a
