"""Contact details as people type them: one form per address and zone, so a typed
variant can neither become a second subscriber nor slip past a suppression."""

import pytest
from sqlalchemy import select

from campaigns.audience.subscribers import (
    InvalidSubscriber,
    check_timezone,
    normalize_email,
    upsert_subscriber,
)
from campaigns.audience.suppression import suppress, suppression_for
from campaigns.db import transaction
from campaigns.models import Subscriber


@pytest.mark.parametrize(
    "raw", ["a,b@x.com", "ana@", "@example.com", "a b@example.com", "x@localhost"]
)
def test_addresses_a_mail_server_would_refuse_are_refused(raw):
    with pytest.raises(InvalidSubscriber, match="email"):
        normalize_email(raw)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("bob@example.com.", "bob@example.com"),
        ("  Bob@Example.COM ", "bob@example.com"),
        ("ana@exämple.com", "ana@exämple.com"),
    ],
)
def test_variants_of_one_address_become_one_form(raw, normal):
    assert normalize_email(raw) == normal


def test_a_trailing_dot_does_not_slip_past_a_bounce(factory, clock):
    with transaction(factory) as s:
        suppress(s, clock, "email", "bob@example.com", "bounce", "sendgrid")
        sub = upsert_subscriber(s, clock, email="bob@example.com.", consent=("email",))
        assert sub.email == "bob@example.com"
        assert suppression_for(s, "email", sub.email).reason == "bounce"
    with factory() as s:
        assert len(s.scalars(select(Subscriber)).all()) == 1


@pytest.mark.parametrize(
    "name",
    ["localtime", "posixrules", "Factory", "EST5EDT", "US/Eastern", "Cuba", "posix/Asia/Tokyo"],
)
def test_only_canonical_zone_names_are_accepted(name):
    with pytest.raises(InvalidSubscriber, match="canonical IANA time zone"):
        check_timezone(name)


@pytest.mark.parametrize(
    "name", ["America/New_York", "Asia/Kolkata", "Europe/Madrid", "America/Argentina/Salta", "UTC"]
)
def test_canonical_zone_names_pass(name):
    assert check_timezone(name) == name
