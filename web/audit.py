"""The audit log page (campaigns.staff.audit), for admins only.

GET /admin/audit   newest first, PAGE_SIZE a page; filters: actor, action,
                   target (a type, or type:id such as channel:sms), day
                   (YYYY-MM-DD, UTC), page (1, 2, ...)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from campaigns.staff import audit
from web.access import Staff, need
from web.render import admin_page, pages

router = APIRouter(prefix="/admin")
PAGE_SIZE = 50
MAX_PAGE = 10_000
MAX_FILTER = 80


def _fields(value: dict | None) -> str:
    return "–" if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


pages.filters.update(fields=_fields)


def _bad(staff: Staff, message: str) -> HTMLResponse:
    return admin_page(
        "admin_notice.html",
        staff,
        400,
        title="Bad filter",
        message=message,
        detail=None,
        back="/admin/audit",
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("audit"))],
    actor: str = "",
    action: str = "",
    target: str = "",
    day: str = "",
    page: str = "1",
) -> HTMLResponse:
    filters = {"actor": actor.strip(), "action": action.strip(), "target": target.strip()}
    filters["day"] = day.strip()
    if any(len(v) > MAX_FILTER for v in filters.values()):
        return _bad(staff, f"a filter is at most {MAX_FILTER} characters")
    if not (page.isascii() and page.isdigit() and 1 <= int(page[:6]) <= MAX_PAGE):
        return _bad(staff, f"page must be a whole number from 1 to {MAX_PAGE}")
    number = int(page)
    since = until = None
    if filters["day"]:
        try:
            since = datetime.strptime(filters["day"], "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            return _bad(staff, f"day must be a date like 2026-03-01, not {filters['day']!r}")
        until = since + timedelta(days=1) if since.date() < datetime.max.date() else None
    target_type, _, target_id = filters["target"].partition(":")
    state = request.app.state
    with state.factory() as session:
        rows = audit.entries(
            session,
            limit=PAGE_SIZE + 1,  # one more says whether there is an older page
            offset=(number - 1) * PAGE_SIZE,
            actor=filters["actor"] or None,
            action=filters["action"] or None,
            target_type=target_type or None,
            target_id=target_id or None,
            since=since,
            until=until,
        )
    kept = {k: v for k, v in filters.items() if v}

    def link(n: int) -> str:
        return "/admin/audit?" + urlencode({**kept, "page": n})

    return admin_page(
        "admin_audit.html",
        staff,
        title="Audit log",
        entries=rows[:PAGE_SIZE],
        filters=filters,
        filtered=bool(kept),
        page=number,
        newer=link(number - 1) if number > 1 else None,
        older=link(number + 1) if len(rows) > PAGE_SIZE else None,
    )
