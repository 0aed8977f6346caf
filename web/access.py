"""Who is asking, and may they: the one dependency every staff page and action uses.

    actor: Staff = Depends(need("people"))

`need(area)` answers with the `Actor` (campaigns.staff.audit) when the request is signed
in with a role that may use the area (campaigns.staff.roles), and refuses otherwise.
Forms carry the actor's CSRF token in a hidden field named CSRF_FIELD (`{{ csrf }}` in
the page context); POST routes check it with the `Checked` dependency.

This first form of the module signs in with the HTTP basic credentials of ADMIN_USER /
ADMIN_PASSWORD, as the admin role; staff accounts and sessions replace it behind the same
names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from campaigns.staff.audit import Actor
from campaigns.staff.roles import ADMIN, may
from web.admin import check_basic_auth

CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Staff:
    actor: Actor
    csrf: str = ""  # the token a form must echo back in CSRF_FIELD

    @property
    def name(self) -> str:
        return self.actor.name

    @property
    def role(self) -> str:
        return self.actor.role


def current_staff(request: Request) -> Staff:
    user = check_basic_auth(request)
    origin = request.client.host if request.client else None
    return Staff(Actor(user, ADMIN, origin))


def need(area: str) -> Callable[[Request], Staff]:
    may(ADMIN, area)  # an unknown area fails at import, not on a request

    def dependency(request: Request) -> Staff:
        staff = current_staff(request)
        if not may(staff.role, area):
            raise HTTPException(403, f"the {staff.role} role does not open {area}")
        return staff

    return dependency
