"""Waits that end early: a step with `wait_for: {event: opened, step: diagnosis, at_most: 2d}`
is due `at_most` after the previous step went out, or as soon as the person opens the
diagnosis email, whichever comes first.

The cursor says what it waits for (`enrollments.waiting_for`, written wherever it moves:
the claim, the reconcile after a live edit) as "<event>:<awaited step>><waiting step>",
so the event side needs no campaign file: `wake` is one UPDATE by the enrollment's key,
called by the open pixel and link pages (campaigns.tracking.portal.record_engagement) and
by provider webhooks (campaigns.tracking.events.record_event) in the transaction that
records the event. The waiting step's own key is part of the value and is compared with
the cursor's current step, so a value left behind by a step that is no longer next can
never wake another.

Waking only moves `next_due_at` to now: the claim then judges the step's `if` / `unless`
(it sends, or ends `skipped` with the reason `condition`), keeps order per person and,
for a step that will send, waits for its window (campaigns.delivery.claiming).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import literal, or_, select, update
from sqlalchemy.orm import Session

from campaigns.db import id_in
from campaigns.models import Enrollment
from campaigns.sequences.campaign import Step
from campaigns.states import EnrollmentStatus, EventType

# A click proves the open (images may be off): it ends a wait for an open too.
_ENDS = {
    EventType.OPENED: (EventType.OPENED,),
    EventType.CLICKED: (EventType.CLICKED, EventType.OPENED),
}


def waiting_for(step: Step | None) -> str | None:
    """The cursor's `waiting_for` while it waits on `step` (None: it waits for no event)."""
    if step is None or step.wait_for is None:
        return None
    return f"{step.wait_for.event}:{step.wait_for.step}>{step.key}"


def wake(
    session: Session,
    now: datetime,
    enrollment_id: int | None,
    step_key: str,
    event: str,
    *,
    automated: bool = False,
) -> int:
    """An `event` (opened, clicked) on the enrollment's message of `step_key`: a cursor
    waiting for it is due now. A machine's event (automated) wakes nothing. Returns how
    many cursors moved (0 or 1)."""
    ends = _ENDS.get(event)
    if automated or not ends or enrollment_id is None:
        return 0
    waiting = Enrollment.waiting_for
    return session.execute(
        update(Enrollment)
        .where(
            Enrollment.id == enrollment_id,
            or_(*(waiting == literal(f"{e}:{step_key}>") + Enrollment.next_step_key for e in ends)),
            Enrollment.status.in_((EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)),
            Enrollment.next_due_at > now,
        )
        .values(next_due_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount


def wake_all(session: Session, now: datetime, events) -> int:
    """wake for each (enrollment id, step key, event) of `events`, a batch's people's
    opens and clicks: one SELECT finds the few enrollments that wait for anything, and
    only theirs are woken. Returns how many cursors moved."""
    events = list(dict.fromkeys(e for e in events if e[0] is not None))
    if not events:
        return 0
    waiting = set(
        session.scalars(
            select(Enrollment.id).where(
                id_in(session, Enrollment.id, {e[0] for e in events}),
                Enrollment.waiting_for.is_not(None),
            )
        )
    )
    return sum(wake(session, now, *e) for e in events if e[0] in waiting)
