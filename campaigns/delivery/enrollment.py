"""Enrolling a person in a campaign: the enrollment row is the cursor (`next_step_key`,
`next_due_at`) that the scheduler's claims advance."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.eligibility import reachable_channels
from campaigns.clock import Clock
from campaigns.models import Enrollment, Subscriber
from campaigns.sequences.registry import Registry
from campaigns.sequences.revisions import ensure_revision
from campaigns.sequences.timing import Policy, due_time
from campaigns.states import EnrollmentStatus

ENDED = (EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED)


def enroll(
    session: Session,
    clock: Clock,
    registry: Registry,
    subscriber: Subscriber,
    campaign_key: str,
    policy: Policy,
    source: str = "api",
    *,
    trigger_ref: str | None = None,
    again: bool = False,
) -> Enrollment:
    """Idempotent: enrolling someone already enrolled returns the existing cursor.

    With `again` (a trigger, for a campaign that allows re-entry:
    campaigns.journeys.triggers), someone whose latest enrollment here has ended
    (completed or exited) joins once more, as the next `entry`. `trigger_ref` records
    what enrolled them, so the same trigger never enrolls twice.

    The campaign files are validated first; a broken file raises DefinitionError and
    nothing is written.
    """
    campaign = registry.get(campaign_key)
    existing = _find_enrollment(session, subscriber.id, campaign_key)
    if existing is not None and not (again and existing.status in ENDED):
        return existing
    now = clock.now()
    first = campaign.steps[0]
    due = due_time(
        now, campaign, first, subscriber, reachable_channels(session, subscriber), policy
    )
    enrollment = Enrollment(
        subscriber_id=subscriber.id,
        campaign_key=campaign.key,
        campaign_version=campaign.version,
        campaign_revision=ensure_revision(session, clock, campaign),
        cursor_base_at=now,
        next_step_key=first.key,
        next_due_at=due,
        steps_done=0,
        status=EnrollmentStatus.ACTIVE,
        source=source,
        entry=existing.entry + 1 if existing is not None else 1,
        trigger_ref=trigger_ref,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(enrollment)
    except Exception:
        found = _find_enrollment(session, subscriber.id, campaign_key)
        if found is None:
            raise
        return found
    return enrollment


def _find_enrollment(session: Session, subscriber_id: int, campaign_key: str) -> Enrollment | None:
    """The person's latest enrollment in the campaign (there are several only where the
    campaign allows re-entry)."""
    return session.scalar(
        select(Enrollment)
        .where(Enrollment.subscriber_id == subscriber_id, Enrollment.campaign_key == campaign_key)
        .order_by(Enrollment.entry.desc())
        .limit(1)
    )
