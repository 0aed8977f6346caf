"""Changing a live sequence: what happens to people already enrolled.

A campaign's *shape* is its step order, delays and channels. Each shape is recorded as a
revision (a hash of the shape) the first time it is seen, and every enrollment remembers
the revision its cursor was computed against. When a marketer deploys a new shape, the
scheduler's tick moves people onto it (`reconcile`), by these rules:

1. Nothing is ever sent twice. A step someone has received (it has an outbox row) is
   never theirs again, whatever the edit.
2. Content edits (template text, subject, preheader) need no move at all: messages are
   rendered at send time, so everyone who has not yet received a step gets the new copy,
   including messages already queued.
3. An edited delay applies to people waiting on that step: their due time is recomputed
   from when their previous step went out (`cursor_base_at`), with the new delay and the
   current send windows. A delay shortened below the time already waited means "due now".
4. A removed step: people waiting on it move on to the next step they have not had.
5. An inserted step reaches people who have not yet passed its place: it must come after
   the last step they received, in the new order. It is never back-filled to people who
   are already further along.
6. Reordered steps: people get the steps still ahead of them (the one they were waiting
   for and everything after it in the old order), in the new order, skipping steps they
   have had; steps that were behind them in the old order are not sent.
7. Bumping `version` without changing the shape changes nothing for enrolled people; the
   new version is recorded on the messages sent from then on.
8. People who completed the sequence stay completed: steps appended later do not reopen it.
9. Conditions (`if`, `unless`) are judged when a step falls due, so an added, changed or
   removed condition applies to everyone who has not reached that step yet; a step
   already sent or skipped by its condition stays as it went (rule 1).
10. A wait (`wait_for`) is timed like a delay (rule 3, with `at_most` as the delay): people
   waiting on the step are rescheduled from when their previous step went out, and if
   the event they now wait for has already come (or the step will not go to them either
   way), the step is due at once. Removing a wait
   gives the step its `delay` again; the cursor stops waiting for the event.

`drip campaigns diff` applies the same rules to count whom each change affects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from sqlalchemy import or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from campaigns.audience.eligibility import Facts
from campaigns.clock import Clock
from campaigns.db import id_in
from campaigns.models import (
    RECONCILABLE,
    CampaignRevision,
    Enrollment,
    Message,
    Subscriber,
)
from campaigns.sequences.campaign import Campaign, Step
from campaigns.sequences.registry import Registry
from campaigns.sequences.situations import read_situations
from campaigns.sequences.timing import Policy, due_at_once, due_time
from campaigns.sequences.waits import waiting_for
from campaigns.states import EnrollmentStatus

# The branching parts of a step's shape (campaigns.sequences.conditions), as plain data.
BRANCH_FIELDS = ("if", "unless", "wait_for")


def structure(campaign: Campaign) -> list[dict]:
    shape = []
    for s in campaign.steps:
        step = {
            "key": s.key,
            "delay": int(s.delay.total_seconds()),
            "channels": list(s.channels),
            "fallback": s.fallback,
            "template": s.template,
        }
        branch = s.branch
        for name, part in (
            ("if", branch.when),
            ("unless", branch.unless),
            ("wait_for", branch.wait_for),
        ):
            if part is not None:
                step[name] = part.as_data()
        shape.append(step)
    return shape


def revision_of(shape: list[dict]) -> str:
    # A fallback or a branch joins the hash only where there is one: older shapes keep
    # their revision. Conditions are in it although they move nobody: a new revision is
    # what records the deployed shape `drip campaigns diff` compares with.
    core = [
        [s["key"], s["delay"], s["channels"]]
        + ([s["fallback"]] if s.get("fallback") else [])
        + [{name: s[name]} for name in BRANCH_FIELDS if s.get(name) is not None]
        for s in shape
    ]
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


def ensure_revision(session: Session, clock: Clock, campaign: Campaign) -> str:
    shape = structure(campaign)
    rev = revision_of(shape)
    known = select(CampaignRevision.id).where(
        CampaignRevision.campaign_key == campaign.key, CampaignRevision.revision == rev
    )
    if session.scalar(known) is not None:
        return rev  # every tick asks: a look-up by the unique key, no insert to attempt
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(CampaignRevision)
        .values(
            campaign_key=campaign.key,
            revision=rev,
            version=campaign.version,
            structure=shape,
            created_at=clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["campaign_key", "revision"])
    )
    return rev


def received_steps(session: Session, enrollment_id: int) -> set[str]:
    return set(
        session.scalars(select(Message.step_key).where(Message.enrollment_id == enrollment_id))
    )


def remaining(
    new_order: list[str], received: set[str], waiting_on: str | None, old_order: list[str]
) -> list[str]:
    """The steps, in the new order, that this person will still get (rules 1, 4, 5, 6)."""
    if waiting_on is None:
        return []
    behind = set(old_order[: old_order.index(waiting_on)]) if waiting_on in old_order else set()
    positions = [new_order.index(k) for k in received if k in new_order]
    anchor = max(positions) if positions else -1
    out = []
    for index, key in enumerate(new_order):
        if key in received or key in behind:
            continue
        if key not in old_order and index <= anchor:
            continue  # inserted before their place: not back-filled
        out.append(key)
    return out


def next_after(campaign: Campaign, current: Step, received: set[str]) -> Step | None:
    """The step that follows `current` for someone who has had `received` (rule 1)."""
    for step in campaign.steps[current.index + 1 :]:
        if step.key not in received:
            return step
    return None


@dataclass
class ReconcileReport:
    moved: int = 0
    rescheduled: int = 0
    completed: int = 0
    by_campaign: dict[str, int] = field(default_factory=dict)


def _off_revision(rev: str):
    """`campaign_revision` is not `rev`, as index ranges: `<>` cannot use a btree, and each
    range is read from the index in order, so a LIMIT stops it early."""
    column = Enrollment.campaign_revision
    return (column < rev, column > rev, column.is_(None))


def reconcile(
    session: Session, clock: Clock, registry: Registry, policy: Policy, limit: int = 500
) -> ReconcileReport:
    """Move enrolled people onto the deployed shape of each campaign.

    Who moves: active people, and people the engine paused for a step an edit removed
    (`RECONCILABLE`); people paused by ops or for a call request stay as they are, and
    are not read (before, they were read and skipped, and 500 of them on an old revision
    kept everyone after them from moving). Every tick runs this: when nobody is on another
    revision it costs one probe of an index per campaign (ix_enrollments_reconcile), however
    many are enrolled. A batch to move is read in a few queries, not a few per person.
    """
    report = ReconcileReport()
    now = clock.now()
    postgres = session.get_bind().dialect.name == "postgresql"
    for campaign in registry.campaigns().values():
        rev = ensure_revision(session, clock, campaign)
        movable = (Enrollment.campaign_key == campaign.key, text(f"({RECONCILABLE})"))
        anyone = select(Enrollment.id).where(*movable, or_(*_off_revision(rev))).limit(1)
        if session.scalar(anyone) is None:
            continue  # the usual tick: one probe of the index, nothing to move
        batch: list[Enrollment] = []
        for off in _off_revision(rev):
            if len(batch) >= limit:
                break
            query = select(Enrollment).where(*movable, off).limit(limit - len(batch))
            if postgres:
                query = query.with_for_update(skip_locked=True)
            batch.extend(session.scalars(query).all())
        if batch:
            _move(session, campaign, rev, batch, policy, now, report)
    session.flush()
    return report


def _move(session, campaign, rev, batch, policy, now, report: ReconcileReport) -> None:
    ids = [e.id for e in batch]
    received: dict[int, set[str]] = {eid: set() for eid in ids}
    for eid, key in session.execute(
        select(Message.enrollment_id, Message.step_key).where(
            id_in(session, Message.enrollment_id, ids)
        )
    ):
        received[eid].add(key)
    subscribers = {
        s.id: s
        for s in session.scalars(
            select(Subscriber).where(
                id_in(session, Subscriber.id, {e.subscriber_id for e in batch})
            )
        )
    }
    facts = Facts(session, list(subscribers.values()))
    # A wait whose event has already come is over (rule 10): read once for the batch.
    needs = set().union(*(s.branch.needs() for s in campaign.steps if s.wait_for))
    situations = (
        read_situations(
            session, [(e.id, subscribers[e.subscriber_id], campaign) for e in batch], facts, needs
        )
        if campaign.waits
        else {}
    )
    old_shapes: dict[str | None, list[str]] = {}
    new_order = [s.key for s in campaign.steps]
    for e in batch:
        if e.campaign_revision not in old_shapes:
            row = session.scalar(
                select(CampaignRevision).where(
                    CampaignRevision.campaign_key == campaign.key,
                    CampaignRevision.revision == e.campaign_revision,
                )
            )
            old_shapes[e.campaign_revision] = (
                [s["key"] for s in row.structure] if row else new_order
            )
        ahead = remaining(
            new_order, received[e.id], e.next_step_key, old_shapes[e.campaign_revision]
        )
        e.campaign_revision = rev
        e.campaign_version = campaign.version
        e.updated_at = now
        if e.status == EnrollmentStatus.PAUSED:
            e.status, e.exit_reason = EnrollmentStatus.ACTIVE, None
        report.moved += 1
        report.by_campaign[campaign.key] = report.by_campaign.get(campaign.key, 0) + 1
        if not ahead:
            e.status, e.next_step_key, e.next_due_at = EnrollmentStatus.COMPLETED, None, None
            e.waiting_for = None
            report.completed += 1
            continue
        step = campaign.step(ahead[0])
        subscriber = subscribers[e.subscriber_id]
        base = e.cursor_base_at or e.created_at
        reachable = facts.reachable(subscriber)
        situation = situations.get(e.id)
        if situation is not None and step.branch.wait_is_over(situation):
            due = max(due_at_once(base, campaign, step, subscriber, reachable, policy), base)
        else:
            due = due_time(base, campaign, step, subscriber, reachable, policy)
        if (step.key, due) != (e.next_step_key, e.next_due_at):
            report.rescheduled += 1
        e.next_step_key, e.next_due_at = step.key, due
        e.waiting_for = waiting_for(step)


def latest_revision(session: Session, campaign_key: str) -> CampaignRevision | None:
    """The revision recorded last for this campaign, or None if it was never deployed."""
    return session.scalar(
        select(CampaignRevision)
        .where(CampaignRevision.campaign_key == campaign_key)
        .order_by(CampaignRevision.id.desc())
        .limit(1)
    )
