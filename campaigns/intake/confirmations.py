"""Mailing double opt-in confirmations: every one asked for since the last was sent.

Found from the database (confirmation_requested_at after confirmation_sent_at), claimed
first, then mailed outside any transaction, so a transient failure hands it back for the
next pass and an outcome that may have gone out is never repeated.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock
from campaigns.db import transaction
from campaigns.delivery.one_offs import OneOff, mail_claimed
from campaigns.delivery.providers import OutgoingEmail
from campaigns.intake.signup import confirm_token, confirm_url, confirmation_email
from campaigns.models import Subscriber, Suppression
from campaigns.states import Channel, SubscriberStatus


def send_confirmations(
    factory: sessionmaker[Session],
    clock: Clock,
    provider,
    signer,
    *,
    templates_dir,
    brand: str,
    postal_address: str,
    base_url: str,
    resend_after: timedelta = timedelta(minutes=15),
    limit: int = 200,
) -> int:
    """Mail every double opt-in confirmation asked for since the last one was sent.
    Claimed first (confirmation_sent_at set), then mailed outside any transaction.

    Against mail bombing (a form posted again and again with someone's address): at most
    one confirmation per address every `resend_after`, the latest request answered when
    that has passed, and none at all to an address that unsubscribed from everything or is
    suppressed (a bounce, a complaint, an opt-out)."""
    now = clock.now()
    suppressed = select(Suppression.id).where(
        Suppression.channel == Channel.EMAIL, Suppression.address == Subscriber.email
    )
    with transaction(factory) as session:
        query = (
            select(Subscriber)
            .where(
                Subscriber.confirmation_requested_at.is_not(None),
                Subscriber.email.is_not(None),
                Subscriber.status != SubscriberStatus.UNSUBSCRIBED,
                ~suppressed.exists(),
                (Subscriber.confirmation_sent_at.is_(None))
                | (
                    (Subscriber.confirmation_sent_at < Subscriber.confirmation_requested_at)
                    & (Subscriber.confirmation_sent_at <= now - resend_after)
                ),
            )
            .order_by(Subscriber.confirmation_requested_at)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        claimed = session.scalars(query).all()
        mails = []
        for sub in claimed:
            previous = sub.confirmation_sent_at
            sub.confirmation_sent_at = now
            url = confirm_url(base_url, confirm_token(signer, sub.public_token))
            content = confirmation_email(
                templates_dir,
                brand=brand,
                postal_address=postal_address,
                locale=sub.locale,
                first_name=sub.first_name,
                url=url,
            )
            email = OutgoingEmail(
                0,
                sub.email,
                content,
                f"{base_url}/signup",
                "confirm-" + secrets.token_urlsafe(9),
                adhoc=True,
            )
            mails.append(OneOff(email, give_back=_unclaim(sub.id, previous)))
    return mail_claimed(factory, provider, mails)


def _unclaim(subscriber_id: int, previous):
    return lambda session: session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(confirmation_sent_at=previous)
    )
