"""The public edge cannot be used to flood: sign-ups per client and per address, and JOIN
per number, are limited; beyond the limit a request gets a 429 with Retry-After, in the
visitor's language, and changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from campaigns.models import InboxItem, Subscriber
from settings import SettingsError, load_settings
from tests import test_signup, test_webhooks
from tests.conftest import FIXTURES
from workers.request_limits import RequestLimits

EMAIL_ONLY = dict(test_signup.ANA, phone="", channel_sms="")


def subscribers(factory):
    with factory() as s:
        return s.scalar(select(func.count(Subscriber.id)))


def test_one_client_signing_up_too_often_gets_a_429_in_its_language(factory, clock, defs, mailbox):
    client = test_signup.make_client(
        factory, clock, defs, mailbox, signup_limit_per_client="2/minute"
    )
    for n in range(2):
        page = client.post("/signup", data=dict(EMAIL_ONLY, email=f"p{n}@example.com"))
        assert page.status_code == 200
    refused = client.post(
        "/signup", data=dict(EMAIL_ONLY, email="p9@example.com", form_locale="es")
    )
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "Se enviaron demasiadas inscripciones" in refused.text
    assert subscribers(factory) == 2  # the refused one wrote nothing


def test_one_address_cannot_be_signed_up_again_and_again(factory, clock, defs, mailbox):
    client = test_signup.make_client(
        factory, clock, defs, mailbox, signup_limit_per_address="1/hour"
    )
    assert client.post("/signup", data=test_signup.ANA).status_code == 200
    # The same address typed another way is the same address.
    again = client.post("/signup", data=dict(test_signup.ANA, email="ANA@example.com"))
    assert again.status_code == 429 and "try again in 60 min." in again.text
    other = client.post(
        "/signup", data=dict(test_signup.ANA, email="bo@example.com", phone="", channel_sms="")
    )
    assert other.status_code == 200
    assert len(mailbox) == 2


def test_join_again_and_again_gets_no_more_replies(factory, clock):
    client = test_webhooks.make_client(
        factory,
        clock,
        twilio_auth_token=test_webhooks.TOKEN,
        definitions_dir=FIXTURES / "definitions",
        templates_dir=FIXTURES / "templates",
        signup_campaign="tiny",
        join_limit_per_number="1/hour",
    )
    assert "<Message>" in test_webhooks.inbound(client, "JOIN").text
    assert "<Message>" not in test_webhooks.inbound(client, "JOIN").text
    with factory() as s:
        (waiting,) = s.scalars(select(InboxItem)).all()  # a person sees it
    assert waiting.body == "JOIN"


def test_limits_are_shared_through_redis_between_processes(redis_url):
    from limits.storage import RedisStorage

    prefix = f"drip-test-limits-{id(object())}"
    rules = {"signup_client": "2/minute"}
    first = RequestLimits(rules, RedisStorage(redis_url, key_prefix=prefix))
    second = RequestLimits(rules, RedisStorage(redis_url, key_prefix=prefix))
    assert first.hit("signup_client", "203.0.113.9") is None
    assert second.hit("signup_client", "203.0.113.9") is None
    assert second.hit("signup_client", "203.0.113.9") is not None  # the two share counts
    assert first.hit("signup_client", "198.51.100.7") is None


def test_a_bad_limit_names_its_variable(monkeypatch):
    monkeypatch.setenv("SIGNUP_LIMIT_PER_CLIENT", "lots")
    with pytest.raises(SettingsError, match="SIGNUP_LIMIT_PER_CLIENT"):
        load_settings()


@pytest.fixture
def defs(tmp_path):
    import shutil

    shutil.copytree(FIXTURES / "definitions", tmp_path / "definitions")
    return tmp_path / "definitions"


@pytest.fixture
def mailbox():
    return []


def test_a_phone_typed_another_way_is_the_same_phone(factory, clock, defs, mailbox):
    client = test_signup.make_client(
        factory, clock, defs, mailbox, signup_limit_per_address="1/hour"
    )
    texts_only = dict(test_signup.ANA, email="", channel_email="")
    assert client.post("/signup", data=dict(texts_only, phone="(202) 555-0143")).status_code == 200
    again = client.post("/signup", data=dict(texts_only, phone="+1 202-555-0143"))
    assert again.status_code == 429
