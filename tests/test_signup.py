"""Signing up on the form (double opt-in) and by text, on SQLite and PostgreSQL through the
real FastAPI app: GET never changes state, forged links change nothing, bad input writes
nothing, a second sign-up duplicates nothing, and the page never says who was known."""

import base64
import hashlib
import re
import shutil

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import func, select

from campaigns.audience.consent import has_consent
from campaigns.audience.opt_outs import unsubscribe
from campaigns.audience.subscribers import InvalidSubscriber
from campaigns.audience.suppression import suppress, suppression_for
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.intake import signup
from campaigns.links import Signer
from campaigns.models import ConsentRecord, Enrollment, Subscriber
from settings import ROOT, SettingsError, load_settings
from tests.conftest import FIXTURES
from web.app import create_app

BASE = "https://care.example"
SECRET = "s" * 40
ANA = {
    "form_locale": "en",
    "first_name": "Ana",
    "email": "Ana@Example.com",
    "phone": "(202) 555-0143",
    "timezone": "America/Chicago",
    "locale": "en",
    "channel_email": "1",
    "channel_sms": "1",
}
SMS_WORDING = signup.sms_consent_text("en", "Lunara")


@pytest.fixture
def defs(tmp_path):
    shutil.copytree(FIXTURES / "definitions", tmp_path / "definitions")
    return tmp_path / "definitions"


@pytest.fixture
def mailbox():
    return []


def make_client(factory, clock, defs, mailbox, **overrides):
    settings = load_settings(
        environment="test",
        secret_key=SECRET,
        public_base_url=BASE,
        definitions_dir=defs,
        templates_dir=FIXTURES / "templates",
        signup_campaign="tiny",
        **overrides,
    )
    app = create_app(settings, factory=factory, clock=clock)
    app.state.send_confirmation = lambda to, email: mailbox.append((to, email))
    # A browser posting the form from our own page says where it came from.
    return TestClient(app, headers={"Origin": BASE})


@pytest.fixture
def client(factory, clock, defs, mailbox):
    return make_client(factory, clock, defs, mailbox)


def count(factory, column, *where):
    with factory() as s:
        return s.scalar(select(func.count(column)).where(*where))


def ana(factory):
    with factory() as s:
        return s.scalar(select(Subscriber).where(Subscriber.email == "ana@example.com"))


def confirm_path(mailbox):
    _, email = mailbox[-1]
    (url,) = set(re.findall(re.escape(BASE) + r"/confirm/[\w.-]+", email.text))
    return url[len(BASE) :]


def test_form_shows_the_sms_consent_wording_in_each_language(client):
    page = client.get("/signup")
    assert page.status_code == 200 and str(escape(SMS_WORDING)) in page.text
    assert 'name="channel_sms" value="1">' in page.text  # never pre-checked
    assert page.headers["cache-control"] == "no-store"
    spanish = client.get("/signup?lang=es")
    assert "Al marcar esta casilla aceptas recibir mensajes de texto educativos" in spanish.text
    assert client.get("/signup", headers={"accept-language": "es-MX,es;q=0.9"}).text == spanish.text


def test_double_opt_in_from_form_to_enrollment(client, factory, mailbox, clock, registry, policy):
    done = client.post("/signup", data=ANA)
    assert done.status_code == 200 and "check your email" in done.text
    assert "reply YES" in done.text  # the phone confirms itself too
    sub = ana(factory)
    assert (sub.status, sub.phone, sub.timezone, sub.first_name) == (
        "pending",
        "+12025550143",
        "America/Chicago",
        "Ana",
    )
    assert sub.sms_confirmation_requested_at == clock.now()
    with factory() as s:
        assert s.scalars(select(ConsentRecord)).all() == []  # a typed phone proves nothing
        assert not has_consent(s, sub.id, "email")
    assert count(factory, Enrollment.id) == 0

    ((to, email),) = mailbox
    assert to == "ana@example.com"
    assert email.subject == "Please confirm your email for Lunara"  # nothing about health
    assert "Hi there," in email.text and "Ana" not in email.text  # greets nobody by name
    path = confirm_path(mailbox)
    assert path in email.html and sub.public_token in path and "@" not in path

    page = client.get(path)  # what a mail scanner does: changes nothing
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert ana(factory).status == "pending" and count(factory, Enrollment.id) == 0

    confirmed = client.post(path)
    assert confirmed.status_code == 200 and "your email is confirmed" in confirmed.text
    sub = ana(factory)
    assert sub.status == "active"
    with factory() as s:
        assert has_consent(s, sub.id, "email") and not has_consent(s, sub.id, "sms")
        grant = s.scalar(select(ConsentRecord).where(ConsentRecord.channel == "email"))
        (enrollment,) = s.scalars(select(Enrollment)).all()
    assert grant.source == "double_opt_in" and grant.evidence["method"] == "double_opt_in"
    assert grant.evidence["via"] == "confirm_link"
    assert (enrollment.campaign_key, enrollment.source, enrollment.subscriber_id) == (
        "tiny",
        "signup",
        sub.id,
    )

    assert client.post(path).status_code == 200  # confirming twice is fine
    assert count(factory, Enrollment.id) == 1 and count(factory, ConsentRecord.id) == 1
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
    assert (len(work.email), len(work.sms)) == (1, 0)  # no lesson text before YES

    with transaction(factory) as s:
        answered = signup.confirm_by_sms(
            s,
            clock,
            registry,
            policy,
            "+12025550143",
            "Yes",
            campaign_key="tiny",
            message_sid="SM9",
        )
    assert answered.id == enrollment.id
    with factory() as s:
        assert has_consent(s, sub.id, "sms")
        grant = s.scalar(select(ConsentRecord).where(ConsentRecord.channel == "sms"))
    assert (grant.source, grant.evidence["message_sid"]) == ("sms_double_opt_in", "SM9")


def test_forged_or_mangled_confirm_links_are_refused_and_change_nothing(client, factory, mailbox):
    client.post("/signup", data=ANA)
    public = ana(factory).public_token
    tokens = [
        Signer(b"someone-else").sign("confirm", public),
        public,
        "nonsense",
        Signer(SECRET.encode()).sign("u", public),  # a real signature for another purpose
        Signer(SECRET.encode()).sign("confirm", "x" * 43),
    ]  # signed, but names nobody
    for token in tokens:
        assert client.get(f"/confirm/{token}").status_code == 404
        refused = client.post(f"/confirm/{token}")
        assert refused.status_code == 404 and "not valid" in refused.text
    assert ana(factory).status == "pending"
    assert (
        count(factory, Enrollment.id) == 0
        and count(factory, ConsentRecord.id, ConsentRecord.channel == "email") == 0
    )


@pytest.mark.parametrize(
    "field, value, shown",
    [
        ("email", "ana@@example", "Enter an email address like name@example.com."),
        ("phone", "555-01", "Enter a mobile number with its area code"),
        ("timezone", "Mars/Olympus", "Choose a time zone from the list."),
        ("channel_email", "", "Choose email, text messages or both"),
    ],
)
def test_bad_input_is_shown_beside_its_field_and_writes_nothing(
    client, factory, mailbox, field, value, shown
):
    data = dict(ANA, **{field: value})
    if field == "channel_email":
        data.pop("channel_sms")
    page = client.post("/signup", data=data)
    assert page.status_code == 400 and shown in page.text
    target = {"channel_email": "channels"}.get(field, field)
    assert f'id="{target}-error"' in page.text
    assert 'value="Ana"' in page.text  # what was typed is kept
    assert (
        count(factory, Subscriber.id) == 0
        and count(factory, ConsentRecord.id) == 0
        and mailbox == []
    )


def test_spanish_form_errors_are_in_spanish(client, factory):
    page = client.post("/signup", data=dict(ANA, form_locale="es", phone="12"))
    assert page.status_code == 400 and "Escribe un número de celular" in page.text
    assert count(factory, Subscriber.id) == 0


def test_signing_up_again_duplicates_nothing_and_reveals_nothing(client, factory, mailbox):
    first = client.post("/signup", data=ANA)
    client.post(confirm_path(mailbox))
    again = client.post("/signup", data=dict(ANA, first_name="Mallory", timezone="America/Denver"))
    stranger = client.post(
        "/signup", data=dict(ANA, email="new@example.com", phone="(202) 555-0188")
    )
    assert first.text == again.text == stranger.text  # the same answer, known or not
    sub = ana(factory)
    assert (sub.first_name, sub.timezone, sub.status) == (
        "Ana",
        "America/Chicago",
        "active",
    )  # not overwritten
    assert count(factory, Subscriber.id) == 2
    assert count(factory, Enrollment.id) == 1
    assert count(factory, ConsentRecord.id, ConsentRecord.subscriber_id == sub.id) == 1
    assert [to for to, _ in mailbox] == [
        "ana@example.com",
        "new@example.com",
    ]  # no mail for nothing


def test_the_form_mails_no_unsubscribed_or_suppressed_address(client, factory, clock, mailbox):
    """Issue: each sign-up queued another confirmation, also to addresses that had
    unsubscribed from everything. They come back through a preference link instead."""
    client.post("/signup", data=ANA)
    client.post(confirm_path(mailbox))
    sub = ana(factory)
    with transaction(factory) as s:
        unsubscribe(s, clock, s.get(Subscriber, sub.id))
    clock.advance(days=1)
    page = client.post("/signup", data=ANA)  # someone types the address in again
    assert "check your email" in page.text  # the page says the same as for anyone
    assert len(mailbox) == 1  # but nothing is mailed
    with factory() as s:
        assert s.get(Subscriber, sub.id).status == "unsubscribed"
        assert not has_consent(s, sub.id, "email") and not has_consent(s, sub.id, "sms")

    with transaction(factory) as s:
        suppress(s, clock, "email", "bo@example.com", "bounce", "sendgrid")
    page = client.post("/signup", data=dict(ANA, email="bo@example.com", phone="", channel_sms=""))
    assert "check your email" in page.text and len(mailbox) == 1  # never mail a bounced address


def test_without_double_opt_in_sign_up_enrolls_at_once_but_texts_only_after_yes(
    factory, clock, defs, mailbox
):
    client = make_client(factory, clock, defs, mailbox, double_opt_in=False)
    done = client.post("/signup", data=ANA)
    assert "Your first lesson is on its way" in done.text and mailbox == []
    sub = ana(factory)
    with factory() as s:
        assert (
            sub.status == "active"
            and has_consent(s, sub.id, "email")
            and not has_consent(s, sub.id, "sms")
        )
    assert sub.sms_confirmation_requested_at is not None
    assert client.post("/signup", data=ANA).text == done.text
    assert count(factory, Subscriber.id) == 1 and count(factory, Enrollment.id) == 1


def test_the_form_never_lifts_an_opt_out(factory, clock, defs, mailbox):
    client = make_client(factory, clock, defs, mailbox, double_opt_in=False)
    with transaction(factory) as s:
        suppress(s, clock, "sms", "+12025550143", "stop", "sms_keyword")
    client.post("/signup", data=dict(ANA, channel_email=""))
    with factory() as s:  # texts only: the email typed beside them is not kept
        sub = s.scalar(select(Subscriber).where(Subscriber.phone == "+12025550143"))
        assert sub.email is None
    with factory() as s:
        assert suppression_for(s, "sms", "+12025550143") is not None
        assert not has_consent(s, sub.id, "sms")
    assert count(factory, Enrollment.id) == 0  # nothing it may send


def test_email_and_phone_of_two_different_people_are_not_merged(
    client, factory, clock, registry, policy, mailbox
):
    with transaction(factory) as s:
        signup.start_signup(
            s,
            clock,
            email="bo@example.com",
            phone=None,
            first_name="Bo",
            locale="en",
            timezone=None,
            channels=("email",),
            evidence={},
            double_opt_in=False,
            signer=Signer(b"k"),
            registry=registry,
            policy=policy,
            campaign_key="tiny",
        )
        signup.start_signup(
            s,
            clock,
            email=None,
            phone="+12025550143",
            first_name="Cy",
            locale="en",
            timezone=None,
            channels=("sms",),
            evidence={"sms_consent_text": SMS_WORDING},
            double_opt_in=False,
            signer=Signer(b"k"),
            registry=registry,
            policy=policy,
            campaign_key="tiny",
        )
    page = client.post("/signup", data=dict(ANA, email="bo@example.com"))
    assert page.status_code == 200
    with factory() as s:
        bo = s.scalar(select(Subscriber).where(Subscriber.email == "bo@example.com"))
    assert bo.phone is None and count(factory, Subscriber.id) == 2


def test_sms_consent_needs_the_wording_that_was_shown(factory, clock, registry, policy):
    with transaction(factory) as s, pytest.raises(InvalidSubscriber, match="^sms_consent"):
        signup.start_signup(
            s,
            clock,
            email=None,
            phone="+12025550143",
            first_name=None,
            locale="en",
            timezone=None,
            channels=("sms",),
            evidence={"via": "api"},
            double_opt_in=True,
            signer=Signer(b"k"),
            registry=registry,
            policy=policy,
            campaign_key="tiny",
        )
    assert count(factory, Subscriber.id) == 0


def test_join_by_text_subscribes_and_enrolls_once(factory, clock, registry, policy):
    with transaction(factory) as s:
        assert (
            signup.signup_by_sms(
                s, clock, registry, policy, "+12025550143", "hello?", campaign_key="tiny"
            )
            is None
        )
        first = signup.signup_by_sms(
            s,
            clock,
            registry,
            policy,
            "+12025550143",
            "Join!",
            campaign_key="tiny",
            message_sid="SM1",
        )
        again = signup.signup_by_sms(
            s, clock, registry, policy, "+12025550143", "JOIN", campaign_key="tiny"
        )
        spanish = signup.signup_by_sms(
            s, clock, registry, policy, "+12025550144", "unirme", campaign_key="tiny"
        )
    assert first.id == again.id and spanish.id != first.id
    with factory() as s:
        sub = s.get(Subscriber, first.subscriber_id)
        grant = s.scalar(select(ConsentRecord).where(ConsentRecord.subscriber_id == sub.id))
        assert s.get(Subscriber, spanish.subscriber_id).locale == "es"
    assert (sub.phone, sub.status, sub.locale) == ("+12025550143", "active", "en")
    assert (grant.channel, grant.source) == ("sms", "sms_keyword")
    assert grant.evidence == {"keyword": "JOIN", "inbound_text": "Join!", "message_sid": "SM1"}
    assert count(factory, ConsentRecord.id) == 2 and count(factory, Enrollment.id) == 2
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
    assert len(work.sms) == 2 and work.email == []
    assert "Reply HELP for help, STOP to opt out." in signup.join_reply("en", "Lunara")


def test_join_after_stop_is_a_new_opt_in(factory, clock, registry, policy):
    with transaction(factory) as s:
        suppress(s, clock, "sms", "+12025550143", "stop", "sms_keyword")
        enrollment = signup.signup_by_sms(
            s, clock, registry, policy, "+12025550143", "JOIN", campaign_key="tiny"
        )
    assert enrollment is not None
    with factory() as s:
        assert suppression_for(s, "sms", "+12025550143") is None
        assert has_consent(s, enrollment.subscriber_id, "sms")


def test_confirmation_email_in_spanish_from_the_shipped_templates():
    email = signup.confirmation_email(
        FIXTURES / "templates",
        brand="Lunara",
        postal_address="1 Test Street",
        locale="es-MX",
        url=f"{BASE}/confirm/abc.def",
    )
    assert email.subject == "Confirma tu correo para Lunara"
    assert (
        "Hola:" in email.text
        and f"{BASE}/confirm/abc.def" in email.text
        and "1 Test Street" in email.text
    )
    assert (
        'href="https://care.example/confirm/abc.def"' in email.html and "style=" in email.html
    )  # CSS inlined
    assert (ROOT / "templates" / "_system" / "es" / "confirm.html").exists()


def notify_path(factory, clock, defs, tmp_path):
    """The production path: the app has no immediate mailer, so a sign-up only records
    the request and `notify()` (the notify task's pass) mails it to a local outbox."""
    from campaigns.intake.confirmations import send_confirmations
    from workers.providers.outbox import LocalOutbox

    settings = load_settings(
        environment="test",
        secret_key=SECRET,
        public_base_url=BASE,
        definitions_dir=defs,
        templates_dir=FIXTURES / "templates",
        signup_campaign="tiny",
    )
    client = TestClient(
        create_app(settings, factory=factory, clock=clock), headers={"Origin": BASE}
    )
    outbox = LocalOutbox(tmp_path / "outbox")

    def notify():
        return send_confirmations(
            factory,
            clock,
            outbox,
            Signer(SECRET.encode()),
            templates_dir=FIXTURES / "templates",
            brand="Lunara",
            postal_address="1 Main St",
            base_url=BASE,
        )

    return client, notify, outbox


def test_without_an_immediate_mailer_the_notify_pass_sends_the_confirmation(
    factory, clock, defs, tmp_path
):
    """Production path: the sign-up only records the request; the notify task mails it,
    once per request, and the link in it confirms."""
    client, notify, outbox = notify_path(factory, clock, defs, tmp_path)
    assert "check your email" in client.post("/signup", data=ANA).text
    assert notify() == 1 and notify() == 0
    (eml,) = (outbox.folder / "adhoc").glob("email-*.eml")
    import email
    from email import policy as email_policy

    parsed = email.message_from_bytes(eml.read_bytes(), policy=email_policy.default)
    text = parsed.get_body(("plain",)).get_content()
    link = re.search(r"https://care\.example(/confirm/[\w.-]+)", text)[1]
    assert client.post(link).status_code == 200 and count(factory, Enrollment.id) == 1


# ---------------------------------------------------------------- half-known identities
# A stranger types a patient's address beside one of their own. Each test fails on the
# form that "filled blanks" (the new address joined the patient's record with consent).

STRANGER_PHONE = "+12025550188"


def staff_add(factory, clock, registry, policy, **person):
    """A patient loaded by staff (as an import or `drip enroll` does), enrolled."""
    from tests.helpers import add_and_enroll

    sub_id, _ = add_and_enroll(factory, clock, registry, policy, **person)
    return sub_id


def record(factory, sub_id):
    with factory() as s:
        sub = s.get(Subscriber, sub_id)
        consents = [
            (c.channel, c.action)
            for c in s.scalars(select(ConsentRecord).where(ConsentRecord.subscriber_id == sub_id))
        ]
        return (
            sub.email,
            sub.phone,
            sub.first_name,
            sub.timezone,
            sub.locale,
            sub.status,
        ), consents


def by_phone(factory, phone):
    with factory() as s:
        return s.scalar(select(Subscriber).where(Subscriber.phone == phone))


def test_a_known_email_with_a_new_phone_never_puts_that_phone_on_the_patient(
    client, factory, clock, registry, policy, mailbox
):
    patient = staff_add(
        factory, clock, registry, policy, email="pat@example.com", first_name="Pat", locale="en"
    )
    before = record(factory, patient)
    page = client.post(
        "/signup",
        data=dict(ANA, email="pat@example.com", phone="(202) 555-0188", first_name="Mallory"),
    )
    unknown = client.post(
        "/signup", data=dict(ANA, email="nobody@example.com", phone="(202) 555-0177")
    )
    assert page.status_code == 200 and page.text == unknown.text  # reveals nobody
    assert "Pat" not in page.text
    assert record(factory, patient) == before  # no phone, consent, name, zone added
    stranger = by_phone(factory, STRANGER_PHONE)
    assert stranger.id != patient and stranger.email is None and stranger.status == "pending"
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
        assert not has_consent(s, stranger.id, "sms")
    assert work.sms == []  # the patient's lesson is texted to nobody
    assert all("Pat" not in email.text for _, email in mailbox)

    # The stranger's phone proves itself: it gets a course of its own, never the patient's.
    with transaction(factory) as s:
        own = signup.confirm_by_sms(
            s, clock, registry, policy, STRANGER_PHONE, "YES", campaign_key="tiny"
        )
    assert own.subscriber_id == stranger.id
    assert record(factory, patient) == before


def test_a_known_phone_with_a_new_email_never_puts_that_email_on_the_patient_or_greets_by_name(
    client, factory, clock, registry, policy, mailbox
):
    patient = staff_add(
        factory, clock, registry, policy, phone="+12025550143", first_name="Pat", locale="en"
    )
    before = record(factory, patient)
    page = client.post("/signup", data=dict(ANA, email="evil@example.com", first_name=""))
    assert page.status_code == 200 and "Pat" not in page.text
    assert record(factory, patient) == before
    ((to, email),) = mailbox
    assert to == "evil@example.com" and "Pat" not in email.text and "Pat" not in email.html
    assert "Hi there," in email.text

    client.post(confirm_path(mailbox))  # the stranger confirms their own mailbox
    assert record(factory, patient) == before
    with factory() as s:
        evil = s.scalar(select(Subscriber).where(Subscriber.email == "evil@example.com"))
        assert evil.id != patient and evil.phone is None and has_consent(s, evil.id, "email")
        enrolled = {e.subscriber_id for e in s.scalars(select(Enrollment))}
    assert enrolled == {patient, evil.id}  # two courses, two people


def test_an_email_and_a_phone_known_to_two_people_change_neither(
    client, factory, clock, registry, policy, mailbox
):
    bo = staff_add(factory, clock, registry, policy, email="bo@example.com", first_name="Bo")
    cy = staff_add(factory, clock, registry, policy, phone="+12025550143", first_name="Cy")
    before = record(factory, bo), record(factory, cy)
    page = client.post("/signup", data=dict(ANA, email="bo@example.com", first_name="Mallory"))
    assert page.status_code == 200 and "Bo" not in page.text and "Cy" not in page.text
    assert (record(factory, bo), record(factory, cy)) == before  # no time zone filled in
    assert count(factory, Subscriber.id) == 2 and mailbox == []  # both already confirmed
    assert by_phone(factory, "+12025550143").sms_confirmation_requested_at is None


def test_a_pending_sign_up_is_not_changed_by_the_next_one(client, factory, clock, mailbox):
    client.post("/signup", data=dict(ANA, phone="", channel_sms="", timezone=""))
    pending = ana(factory)
    before = record(factory, pending.id)
    clock.advance(minutes=5)
    client.post(
        "/signup",
        data=dict(ANA, phone="(202) 555-0188", timezone="America/Denver", first_name="Mallory"),
    )
    assert record(factory, pending.id) == before  # no phone, zone or name added
    assert by_phone(factory, STRANGER_PHONE).id != pending.id
    assert [to for to, _ in mailbox] == ["ana@example.com"] * 2  # the link is sent again
    assert all("Ana" not in email.text and "Mallory" not in email.text for _, email in mailbox)


def test_an_unsubscribed_person_is_not_changed_and_a_stopped_phone_is_not_texted(
    client, factory, clock, registry, policy, mailbox
):
    pat = staff_add(factory, clock, registry, policy, email="pat@example.com", first_name="Pat")
    cy = staff_add(factory, clock, registry, policy, phone="+12025550143", first_name="Cy")
    with transaction(factory) as s:
        unsubscribe(s, clock, s.get(Subscriber, pat))
        unsubscribe(s, clock, s.get(Subscriber, cy))  # the phone said STOP
    before = record(factory, pat), record(factory, cy)
    client.post("/signup", data=dict(ANA, email="pat@example.com", phone="(202) 555-0188"))
    client.post("/signup", data=dict(ANA, email="new@example.com"))  # + Cy's phone
    assert (record(factory, pat), record(factory, cy)) == before
    assert by_phone(factory, "+12025550143").sms_confirmation_requested_at is None
    with factory() as s:
        new = s.scalar(select(Subscriber).where(Subscriber.email == "new@example.com"))
    assert new.id not in (pat, cy) and new.phone is None


def test_staff_paths_still_fill_blanks_and_the_anonymous_flag_changes_nothing(factory, clock):
    from campaigns.audience.subscribers import upsert_subscriber

    with transaction(factory) as s:
        sub = upsert_subscriber(s, clock, email="pat@example.com")
        same = upsert_subscriber(
            s,
            clock,
            email="pat@example.com",
            phone="+12025550188",
            consent=("sms",),
            anonymous=True,
        )
        assert same.id == sub.id and sub.phone is None and not has_consent(s, sub.id, "sms")
        staff = upsert_subscriber(
            s, clock, email="pat@example.com", phone="+12025550188", first_name="Pat"
        )
        assert staff.id == sub.id and (sub.phone, sub.first_name) == ("+12025550188", "Pat")


# ---------------------------------------------------------------- SMS double opt-in


def text_pass(factory, clock, policy, tmp_path):
    from campaigns.intake.confirmations import send_text_confirmations
    from workers.providers.outbox import LocalOutbox

    outbox = LocalOutbox(tmp_path / "outbox")
    sent = send_text_confirmations(factory, clock, outbox, policy, brand="Lunara")
    log = outbox.folder / "texts.log"
    return sent, (log.read_text() if log.exists() else "")


def test_a_phone_from_the_form_gets_a_yes_request_and_no_lesson_before_yes(
    factory, clock, defs, mailbox, registry, policy, tmp_path
):
    from campaigns.content.sms_text import is_gsm7

    client = make_client(factory, clock, defs, mailbox, double_opt_in=False)
    page = client.post("/signup", data=dict(ANA, email="", channel_email=""))
    assert "reply YES" in page.text
    sub = by_phone(factory, "+12025550143")
    assert count(factory, Enrollment.id) == 0 and sub.status == "pending"
    sent, log = text_pass(factory, clock, policy, tmp_path)
    assert sent == 1 and "Reply YES to get educational texts" in log
    body = signup.sms_confirmation_text("en", "Lunara")
    for part in ("Lunara:", "Reply YES", "educational texts", "Msg frequency varies"):
        assert part in body
    assert "Msg & data rates may apply" in body and "HELP" in body and "STOP" in body
    assert is_gsm7(body) and is_gsm7(signup.sms_confirmation_text("es", "Lunara"))
    for word in ("hip", "back", "pain", "cadera", "espalda", "dolor"):
        assert word not in body.lower() + signup.sms_confirmation_text("es", "L").lower()
    assert text_pass(factory, clock, policy, tmp_path)[0] == 0  # once per request
    with transaction(factory) as s:
        assert claim_due(s, clock, registry, policy).sms == []

    with transaction(factory) as s:
        enrollment = signup.confirm_by_sms(
            s, clock, registry, policy, "+12025550143", "Sí", campaign_key="tiny", message_sid="SMy"
        )
        grant = s.scalar(select(ConsentRecord).where(ConsentRecord.channel == "sms"))
        assert (grant.evidence["message_sid"], grant.evidence["keyword"]) == ("SMy", "SI")
    assert enrollment is not None and by_phone(factory, "+12025550143").status == "active"
    with transaction(factory) as s:
        assert len(claim_due(s, clock, registry, policy).sms) == 1  # now the course texts


def test_a_yes_nobody_asked_for_grants_nothing(factory, clock, registry, policy):
    from campaigns.audience.subscribers import upsert_subscriber

    with transaction(factory) as s:
        upsert_subscriber(s, clock, email="pat@example.com", phone="+12025550143")
        for body in ("YES", "yes please"):
            assert (
                signup.confirm_by_sms(
                    s, clock, registry, policy, "+12025550143", body, campaign_key="tiny"
                )
                is None
            )
    assert count(factory, ConsentRecord.id) == 0 and count(factory, Enrollment.id) == 0


def test_a_yes_request_outside_text_hours_waits_for_the_morning(
    client, factory, clock, policy, tmp_path
):
    clock.advance(hours=15)  # midnight in Chicago
    client.post("/signup", data=ANA)
    assert text_pass(factory, clock, policy, tmp_path)[0] == 0
    clock.advance(hours=7, minutes=59)
    assert text_pass(factory, clock, policy, tmp_path)[0] == 0
    clock.advance(minutes=1)  # 08:00
    assert text_pass(factory, clock, policy, tmp_path)[0] == 1


def test_a_joined_phone_needs_no_yes(factory, clock, registry, policy, client, tmp_path):
    client.post("/signup", data=dict(ANA, email="", channel_email=""))
    with transaction(factory) as s:
        signup.signup_by_sms(
            s, clock, registry, policy, "+12025550143", "JOIN", campaign_key="tiny"
        )
    assert text_pass(factory, clock, policy, tmp_path)[0] == 0  # it texted us: proved already


NUMBERS = [
    ("+1 900 555 0100", "phone_type"),  # premium rate
    ("+1 800 555 0100", "phone_type"),  # toll-free
    ("+44 7400 123456", "phone_country"),  # a UK mobile
    ("+34 612 345 678", "phone_country"),
]


@pytest.mark.parametrize("number, kind", NUMBERS)
def test_numbers_we_may_not_text_are_refused_on_the_form(client, factory, mailbox, number, kind):
    page = client.post("/signup", data=dict(ANA, phone=number))
    assert page.status_code == 400 and 'id="phone-error"' in page.text
    shown = {
        "phone_type": "We can only text mobile numbers. This one is",
        "phone_country": "We can only text mobile numbers in US, CA.",
    }[kind]
    assert shown in page.text
    assert count(factory, Subscriber.id) == 0 and mailbox == []
    spanish = client.post("/signup", data=dict(ANA, phone=number, form_locale="es"))
    assert "Solo podemos enviar mensajes" in spanish.text


def test_the_same_number_without_texts_is_not_checked(client, factory):
    page = client.post("/signup", data=dict(ANA, phone="+1 800 555 0100", channel_sms=""))
    assert page.status_code == 200 and count(factory, Subscriber.id) == 1


@pytest.mark.parametrize(
    "region, kind",
    [
        ("GB", "FIXED_LINE"),
        ("GB", "TOLL_FREE"),
        ("GB", "PREMIUM_RATE"),
        ("FR", "SHARED_COST"),
        ("GB", "VOIP"),
        ("GB", "PAGER"),
        ("GB", "UAN"),
    ],
)
def test_check_textable_refuses_every_type_but_mobile(region, kind):
    import phonenumbers

    from campaigns.audience.subscribers import check_textable

    example = phonenumbers.example_number_for_type(
        region, getattr(phonenumbers.PhoneNumberType, kind)
    )
    number = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    with pytest.raises(InvalidSubscriber, match="^phone_type: .*not a mobile"):
        check_textable(number, region)
    mobile = phonenumbers.example_number_for_type("GB", phonenumbers.PhoneNumberType.MOBILE)
    e164 = phonenumbers.format_number(mobile, phonenumbers.PhoneNumberFormat.E164)
    assert check_textable(e164, ("GB",)) == e164
    with pytest.raises(InvalidSubscriber, match="^phone_country"):
        check_textable(e164, "US,CA")


def test_the_allowed_countries_setting_widens_the_form(factory, clock, defs, mailbox):
    client = make_client(factory, clock, defs, mailbox, sms_allowed_countries="us, es")
    assert client.post("/signup", data=dict(ANA, phone="+34 612 345 678")).status_code == 200
    landline = client.post("/signup", data=dict(ANA, phone="+34 911 234 567"))
    assert landline.status_code == 400 and "This one is" in landline.text
    with pytest.raises(SettingsError, match="ISO country codes"):
        load_settings(environment="test", secret_key=SECRET, sms_allowed_countries="US,XX")


def test_the_demo_s_sample_phones_are_mobiles():
    import phonenumbers

    from campaigns.audience.subscribers import check_textable
    from workers.demo import SAMPLE_PEOPLE as PEOPLE

    for person in PEOPLE:
        if person.get("phone"):
            region = phonenumbers.region_code_for_number(phonenumbers.parse(person["phone"]))
            assert check_textable(person["phone"], (region,)) == person["phone"]


def test_a_confirmation_link_expires_but_a_used_one_stays_harmless(client, factory, clock, mailbox):
    client.post("/signup", data=dict(ANA, phone="", channel_sms=""))
    link = confirm_path(mailbox)
    clock.advance(days=8)  # CONFIRMATION_LINK_DAYS is 7
    expired = client.post(link)
    assert expired.status_code == 404
    assert count(factory, Enrollment.id) == 0 and ana(factory).status == "pending"
    client.post("/signup", data=dict(ANA, phone="", channel_sms=""))  # asks again: a new link
    fresh = confirm_path(mailbox)
    assert client.post(fresh).status_code == 200
    clock.advance(days=30)
    assert client.post(fresh).status_code == 200  # clicked again: still confirmed, no change
    assert count(factory, Enrollment.id) == 1


@pytest.mark.parametrize(
    "headers", [{"Origin": "https://evil.example"}, {"Referer": "https://evil.example/x"}, {}]
)
def test_a_sign_up_posted_from_another_site_is_refused(factory, clock, defs, mailbox, headers):
    app = make_client(factory, clock, defs, mailbox).app
    response = TestClient(app).post("/signup", data=ANA, headers=headers)
    assert response.status_code == 403
    assert count(factory, Subscriber.id) == 0 and mailbox == []


def test_subscriber_pages_cannot_be_framed_or_run_foreign_scripts(client):
    page = client.get("/signup")
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    # With "no-referrer" a browser sends our own form with `Origin: null`: refused.
    assert page.headers["referrer-policy"] == "same-origin"
    (script,) = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy  # the form's own script, nothing else


def test_the_confirmation_mail_s_unsubscribe_stops_further_confirmations(
    factory, clock, defs, tmp_path
):
    import email
    from email import policy as email_policy

    client, notify, outbox = notify_path(factory, clock, defs, tmp_path)
    form = dict(ANA, phone="", channel_sms="")
    client.post("/signup", data=form)
    assert notify() == 1
    (eml,) = (outbox.folder / "adhoc").glob("email-*.eml")
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email_policy.default)
    stop = re.search(r"<https://care\.example(/confirm/[\w.-]+/stop)>", parsed["List-Unsubscribe"])[
        1
    ]
    asked = client.get(stop)  # opening the link (a mail scanner does) changes nothing
    assert asked.status_code == 200 and "Stop emails" in asked.text
    with factory() as s:
        assert suppression_for(s, "email", "ana@example.com") is None
    # The mail client's one-click POST comes from no page of ours: no Origin needed.
    assert TestClient(client.app).post(stop).status_code == 200
    with factory() as s:
        assert suppression_for(s, "email", "ana@example.com").reason == "unsubscribed"
    clock.advance(hours=2)
    client.post("/signup", data=form)  # someone types the address in again
    assert notify() == 0
    assert len(list((outbox.folder / "adhoc").glob("email-*.eml"))) == 1


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://["}, {"Referer": "http://[x/"}, {"Origin": "https://care.example:99999"}],
)
def test_a_malformed_origin_is_refused_not_a_crash(factory, clock, defs, mailbox, headers):
    app = make_client(factory, clock, defs, mailbox).app
    response = TestClient(app, raise_server_exceptions=False).post(
        "/signup", data=ANA, headers=headers
    )
    assert response.status_code == 403


def test_without_double_opt_in_a_known_address_still_proves_its_mailbox(
    factory, clock, defs, mailbox
):
    client = make_client(factory, clock, defs, mailbox, double_opt_in=False)
    form = dict(ANA, phone="", channel_sms="")
    client.post("/signup", data=form)  # a new address: enrolled at once, as configured
    sub = ana(factory)
    with transaction(factory) as s:
        unsubscribe(s, clock, s.get(Subscriber, sub.id))
    client.post("/signup", data=form)  # typed again by anyone: no consent, no course back
    with factory() as s:
        assert not has_consent(s, sub.id, "email")
        assert s.get(Subscriber, sub.id).status == "unsubscribed"
        assert [e.status for e in s.scalars(select(Enrollment))] == ["exited"]
