"""The audit log: one append-only row for every state-changing staff action.

Callers record inside the same transaction as the change itself, so an action and its
entry commit or roll back together: the log never claims a change that did not happen
and never misses one that did. `before` and `after` hold only the fields the action
touched; personal data (an address, a phone) is not copied in, only ids, so erasing a
person leaves nothing of them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff member through the workspace, or an operator at the CLI."""

    name: str
    role: str
    origin: str | None = None  # client address, or "cli"

    @property
    def by(self) -> str:
        """The short form kept on the rows an action changes (`marked_by`, `paused_by`)."""
        return f"{self.role}:{self.name}"[:40]


def record(
    session: Session,
    clock: Clock,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: object = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=clock.now(),
        actor=actor.name[:80],
        role=actor.role[:20],
        action=action[:63],
        target_type=target_type[:40],
        target_id=None if target_id is None else str(target_id)[:80],
        before=before,
        after=after,
        origin=(actor.origin or None) and actor.origin[:64],
    )
    session.add(entry)
    session.flush()
    return entry


def entries(
    session: Session,
    *,
    limit: int = 200,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = 0,
) -> list[AuditEntry]:
    """Newest first, filtered by whichever of the arguments are given (`until` excluded);
    `offset` skips that many, for paging."""
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    if target_type:
        query = query.where(AuditEntry.target_type == target_type)
    if target_id:
        query = query.where(AuditEntry.target_id == target_id)
    if since:
        query = query.where(AuditEntry.at >= since)
    if until:
        query = query.where(AuditEntry.at < until)
    return list(session.scalars(query.offset(max(0, offset)).limit(limit)))
