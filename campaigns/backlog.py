"""How much waits for a person, and since when: the contact queue's open requests and the
inbox's unread texts are both read this way, for the dashboard, `drip status` and /metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Waiting:
    count: int
    oldest: datetime | None


def waiting(session: Session, created_at, *where) -> Waiting:
    """Rows matching `where`: how many, and the earliest `created_at` among them."""
    count, oldest = session.execute(select(func.count(), func.min(created_at)).where(*where)).one()
    return Waiting(count, oldest)
