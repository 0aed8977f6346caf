"""Finding a person by what a caller tells the care team: a first name (any part, any
case), an email address or a phone number typed any way ("+1 (555) 010-0001", "555 010
0001"), read the way sign-up and imports read them, so the stored form is found; or `#id`.

Partial email and phone digits are matched too ("ana@", the last four digits), since
that is often all a person says on the phone.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from campaigns.audience.subscribers import InvalidSubscriber, normalize_email, normalize_phone
from campaigns.db import id_in
from campaigns.models import ROW_ID_MAX, Enrollment, Subscriber

PAGE_SIZE = 25
MAX_QUERY = 200


@dataclass(frozen=True)
class Found:
    id: int
    first_name: str | None
    email: str | None
    phone: str | None
    locale: str | None
    status: str
    created_at: datetime
    campaigns: list[tuple[str, str]]  # (campaign key, enrollment status)


@dataclass(frozen=True)
class Results:
    query: str
    people: list[Found]
    page: int
    has_next: bool


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(q: str) -> list:
    conditions = []
    if re.fullmatch(r"#\d{1,10}", q):
        wanted = int(q[1:])
        return [Subscriber.id == wanted] if wanted <= ROW_ID_MAX else []
    lowered = q.lower()
    conditions.append(func.lower(Subscriber.first_name).like(_like(lowered), escape="\\"))
    if "@" in q:
        with contextlib.suppress(InvalidSubscriber):
            conditions.append(Subscriber.email == normalize_email(q))
        conditions.append(Subscriber.email.like(_like(lowered), escape="\\"))
    if not re.search(r"[A-Za-z@]", q):
        with contextlib.suppress(InvalidSubscriber):
            conditions.append(Subscriber.phone == normalize_phone(q))
        digits = re.sub(r"\D", "", q)
        if len(digits) >= 4:
            conditions.append(Subscriber.phone.like(_like(digits), escape="\\"))
    return conditions


def search(session: Session, query: str, page: int = 1) -> Results:
    """People matching `query`, newest first, a page at a time. A blank query finds nobody
    (the page asks for one instead of listing every patient)."""
    q = " ".join((query or "").split())[:MAX_QUERY]
    page = max(1, page)
    conditions = _conditions(q) if q else []
    if not conditions:
        return Results(q, [], page, False)
    rows = list(
        session.scalars(
            select(Subscriber)
            .where(or_(*conditions))
            .order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        )
    )
    has_next = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    courses: dict[int, list[tuple[str, str]]] = {r.id: [] for r in rows}
    if rows:
        for sid, key, status in session.execute(
            select(Enrollment.subscriber_id, Enrollment.campaign_key, Enrollment.status)
            .where(id_in(session, Enrollment.subscriber_id, list(courses)))
            .order_by(Enrollment.created_at, Enrollment.id)
        ):
            courses[sid].append((key, status))
    people = [
        Found(r.id, r.first_name, r.email, r.phone, r.locale, r.status, r.created_at, courses[r.id])
        for r in rows
    ]
    return Results(q, people, page, has_next)
