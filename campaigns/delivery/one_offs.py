"""Mails outside the outbox (a notice to the care team, a sign-up confirmation): claimed
in the database first, then mailed with no transaction or lock held across the provider
call. A transient failure gives the claim back for the next pass; an outcome that may
have gone out is kept, so nothing is mailed twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from campaigns.db import transaction
from campaigns.delivery.providers import EmailProvider, Outcome, OutgoingEmail


@dataclass
class OneOff:
    email: OutgoingEmail
    give_back: Callable[[Session], object]  # undoes the claim, so the next pass retries


def mail_claimed(
    factory: sessionmaker[Session], provider: EmailProvider, mails: list[OneOff]
) -> int:
    """Mail each claimed one-off; the number the provider accepted."""
    accepted = 0
    for mail in mails:
        (result,) = provider.send_emails([mail.email])
        if result.try_again_later:
            with transaction(factory) as session:
                mail.give_back(session)
        else:
            accepted += result.outcome is Outcome.ACCEPTED
    return accepted
