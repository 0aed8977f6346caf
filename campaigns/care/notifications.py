"""Telling the care team that someone asked for a call.

The notice says only that a request is waiting and where the queue is: the person's
name, number and note stay behind the admin login, never in an email that passes through
a provider. Requests are found from the database (notified_at is empty) and claimed before the
provider call, so a transient failure hands the notice back for the next pass, and an
outcome that may have gone out is never repeated.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock
from campaigns.content.rendering import RenderedEmail
from campaigns.db import transaction
from campaigns.delivery.one_offs import OneOff, mail_claimed
from campaigns.delivery.providers import OutgoingEmail
from campaigns.models import ContactRequest
from campaigns.states import ContactStatus


def contact_notice(request: ContactRequest, base_url: str, brand: str) -> RenderedEmail:
    queue = f"{base_url}/admin/contact-requests"
    text = (
        f"A new request to be contacted is waiting (#{request.id}, preferred: "
        f"{request.preferred_channel or 'any'}).\n\nOpen the queue: {queue}\n\n"
        f"-- {brand} drip service\n"
    )
    html = (
        f"<p>A new request to be contacted is waiting (#{request.id}, preferred: "
        f'{request.preferred_channel or "any"}).</p><p><a href="{queue}">Open the queue</a></p>'
    )
    return RenderedEmail(
        subject=f"{brand}: new call request #{request.id}", preheader="", html=html, text=text
    )


def announce_contact_requests(
    factory: sessionmaker[Session],
    clock: Clock,
    provider,
    to: str | None,
    base_url: str,
    brand: str,
    limit: int = 50,
) -> int:
    """Claim un-announced requests (mark them notified), commit, then mail; no lock or
    transaction is held across the provider call."""
    if not to:
        return 0  # no inbox configured: the requests wait in the admin queue
    now = clock.now()
    with transaction(factory) as session:
        query = (
            select(ContactRequest)
            .where(
                ContactRequest.notified_at.is_(None), ContactRequest.status == ContactStatus.OPEN
            )
            .order_by(ContactRequest.id)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        claimed = session.scalars(query).all()
        for request in claimed:
            request.notified_at = now
        notices = [
            OneOff(
                OutgoingEmail(
                    0,
                    to,
                    contact_notice(r, base_url, brand),
                    f"{base_url}/admin",
                    f"notice-contact-{r.id}",
                    adhoc=True,
                ),
                give_back=_unclaim(ContactRequest, r.id, notified_at=None),
            )
            for r in claimed
        ]
    return mail_claimed(factory, provider, notices)


def _unclaim(table, row_id: int, **values):
    return lambda session: session.execute(update(table).where(table.id == row_id).values(**values))
