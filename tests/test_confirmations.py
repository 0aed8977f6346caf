"""Sign-up confirmations cannot be turned into a mail bomb, and sign-ups nobody confirmed
do not stay forever."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from campaigns.audience.consent import record_consent
from campaigns.audience.suppression import suppress
from campaigns.db import transaction
from campaigns.intake.confirmations import send_confirmations
from campaigns.intake.retention import remove_unconfirmed
from campaigns.links import Signer
from campaigns.models import Subscriber
from campaigns.sequences.timing import Policy
from tests.conftest import FIXTURES
from workers.providers.outbox import LocalOutbox


def pending(factory, clock, email, status="pending", **extra):
    with transaction(factory) as s:
        sub = Subscriber(
            email=email,
            status=status,
            public_token=secrets.token_urlsafe(32),
            created_at=clock.now(),
            updated_at=clock.now(),
            confirmation_requested_at=clock.now(),
            **extra,
        )
        s.add(sub)
        s.flush()
        return sub.id


@pytest.fixture
def notify(factory, clock, tmp_path):
    outbox = LocalOutbox(tmp_path / "outbox")

    def run():
        return send_confirmations(
            factory,
            clock,
            outbox,
            Signer(b"confirm-test-secret-0123456789abcdef"),
            templates_dir=FIXTURES / "templates",
            brand="Lunara",
            postal_address="1 Main St",
            base_url="https://care.example",
            resend_after=timedelta(minutes=15),
        )

    return run


def ask_again(factory, clock, sid):
    with transaction(factory) as s:
        s.get(Subscriber, sid).confirmation_requested_at = clock.now()


def test_one_confirmation_per_address_per_window_the_latest_ask_answered(factory, clock, notify):
    sid = pending(factory, clock, "ana@example.com")
    assert notify() == 1
    for _ in range(5):  # the form posted again and again
        clock.advance(minutes=1)
        ask_again(factory, clock, sid)
        assert notify() == 0
    clock.advance(minutes=11)  # 16 minutes after the first mail
    assert notify() == 1
    assert notify() == 0  # nothing new asked since


def test_no_confirmation_to_an_unsubscribed_or_suppressed_address(factory, clock, notify):
    pending(factory, clock, "gone@example.com", status="unsubscribed")
    pending(factory, clock, "bounced@example.com")
    pending(factory, clock, "optedout@example.com")
    with transaction(factory) as s:
        suppress(s, clock, "email", "bounced@example.com", "bounce", "sendgrid")
        suppress(s, clock, "email", "optedout@example.com", "unsubscribed", "link")
    assert notify() == 0
    pending(factory, clock, "new@example.com")
    assert notify() == 1


def test_sign_ups_never_confirmed_are_removed_after_the_retention(factory, clock):
    old = pending(factory, clock, "old@example.com")
    kept_history = pending(factory, clock, "history@example.com")
    active = pending(factory, clock, "active@example.com", status="active")
    awaits_yes = pending(factory, clock, "awaits@example.com")
    with transaction(factory) as s:
        record_consent(s, clock, s.get(Subscriber, kept_history), "sms", "granted", "form")
    clock.advance(days=29)
    recent = pending(factory, clock, "recent@example.com")
    with transaction(factory) as s:  # its YES text was asked for lately: it is kept
        s.get(Subscriber, awaits_yes).sms_confirmation_requested_at = clock.now()
    with transaction(factory) as s:
        assert remove_unconfirmed(s, clock, timedelta(days=30)) == 0
    clock.advance(days=2)
    with transaction(factory) as s:
        assert remove_unconfirmed(s, clock, timedelta(days=30)) == 1
    with factory() as s:
        assert s.get(Subscriber, old) is None
        assert all(s.get(Subscriber, i) for i in (kept_history, active, recent, awaits_yes))


def test_one_yes_text_per_phone_per_day_however_often_it_is_typed(factory, clock, tmp_path):
    from campaigns.intake.confirmations import send_text_confirmations

    outbox = LocalOutbox(tmp_path / "texts")
    policy = Policy()
    with transaction(factory) as s:
        sub = Subscriber(
            phone="+12025550143",
            status="pending",
            public_token=secrets.token_urlsafe(32),
            created_at=clock.now(),
            updated_at=clock.now(),
            sms_confirmation_requested_at=clock.now(),
        )
        s.add(sub)
        s.flush()
        sid = sub.id

    def send():
        return send_text_confirmations(
            factory, clock, outbox, policy, brand="Lunara", resend_after=timedelta(hours=24)
        )

    assert send() == 1
    for _ in range(3):  # the number typed into the form again and again
        clock.advance(minutes=30)
        with transaction(factory) as s:
            s.get(Subscriber, sid).sms_confirmation_requested_at = clock.now()
        assert send() == 0
    clock.advance(hours=23)  # 24.5 hours after the first text, still in text hours
    assert send() == 1
