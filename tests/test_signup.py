"""Signing up on the form (double opt-in) and by text, on SQLite and PostgreSQL through the
real FastAPI app: GET never changes state, forged links change nothing, bad input writes
nothing, a second sign-up duplicates nothing, and the page never says who was known."""

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
from settings import ROOT, load_settings
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
    return TestClient(app)


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


def test_an_unsubscribed_address_may_come_back_by_confirming_a_bounced_one_is_not_mailed(
    client, factory, clock, mailbox
):
    client.post("/signup", data=ANA)
    client.post(confirm_path(mailbox))
    sub = ana(factory)
    with transaction(factory) as s:
        unsubscribe(s, clock, s.get(Subscriber, sub.id))
    clock.advance(days=1)
    client.post("/signup", data=ANA)  # asking again sends a new confirmation...
    assert len(mailbox) == 2
    assert ana(factory).status == "unsubscribed"  # ...but changes nothing until it is clicked
    client.post(confirm_path(mailbox))
    with factory() as s:
        assert (
            has_consent(s, sub.id, "email")
            and suppression_for(s, "email", "Ana@example.com") is None
        )
        assert not has_consent(s, sub.id, "sms")  # the form never lifts a text opt-out
        assert s.get(Subscriber, sub.id).status == "active"
        assert [e.status for e in s.scalars(select(Enrollment))] == ["active"]

    with transaction(factory) as s:
        suppress(s, clock, "email", "bo@example.com", "bounce", "sendgrid")
    page = client.post("/signup", data=dict(ANA, email="bo@example.com", phone="", channel_sms=""))
    assert "check your email" in page.text and len(mailbox) == 2  # never mail a bounced address


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
    sub = ana(factory)
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


def test_without_an_immediate_mailer_the_notify_pass_sends_the_confirmation(
    factory, clock, defs, tmp_path
):
    """Production path: the sign-up only records the request; the notify task mails it,
    once per request, and the link in it confirms."""
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
    client = TestClient(create_app(settings, factory=factory, clock=clock))
    assert "check your email" in client.post("/signup", data=ANA).text
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

    assert notify() == 1 and notify() == 0
    (eml,) = (outbox.folder / "adhoc").glob("email-*.eml")
    import email
    from email import policy as email_policy

    parsed = email.message_from_bytes(eml.read_bytes(), policy=email_policy.default)
    text = parsed.get_body(("plain",)).get_content()
    link = re.search(r"https://care\.example(/confirm/[\w.-]+)", text)[1]
    assert client.post(link).status_code == 200 and count(factory, Enrollment.id) == 1
