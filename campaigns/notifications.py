"""Telling the care team that someone asked for a call.

The notice says only that a request is waiting and where the queue is: the person's
name, number and note stay behind the admin login, never in an email that passes through
a provider. Requests are found from the database (notified_at is empty), so a notice
lost to a crash is sent on the next pass; a crash between the provider call and the
commit can send a notice twice, which is harmless for staff.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import ContactRequest
from campaigns.rendering import RenderedEmail
from campaigns.sending import Outcome, OutgoingEmail


def contact_notice(request: ContactRequest, base_url: str, brand: str) -> RenderedEmail:
    queue = f"{base_url}/admin/contact-requests"
    text = (f"A new request to be contacted is waiting (#{request.id}, preferred: "
            f"{request.preferred_channel or 'any'}).\n\nOpen the queue: {queue}\n\n"
            f"-- {brand} drip service\n")
    html = (f"<p>A new request to be contacted is waiting (#{request.id}, preferred: "
            f"{request.preferred_channel or 'any'}).</p><p><a href=\"{queue}\">Open the queue</a></p>")
    return RenderedEmail(subject=f"{brand}: new call request #{request.id}", preheader="", html=html, text=text)


def announce_contact_requests(session: Session, clock: Clock, provider, to: str | None, base_url: str,
                              brand: str, limit: int = 50) -> int:
    if not to:
        return 0  # no inbox configured: the requests wait in the admin queue
    query = (select(ContactRequest)
             .where(ContactRequest.notified_at.is_(None), ContactRequest.status == "open")
             .order_by(ContactRequest.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    sent = 0
    for request in session.scalars(query).all():
        content = contact_notice(request, base_url, brand)
        (result,) = provider.send_emails([OutgoingEmail(
            0, to, content, f"{base_url}/admin", f"notice-contact-{request.id}", adhoc=True)])
        if result.outcome is Outcome.ACCEPTED:
            request.notified_at = clock.now()
            sent += 1
    return sent


def send_confirmations(session: Session, clock: Clock, provider, signer, *, templates_dir, brand: str,
                       postal_address: str, base_url: str, limit: int = 200) -> int:
    """Mail every double opt-in confirmation asked for since the last one was sent."""
    from campaigns.models import Subscriber
    from campaigns.signup import confirm_token, confirm_url, confirmation_email

    query = (select(Subscriber)
             .where(Subscriber.confirmation_requested_at.is_not(None), Subscriber.email.is_not(None),
                    (Subscriber.confirmation_sent_at.is_(None))
                    | (Subscriber.confirmation_sent_at < Subscriber.confirmation_requested_at))
             .order_by(Subscriber.confirmation_requested_at).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    sent = 0
    for sub in session.scalars(query).all():
        url = confirm_url(base_url, confirm_token(signer, sub.public_token))
        content = confirmation_email(templates_dir, brand=brand, postal_address=postal_address,
                                     locale=sub.locale, first_name=sub.first_name, url=url)
        (result,) = provider.send_emails([OutgoingEmail(
            0, sub.email, content, f"{base_url}/signup", f"confirm-{sub.public_token[:12]}", adhoc=True)])
        if result.outcome is Outcome.ACCEPTED:
            sub.confirmation_sent_at = clock.now()
            sent += 1
    return sent
