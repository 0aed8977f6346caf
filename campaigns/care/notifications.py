"""Telling the care team that someone asked for a call.

The notice says only that a request is waiting and where the queue is: the person's
name, number and note stay behind the admin login, never in an email that passes through
a provider. Requests are found from the database (notified_at is empty) and claimed before the
provider call, so a transient failure hands the notice back for the next pass, and an
outcome that may have gone out is never repeated.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock
from campaigns.db import transaction
from campaigns.models import ContactRequest
from campaigns.delivery.providers import Outcome, OutgoingEmail
from campaigns.content.rendering import RenderedEmail
from campaigns.states import ContactStatus


def contact_notice(request: ContactRequest, base_url: str, brand: str) -> RenderedEmail:
    queue = f"{base_url}/admin/contact-requests"
    text = (f"A new request to be contacted is waiting (#{request.id}, preferred: "
            f"{request.preferred_channel or 'any'}).\n\nOpen the queue: {queue}\n\n"
            f"-- {brand} drip service\n")
    html = (f"<p>A new request to be contacted is waiting (#{request.id}, preferred: "
            f"{request.preferred_channel or 'any'}).</p><p><a href=\"{queue}\">Open the queue</a></p>")
    return RenderedEmail(subject=f"{brand}: new call request #{request.id}", preheader="", html=html, text=text)


def _retry_later(result) -> bool:
    # A transient error or a paused provider: hand it back for the next pass. An unknown
    # outcome (it may have gone out) is not repeated.
    return result.outcome in (Outcome.TRANSIENT, Outcome.CONFIG)


def announce_contact_requests(factory: sessionmaker[Session], clock: Clock, provider, to: str | None,
                              base_url: str, brand: str, limit: int = 50) -> int:
    """Claim un-announced requests (mark them notified), commit, then mail; no lock or
    transaction is held across the provider call."""
    if not to:
        return 0  # no inbox configured: the requests wait in the admin queue
    now = clock.now()
    with transaction(factory) as session:
        query = (select(ContactRequest)
                 .where(ContactRequest.notified_at.is_(None), ContactRequest.status == ContactStatus.OPEN)
                 .order_by(ContactRequest.id).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        claimed = session.scalars(query).all()
        for request in claimed:
            request.notified_at = now
        notices = [(r.id, contact_notice(r, base_url, brand)) for r in claimed]
    sent = 0
    for request_id, content in notices:
        (result,) = provider.send_emails([OutgoingEmail(
            0, to, content, f"{base_url}/admin", f"notice-contact-{request_id}", adhoc=True)])
        if _retry_later(result):
            with transaction(factory) as session:
                session.execute(update(ContactRequest).where(ContactRequest.id == request_id)
                                .values(notified_at=None))
        else:
            sent += result.outcome is Outcome.ACCEPTED
    return sent


def send_confirmations(factory: sessionmaker[Session], clock: Clock, provider, signer, *, templates_dir,
                       brand: str, postal_address: str, base_url: str, limit: int = 200) -> int:
    """Mail every double opt-in confirmation asked for since the last one was sent.
    Claimed first (confirmation_sent_at set), then mailed outside any transaction."""
    from campaigns.models import Subscriber
    from campaigns.audience.signup import confirm_token, confirm_url, confirmation_email

    now = clock.now()
    with transaction(factory) as session:
        query = (select(Subscriber)
                 .where(Subscriber.confirmation_requested_at.is_not(None), Subscriber.email.is_not(None),
                        (Subscriber.confirmation_sent_at.is_(None))
                        | (Subscriber.confirmation_sent_at < Subscriber.confirmation_requested_at))
                 .order_by(Subscriber.confirmation_requested_at).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        claimed = session.scalars(query).all()
        mails = []
        for sub in claimed:
            previous = sub.confirmation_sent_at
            sub.confirmation_sent_at = now
            url = confirm_url(base_url, confirm_token(signer, sub.public_token))
            mails.append((sub.id, previous, sub.email, confirmation_email(
                templates_dir, brand=brand, postal_address=postal_address, locale=sub.locale,
                first_name=sub.first_name, url=url)))
    sent = 0
    for subscriber_id, previous, address, content in mails:
        (result,) = provider.send_emails([OutgoingEmail(
            0, address, content, f"{base_url}/signup", "confirm-" + secrets.token_urlsafe(9), adhoc=True)])
        if _retry_later(result):
            with transaction(factory) as session:
                session.execute(update(Subscriber).where(Subscriber.id == subscriber_id)
                                .values(confirmation_sent_at=previous))
        else:
            sent += result.outcome is Outcome.ACCEPTED
    return sent
