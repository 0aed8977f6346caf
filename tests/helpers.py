"""Small builders shared by tests."""

from sqlalchemy import select

from campaigns.audience.subscribers import upsert_subscriber
from campaigns.db import transaction
from campaigns.delivery.enrollment import enroll
from campaigns.models import Message
from settings import load_settings
from tests.conftest import FIXTURES
from workers.cli.context import Drip
from workers.runtime import build_runtime


def add_and_enroll(factory, clock, registry, policy, campaign="tiny", **subscriber):
    consent = tuple(c for c, k in (("email", "email"), ("sms", "phone")) if subscriber.get(k))
    with transaction(factory) as session:
        sub = upsert_subscriber(session, clock, consent=consent, **subscriber)
        enrollment = enroll(session, clock, registry, sub, campaign, policy)
        return sub.id, enrollment.id


def messages(factory):
    with factory() as session:
        return session.scalars(select(Message).order_by(Message.id)).all()


def drip_context(factory, clock) -> Drip:
    """The `drip` command's context on this test's database and clock, with the fixture
    campaigns."""
    settings = load_settings(
        environment="test",
        secret_key="cli-test-secret-key-0123456789abcdef",
        definitions_dir=FIXTURES / "definitions",
        templates_dir=FIXTURES / "templates",
    )
    return Drip.around(build_runtime(settings, factory=factory, clock=clock))
