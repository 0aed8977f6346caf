"""What the care team may do to one person's courses and channels, each recorded in the
audit log in the same transaction as the change (campaigns.staff.audit).

    pause    an active course waits: the claim takes only active ones, so no further step
             is claimed (a message already claimed, due now, still goes, as after any
             pause); resume undoes it
    resume   a course paused by staff or by a contact request goes on from its cursor; a
             step already overdue goes at the next tick, as after any pause
    exit     an active or paused course ends; messages already queued for it are skipped
             at send time (campaigns.audience.eligibility.recheck)
    suppress a channel stopped as if the person had unsubscribed from it: consent revoked
             and the address suppressed (campaigns.audience.opt_outs.unsubscribe), so the
             person can take it back from their preference page or with START

Audit entries hold ids and states, never the staff member's typed reason (it may quote
the person); the reason is kept with the consent record's evidence, which an erasure wipes.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from campaigns.audience.opt_outs import unsubscribe
from campaigns.audience.subscribers import address_for
from campaigns.clock import Clock
from campaigns.models import Enrollment, Subscriber
from campaigns.people.profile import NotFound, may_resume, person
from campaigns.people.records import TARGET
from campaigns.reasons import ExitReason
from campaigns.staff import audit
from campaigns.staff.audit import Actor
from campaigns.states import CHANNELS, EnrollmentStatus, SubscriberStatus
from campaigns.text import UncleanText, clean_text

MAX_REASON = 200


class ActionError(ValueError):
    """The action does not apply (a course already ended, a channel with no address)."""


def _course(session: Session, subscriber_id: int, enrollment_id: int) -> Enrollment:
    person(session, subscriber_id)
    enrollment = session.get(Enrollment, enrollment_id) if enrollment_id > 0 else None
    if enrollment is None or enrollment.subscriber_id != subscriber_id:
        raise NotFound(f"person {subscriber_id} has no course {enrollment_id}")
    return enrollment


def _move(
    session: Session,
    clock: Clock,
    actor: Actor,
    enrollment: Enrollment,
    action: str,
    status: str,
    exit_reason: str | None,
) -> Enrollment:
    before = {"enrollment": enrollment.id, "status": enrollment.status}
    enrollment.status = status
    enrollment.exit_reason = exit_reason
    enrollment.updated_at = clock.now()
    session.flush()
    audit.record(
        session,
        clock,
        actor,
        action,
        TARGET,
        enrollment.subscriber_id,
        before=before,
        after={"enrollment": enrollment.id, "status": status},
    )
    return enrollment


def pause(
    session: Session, clock: Clock, actor: Actor, subscriber_id: int, enrollment_id: int
) -> Enrollment:
    enrollment = _course(session, subscriber_id, enrollment_id)
    if enrollment.status != EnrollmentStatus.ACTIVE:
        raise ActionError(f"course {enrollment_id} is {enrollment.status}, not active")
    return _move(
        session,
        clock,
        actor,
        enrollment,
        "person.pause",
        EnrollmentStatus.PAUSED,
        ExitReason.PAUSED_BY_STAFF,
    )


def resume(
    session: Session, clock: Clock, actor: Actor, subscriber_id: int, enrollment_id: int
) -> Enrollment:
    enrollment = _course(session, subscriber_id, enrollment_id)
    if not may_resume(enrollment):
        raise ActionError(
            f"course {enrollment_id} is {enrollment.status}"
            + (f" ({enrollment.exit_reason})" if enrollment.exit_reason else "")
            + "; only a course paused by staff or a contact request can be resumed"
        )
    sub = session.get(Subscriber, subscriber_id)
    if sub.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.ERASED):
        raise ActionError(f"person {subscriber_id} is {sub.status}; their courses stay stopped")
    return _move(session, clock, actor, enrollment, "person.resume", EnrollmentStatus.ACTIVE, None)


def exit_course(
    session: Session, clock: Clock, actor: Actor, subscriber_id: int, enrollment_id: int
) -> Enrollment:
    enrollment = _course(session, subscriber_id, enrollment_id)
    if enrollment.status not in (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED):
        raise ActionError(f"course {enrollment_id} has already {enrollment.status}")
    return _move(
        session,
        clock,
        actor,
        enrollment,
        "person.exit",
        EnrollmentStatus.EXITED,
        ExitReason.EXITED_BY_STAFF,
    )


def suppress_channel(
    session: Session, clock: Clock, actor: Actor, subscriber_id: int, channel: str, reason: str
) -> None:
    sub = person(session, subscriber_id)
    if channel not in CHANNELS:
        raise ActionError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    try:
        reason = clean_text(reason or "", "reason", max_len=MAX_REASON).strip()
    except UncleanText as exc:
        raise ActionError(str(exc)) from None
    if not reason:
        raise ActionError("reason: say why the channel is stopped")
    if not address_for(sub, channel):
        raise ActionError(f"person {subscriber_id} has no address for {channel}")
    before = {"status": sub.status}
    unsubscribe(
        session,
        clock,
        sub,
        channels=(channel,),
        source="staff",
        evidence={"via": "staff", "by": actor.by, "reason": reason},
    )
    audit.record(
        session,
        clock,
        actor,
        "person.suppress",
        TARGET,
        subscriber_id,
        before=before,
        after={"channel": channel, "suppressed": True, "status": sub.status},
    )
