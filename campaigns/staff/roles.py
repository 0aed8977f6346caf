"""The four staff roles and the parts of the workspace each may use.

A role opens areas, not single routes: every page and action names the one area it
belongs to (web/access.py `need(area)`), so adding a page never means editing a table of
routes. Admin may use every area. The split follows who needs personal data: the care team
works with names, phone numbers and addresses; a marketer sees aggregates and content;
ops sees queues and channels; neither of the last two sees a person.
"""

from __future__ import annotations

ADMIN, MARKETER, CARE, OPS = "admin", "marketer", "care", "ops"
ROLES = (ADMIN, MARKETER, CARE, OPS)

# area -> the roles (besides admin) that may use it
AREAS: dict[str, frozenset[str]] = {
    "dashboard": frozenset({MARKETER, CARE, OPS}),  # totals only, no person
    "campaigns": frozenset({MARKETER}),  # funnels, reviews, experiments, promote
    "people": frozenset({CARE}),  # search, person page, export, erase, person actions
    "contacts": frozenset({CARE}),  # the contact queue (names and numbers)
    "inbox": frozenset({CARE}),  # inbound texts a keyword did not settle: patients' words
    "outbox": frozenset({OPS}),  # message queue, settle unconfirmed
    "channels": frozenset({OPS}),  # pause, resume, provider health
    "staff": frozenset(),  # accounts and roles
    "audit": frozenset(),  # the audit log
}


def may(role: str, area: str) -> bool:
    if area not in AREAS:
        raise KeyError(f"no area {area!r}")  # a typo in a route must not open or close it
    return role == ADMIN or role in AREAS[area]


def areas_for(role: str) -> list[str]:
    return [area for area in AREAS if may(role, area)]
