"""Small builders shared by tests."""

from sqlalchemy import select

from campaigns.audience.subscribers import upsert_subscriber
from campaigns.db import transaction
from campaigns.delivery.enrollment import enroll
from campaigns.models import Message


def add_and_enroll(factory, clock, registry, policy, campaign="tiny", **subscriber):
    consent = tuple(c for c, k in (("email", "email"), ("sms", "phone")) if subscriber.get(k))
    with transaction(factory) as session:
        sub = upsert_subscriber(session, clock, consent=consent, **subscriber)
        enrollment = enroll(session, clock, registry, sub, campaign, policy)
        return sub.id, enrollment.id


def messages(factory):
    with factory() as session:
        return session.scalars(select(Message).order_by(Message.id)).all()
