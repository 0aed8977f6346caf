"""Sending double opt-in confirmations: every one asked for since the last was sent.

    email  confirmation_requested_at after confirmation_sent_at ─► the confirm-link mail
    text   sms_confirmation_requested_at after sms_confirmation_sent_at, within the phone's
           text hours (08:00-21:00 in its own time zone) ─► the "reply YES" text

Found from the database, claimed first, then sent outside any transaction, so a transient
failure hands it back for the next pass and an outcome that may have gone out is never
repeated. A text asked for outside text hours waits in the database for the next pass
inside them, as a held lesson does.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from campaigns.audience.consent import has_consent
from campaigns.audience.suppression import suppression_for
from campaigns.clock import Clock
from campaigns.db import transaction
from campaigns.delivery.one_offs import OneOff, mail_claimed
from campaigns.delivery.providers import Outcome, OutgoingEmail, OutgoingSms, SmsProvider
from campaigns.intake.signup import (
    confirm_token,
    confirm_url,
    confirmation_email,
    sms_confirmation_text,
)
from campaigns.models import Subscriber, Suppression
from campaigns.sequences.timing import Policy
from campaigns.sequences.windows import is_allowed
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
            if suppression_for(session, Channel.EMAIL, sub.email) is not None:
                continue  # suppressed under an erased person's hashed form (the query sees plain)
            token = confirm_token(signer, sub.public_token)
            url = confirm_url(base_url, token)
            content = confirmation_email(
                templates_dir,
                brand=brand,
                postal_address=postal_address,
                locale=sub.locale,
                url=url,
            )
            email = OutgoingEmail(
                0,
                sub.email,
                content,
                # Its unsubscribe link stops further confirmations to this address.
                f"{base_url}/confirm/{token}/stop",
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


def send_text_confirmations(
    factory: sessionmaker[Session],
    clock: Clock,
    provider: SmsProvider,
    policy: Policy,
    *,
    brand: str,
    resend_after: timedelta = timedelta(hours=24),
    limit: int = 100,
) -> int:
    """Text "reply YES" to every phone asked for since the last one was sent, if it is
    within text hours where the phone is. A phone that has since given consent (JOIN) or
    been suppressed (STOP) is marked done without a text. At most one such text per phone
    every `resend_after`, however often its number is typed into the form. The number the
    provider took."""
    now = clock.now()
    texts: list[tuple[OutgoingSms, int, object]] = []
    with transaction(factory) as session:
        query = (
            select(Subscriber)
            .where(
                Subscriber.sms_confirmation_requested_at.is_not(None),
                Subscriber.phone.is_not(None),
                (Subscriber.sms_confirmation_sent_at.is_(None))
                | (
                    (Subscriber.sms_confirmation_sent_at < Subscriber.sms_confirmation_requested_at)
                    & (Subscriber.sms_confirmation_sent_at <= now - resend_after)
                ),
            )
            .order_by(Subscriber.sms_confirmation_requested_at)
            # Rows outside their text hours are read and left; read past them.
            .limit(limit * 10)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for sub in session.scalars(query).all():
            if len(texts) >= limit:
                break
            if not is_allowed(now, policy.sms_window, policy.zone(sub)):
                continue  # held until the phone's morning, never dropped
            previous = sub.sms_confirmation_sent_at
            sub.sms_confirmation_sent_at = now
            if has_consent(session, sub.id, Channel.SMS) or suppression_for(
                session, Channel.SMS, sub.phone
            ):
                continue  # nothing to confirm, or a number that said STOP: no text
            body = sms_confirmation_text(sub.locale, brand)
            reference = "confirm-" + secrets.token_urlsafe(9)
            texts.append((OutgoingSms(0, sub.phone, body, reference, adhoc=True), sub.id, previous))
    accepted = 0
    for text, subscriber_id, previous in texts:
        (result,) = provider.send_sms([text])
        if result.try_again_later:
            with transaction(factory) as session:
                session.execute(
                    update(Subscriber)
                    .where(Subscriber.id == subscriber_id)
                    .values(sms_confirmation_sent_at=previous)
                )
        else:
            accepted += result.outcome is Outcome.ACCEPTED
    return accepted
