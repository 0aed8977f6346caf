"""A phone gets texts only once it has proved itself (a JOIN, a YES) or staff vouched for
it: a mailbox's link, a form or a stale request can never switch texts on for it, and
nothing but START from the phone takes back its STOP (invariant 11)."""

from __future__ import annotations

from sqlalchemy import select

from campaigns.audience.consent import has_consent, record_consent
from campaigns.audience.subscribers import upsert_subscriber
from campaigns.audience.suppression import suppress, suppression_for
from campaigns.db import transaction
from campaigns.intake import signup
from campaigns.links import Signer
from campaigns.models import Subscriber
from campaigns.tracking.inbound import InboundText, handle_inbound_sms
from campaigns.tracking.portal import update_preferences

PHONE = "+12025550143"


def person(factory, clock, **fields):
    with transaction(factory) as s:
        return upsert_subscriber(s, clock, consent=("email",), **fields).id


def switch_texts_on(factory, clock, sid):
    with transaction(factory) as s:
        update_preferences(s, clock, s.get(Subscriber, sid), email=True, sms=True, evidence={})


def test_a_phone_that_never_proved_itself_is_asked_for_yes_not_texted(factory, clock):
    sid = person(factory, clock, email="ana@example.com", phone=PHONE)
    switch_texts_on(factory, clock, sid)
    with factory() as s:
        sub = s.get(Subscriber, sid)
        assert not has_consent(s, sid, "sms")
        assert sub.sms_confirmation_requested_at == clock.now()  # the YES text goes out


def test_a_stop_from_the_phone_is_never_lifted_from_the_web(factory, clock):
    sid = person(factory, clock, email="ana@example.com", phone=PHONE)
    with transaction(factory) as s:
        record_consent(s, clock, s.get(Subscriber, sid), "sms", "granted", "sms_keyword")
        suppress(s, clock, "sms", PHONE, "stop", "sms_keyword")
    switch_texts_on(factory, clock, sid)
    with factory() as s:
        assert suppression_for(s, "sms", PHONE) is not None
        assert s.get(Subscriber, sid).sms_confirmation_requested_at is None


def test_a_phone_typed_with_texts_unticked_is_not_kept(factory, clock, registry, policy):
    with transaction(factory) as s:
        signup.start_signup(
            s,
            clock,
            email="eve@example.com",
            phone=PHONE,
            first_name=None,
            locale="en",
            timezone=None,
            channels=("email",),
            evidence={},
            double_opt_in=True,
            signer=Signer(b"phone-proof-test-secret-0123456789"),
            registry=registry,
            policy=policy,
            campaign_key="tiny",
        )
    with factory() as s:
        (sub,) = s.scalars(select(Subscriber)).all()
        assert (sub.email, sub.phone) == ("eve@example.com", None)


def test_stop_cancels_a_pending_yes_so_a_later_yes_lifts_nothing(factory, clock, registry, policy):
    sid = person(factory, clock, email="ana@example.com", phone=PHONE)
    switch_texts_on(factory, clock, sid)  # a YES is asked for
    with transaction(factory) as s:
        handle_inbound_sms(s, clock, InboundText("twilio", PHONE, "STOP", "SM1"))
    with factory() as s:
        assert s.get(Subscriber, sid).sms_confirmation_requested_at is None

    def confirm(session, phone, body, sid):
        enrolled = signup.confirm_by_sms(
            session, clock, registry, policy, phone, body, campaign_key="tiny", message_sid=sid
        )
        return "enrolled" if enrolled else None

    with transaction(factory) as s:
        reply = handle_inbound_sms(
            s, clock, InboundText("twilio", PHONE, "yes", "SM2"), confirm=confirm
        )
    assert reply is None
    with factory() as s:
        assert suppression_for(s, "sms", PHONE) is not None and not has_consent(s, sid, "sms")
