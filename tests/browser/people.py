"""The people the browser tests look at, made through the project's own functions: sign-up,
enrolment, the real send path (local outbox), a contact request and a text in the inbox.

Everyone is on the shipped course (hip_and_back), so the screenshots show real lessons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from campaigns.audience.subscribers import upsert_subscriber
from campaigns.care import contact_queue
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.enrollment import enroll
from campaigns.delivery.sending import send_batch
from campaigns.intake import signup
from campaigns.links import Links, Sample, links_for, sample_links_for
from campaigns.models import Message, Subscriber
from campaigns.sequences import store
from campaigns.staff import accounts
from campaigns.staff.audit import Actor
from campaigns.states import EventType
from campaigns.tracking import portal
from campaigns.tracking.inbound import InboundText, handle_inbound_sms

CAMPAIGN = "hip_and_back"
QUESTION_STEP = "pain_check_start"
# Who is made, by (language, channels): the pages differ by what a person can receive.
PEOPLE = {
    ("en", "both"): dict(first_name="Ana", email="ana@example.com", phone="+12025550143"),
    ("es", "both"): dict(first_name="Sofía", email="sofia@example.com", phone="+12025550144"),
    ("en", "email"): dict(first_name="Eve", email="eve@example.com"),
    ("es", "email"): dict(first_name="Elena", email="elena@example.com"),
    ("en", "sms"): dict(first_name="Sam", phone="+12025550145"),
    ("es", "sms"): dict(first_name="Santiago", phone="+12025550146"),
}
PENDING = {"en": "paula@example.com", "es": "pilar@example.com"}


@dataclass
class Person:
    lang: str
    channels: str
    subscriber_id: int
    links: Links  # the links of the first message they were sent
    answer_links: tuple[str, ...] = ()  # the check-in question's, 0..10


@dataclass
class World:
    people: dict[tuple[str, str], Person] = field(default_factory=dict)
    confirm: dict[str, str] = field(default_factory=dict)  # lang -> confirm URL
    campaign: str = CAMPAIGN
    marker: str = ""  # a random token of this build's, to tell it is still in the database
    request_id: int = 0  # Ana's call request
    previews: dict[str, Links] = field(default_factory=dict)  # lang -> a test message's links

    def person(self, lang: str, channels: str = "both") -> Person:
        return self.people[(lang, channels)]


def build(app) -> World:
    """Everyone above, enrolled and sent what is due now; Ana has asked for a call and
    texted a question the inbox holds; two people have signed up and not confirmed."""
    rt = app.state.runtime
    s = rt.settings
    world = World()
    # The database was emptied: the shipped course is its revision 1 again, and runs (a
    # test may have published and run revision 3 before).
    with transaction(rt.factory) as session:
        store.seed(session, rt.clock, s.definitions_dir, s.templates_dir, s.templates_dir)
    rt.registry.refresh()
    ids = {}
    with transaction(rt.factory) as session:
        for (lang, channels), who in PEOPLE.items():
            consent = tuple(c for c, k in (("email", "email"), ("sms", "phone")) if who.get(k))
            sub = upsert_subscriber(session, rt.clock, consent=consent, locale=lang, **who)
            enroll(session, rt.clock, rt.registry, sub, CAMPAIGN, rt.policy)
            session.flush()
            ids[(lang, channels)] = sub.id
            world.marker = sub.public_token
        for lang, email in PENDING.items():
            result = signup.start_signup(
                session,
                rt.clock,
                email=email,
                phone=None,
                first_name="Paula",
                locale=lang,
                timezone="America/New_York",
                channels=("email",),
                evidence={"via": "browser test"},
                double_opt_in=True,
                signer=rt.signer,
                registry=rt.registry,
                policy=rt.policy,
                campaign_key=s.signup_campaign,
            )
            world.confirm[lang] = signup.confirm_url(s.public_base_url, result.confirm_token)
    # The welcome goes out, then the question right behind it (one step per pass).
    for _ in range(3):
        with transaction(rt.factory) as session:
            work = claim_due(session, rt.clock, rt.registry, rt.policy)
        for channel in ("email", "sms"):
            send_batch(rt.send, channel, getattr(work, channel))
    with rt.factory() as session:
        for (lang, channels), sub_id in ids.items():
            first = session.scalars(
                select(Message).where(Message.subscriber_id == sub_id).order_by(Message.id)
            ).first()
            asked = session.scalars(
                select(Message).where(
                    Message.subscriber_id == sub_id, Message.step_key == QUESTION_STEP
                )
            ).first()
            world.people[(lang, channels)] = Person(
                lang,
                channels,
                sub_id,
                links_for(s.public_base_url, rt.signer, first.public_token),
                links_for(s.public_base_url, rt.signer, asked.public_token, range(11)).answers
                if asked is not None
                else (),
            )
    ana = world.person("en")
    with transaction(rt.factory) as session:
        visit = portal.resolve(session, rt.signer, "c", ana.links.contact.rsplit("/", 1)[1])
        world.request_id = contact_queue.request_contact(
            session,
            rt.clock,
            rt.registry,
            visit,
            preferred_channel="phone",
            preferred_time="mornings",
            note="About the stretches in lesson 1",
        ).id
        handle_inbound_sms(
            session,
            rt.clock,
            InboundText("twilio", PEOPLE[("en", "both")]["phone"], "Is there a video?", "SMweb1"),
        )
    with transaction(rt.factory) as session:
        # Opens and clicks, so the results page's charts have more than sends to show.
        for (lang, channels), sub_id in ids.items():
            first = session.scalars(
                select(Message).where(Message.subscriber_id == sub_id).order_by(Message.id)
            ).first()
            visit = portal.Visit(first, session.get(Subscriber, sub_id))
            if first.channel == "email":
                portal.record_engagement(session, rt.clock, visit, EventType.OPENED, {})
            if lang == "es" or channels == "both":
                detail = {"route": "m"}  # read online
                portal.record_engagement(session, rt.clock, visit, EventType.CLICKED, detail)
    with transaction(rt.factory) as session:
        # A care-team member beside the bootstrap admin, for the staff pages.
        nurse = Actor("cli:browser-test", "admin", "cli")
        accounts.add(session, rt.clock, nurse, "nina", "care", "nina's long password", "Nina R.")
    for lang in ("en", "es"):
        sample = Sample(CAMPAIGN, QUESTION_STEP, lang, ("email", "sms"))
        world.previews[lang] = sample_links_for(s.public_base_url, rt.signer, sample, range(11))
    return world


def still_there(app, world: World) -> bool:
    """Whether the database still holds what `build` made (no other test emptied it)."""
    with app.state.factory() as session:
        found = session.scalar(select(Subscriber.id).where(Subscriber.public_token == world.marker))
    return found is not None
