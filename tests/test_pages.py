"""The pages behind every link: GET never changes state, POST does, forged tokens change
nothing; on SQLite and PostgreSQL through the real FastAPI app."""

import shutil

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from campaigns.audience.consent import has_consent
from campaigns.audience.suppression import suppress, suppression_for
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.sending import send_batch
from campaigns.links import Signer, links_for
from campaigns.models import ContactRequest, Enrollment, Event, Message, Subscriber
from campaigns.states import EventType, MessageStatus
from settings import load_settings
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from web.app import create_app

BASE = "https://care.example"
SECRET = "p" * 40


@pytest.fixture
def defs(tmp_path):
    shutil.copytree(FIXTURES / "definitions", tmp_path / "definitions")
    return tmp_path / "definitions"


@pytest.fixture
def client(factory, clock, defs):
    settings = load_settings(
        environment="test",
        secret_key=SECRET,
        public_base_url=BASE,
        definitions_dir=defs,
        templates_dir=FIXTURES / "templates",
    )
    return TestClient(create_app(settings, factory=factory, clock=clock))


@pytest.fixture
def sent(factory, clock, registry, policy):
    """Ana got the first step by email and text; returns (subscriber id, email message, links)."""
    sid, _ = add_and_enroll(
        factory,
        clock,
        registry,
        policy,
        email="ana@example.com",
        phone="+12025550143",
        first_name="Ana",
        locale="es",
    )
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
        msg = s.get(Message, work.email[0])
        msg.status = MessageStatus.SENT
    links = links_for(BASE, Signer(SECRET.encode()), msg.public_token)
    return sid, msg, links


def path(url):
    return url[len(BASE) :]


def events(factory, kind):
    with factory() as s:
        return s.scalar(select(func.count(Event.id)).where(Event.type == kind))


def test_read_online_shows_the_lesson_and_counts_a_click(client, sent, factory):
    _, _, links = sent
    page = client.get(path(links.read_online))
    assert page.status_code == 200 and "Hello Ana, this is lesson 1." in page.text
    assert page.headers["cache-control"] == "no-store"
    assert events(factory, EventType.CLICKED) == 1


def test_a_scanner_s_open_is_recorded_as_automated(client, sent, factory):
    _, _, links = sent
    client.get(path(links.open), headers={"User-Agent": "Mozilla/5.0 (compatible; Bingbot)"})
    client.get(path(links.open), headers={"User-Agent": "Mozilla/5.0 (iPhone)"})
    with factory() as s:
        flags = s.scalars(select(Event.automated).order_by(Event.id)).all()
    assert flags == [True, False]


@pytest.mark.parametrize("route", ["/m/", "/u/", "/p/", "/c/"])
def test_forged_or_mangled_token_is_refused_and_changes_nothing(client, sent, factory, route):
    _, msg, _ = sent
    forged = Signer(b"someone-else").sign(route.strip("/"), msg.public_token)
    for token in (forged, msg.public_token, "nonsense"):
        assert client.get(route + token).status_code == 404
        posted = client.post(route + token, data={"scope": "all"})
        assert posted.status_code == (405 if route == "/m/" else 404)
    with factory() as s:
        assert s.scalar(select(func.count(Event.id))) == 0
        assert suppression_for(s, "email", "ana@example.com") is None


def test_unsubscribe_page_does_not_unsubscribe_on_get(client, sent, factory):
    sid, _, links = sent
    page = client.get(path(links.unsubscribe))
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert "¿Dejar de recibir correos" in page.text  # in the subscriber's language
    with factory() as s:
        assert has_consent(s, sid, "email")


def test_one_click_unsubscribe_post_stops_the_next_email(
    client, sent, factory, send_ctx, clock, registry, policy
):
    sid, _, links = sent
    done = client.post(path(links.unsubscribe), data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    with factory() as s:
        assert not has_consent(s, sid, "email") and has_consent(s, sid, "sms")
        assert suppression_for(s, "email", "ana@example.com").reason == "unsubscribed"
    clock.advance(days=1)
    with transaction(factory) as s:
        nxt = claim_due(s, clock, registry, policy)
    assert nxt.email == []  # already suppressed when claimed
    assert send_batch(send_ctx, "email", nxt.email).sent == 0


def test_unsubscribe_from_everything_ends_the_course(client, sent, factory):
    sid, msg, links = sent
    client.post(path(links.unsubscribe), data={"scope": "all"})
    with factory() as s:
        assert s.get(Subscriber, sid).status == "unsubscribed"
        assert s.get(Enrollment, msg.enrollment_id).status == "exited"


def test_preferences_turn_texts_off_and_on_again(client, sent, factory):
    sid, _, links = sent
    form = client.get(path(links.preferences))
    assert (
        'name="email" value="1" checked' in form.text
        and 'name="sms" value="1" checked' in form.text
    )
    client.post(path(links.preferences), data={"email": "1"})
    with factory() as s:
        assert has_consent(s, sid, "email") and not has_consent(s, sid, "sms")
        assert suppression_for(s, "sms", "+12025550143") is not None
    client.post(path(links.preferences), data={"email": "1", "sms": "1"})
    with factory() as s:
        assert has_consent(s, sid, "sms") and suppression_for(s, "sms", "+12025550143") is None


def test_bounced_address_cannot_be_turned_back_on(client, sent, factory, clock):
    sid, _, links = sent
    client.post(path(links.preferences), data={"sms": "1"})  # email off
    with transaction(factory) as s:
        s.delete(suppression_for(s, "email", "ana@example.com"))
        suppress(s, clock, "email", "ana@example.com", "bounce", "sendgrid")
    page = client.post(path(links.preferences), data={"email": "1", "sms": "1"})
    assert "no se pudieron entregar" in page.text
    with factory() as s:
        assert not has_consent(s, sid, "email")


def test_contact_request_is_recorded_once_and_updated(client, sent, factory):
    sid, msg, links = sent
    assert "Pide una llamada" in client.get(path(links.contact)).text
    client.post(
        path(links.contact), data={"preferred_channel": "phone", "preferred_time": "mañanas"}
    )
    client.post(path(links.contact), data={"preferred_channel": "sms", "note": "gracias"})
    with factory() as s:
        (req,) = s.scalars(select(ContactRequest)).all()
        assert (req.subscriber_id, req.preferred_channel, req.preferred_time, req.status) == (
            sid,
            "sms",
            "mañanas",  # the second ask named no time: the first one's stands
            "open",
        )
        assert req.note == "[asked again 2026-03-02 15:00 UTC; prefers sms (was phone)] gracias"
        assert req.step_key == msg.step_key
    assert events(factory, EventType.CONTACT_REQUESTED) == 2


def test_call_request_page_gives_the_care_team_phone_hours_promise_and_emergency(
    client, sent, factory
):
    sid, _, links = sent  # Ana reads Spanish; her phone is American
    page = client.get(path(links.contact)).text
    assert 'href="tel:+18005550199"' in page and "+1 800-555-0199" in page
    assert "de lunes a viernes, de 8:00" in page and "un día hábil" in page
    assert "no es para emergencias" in page and "llama al 911" in page.lower()
    # Moved to Madrid: a Spanish mobile number, and the page names 112 instead.
    with transaction(factory) as s:
        s.get(Subscriber, sid).phone = "+34611223344"
    page = client.get(path(links.contact)).text
    assert "112" in page and "911" not in page
    done = client.post(path(links.contact), data={"preferred_channel": "phone"}).text
    assert "un día hábil" in done and "112" in done and "911" not in done


def test_asking_again_keeps_every_note_and_time(client, sent, factory):
    _, _, links = sent
    first = {"preferred_channel": "phone", "preferred_time": "mornings", "note": "my knee too"}
    client.post(path(links.contact), data=first)
    client.post(
        path(links.contact),
        data={"preferred_channel": "phone", "preferred_time": "after 5pm", "note": "any day"},
    )
    with factory() as s:
        (req,) = s.scalars(select(ContactRequest)).all()
    assert req.preferred_time == "after 5pm"
    assert req.note.splitlines() == [
        "my knee too",
        "[asked again 2026-03-02 15:00 UTC; best time after 5pm (was mornings)] any day",
    ]


def test_contact_request_with_an_unknown_channel_is_refused(client, sent, factory):
    _, _, links = sent
    assert client.post(path(links.contact), data={"preferred_channel": "fax"}).status_code == 400
    with factory() as s:
        assert s.scalar(select(func.count(ContactRequest.id))) == 0


def test_campaign_can_pause_the_course_when_someone_asks_for_a_call(client, sent, factory, defs):
    (defs / "tiny.yaml").write_text(
        (defs / "tiny.yaml")
        .read_text()
        .replace("name: Tiny test course", "name: Tiny test course\non_contact_request: pause")
    )
    _, msg, links = sent
    client.post(path(links.contact), data={"preferred_channel": "phone"})
    with factory() as s:
        e = s.get(Enrollment, msg.enrollment_id)
        assert (e.status, e.exit_reason) == ("paused", "asked to be contacted")


def test_open_pixel_records_an_open_and_never_errors(client, sent, factory):
    _, _, links = sent
    assert client.get(path(links.open)).headers["content-type"] == "image/gif"
    assert client.get("/o/forged.token").headers["content-type"] == "image/gif"
    assert events(factory, EventType.OPENED) == 1


def test_care_team_is_told_without_personal_detail(client, sent, factory, clock, outbox):
    from campaigns.care.notifications import announce_contact_requests

    _, _, links = sent
    client.post(path(links.contact), data={"preferred_channel": "phone", "note": "my knee and hip"})
    assert (
        announce_contact_requests(factory, clock, outbox, None, BASE, "Lunara") == 0
    )  # no inbox set
    assert (
        announce_contact_requests(factory, clock, outbox, "team@lunara.example", BASE, "Lunara")
        == 1
    )
    assert (
        announce_contact_requests(factory, clock, outbox, "team@lunara.example", BASE, "Lunara")
        == 0
    )
    (notice,) = (outbox.folder / "adhoc").glob("email-*.eml")
    text = notice.read_text()
    assert "/admin/contact-requests" in text
    assert "knee" not in text and "Ana" not in text and "2025550143" not in text


def test_paused_course_resumes_when_the_care_team_handles_the_request(
    client, sent, factory, defs, clock
):
    from campaigns.care.contact_queue import mark

    (defs / "tiny.yaml").write_text(
        (defs / "tiny.yaml")
        .read_text()
        .replace("name: Tiny test course", "name: Tiny test course\non_contact_request: pause")
    )
    _, msg, links = sent
    client.post(path(links.contact), data={"preferred_channel": "phone"})
    with transaction(factory) as s:
        (req,) = s.scalars(select(ContactRequest)).all()
        mark(s, clock, req.id, "contacted", by="nurse.kim")
    with factory() as s:
        assert s.get(Enrollment, msg.enrollment_id).status == "active"


def test_unsubscribing_by_link_is_counted_against_the_step(client, sent, factory):
    _, msg, links = sent
    client.post(path(links.unsubscribe), data={"List-Unsubscribe": "One-Click"})
    with factory() as s:
        (event,) = s.scalars(select(Event).where(Event.type == EventType.UNSUBSCRIBED)).all()
        assert event.message_id == msg.id


def test_a_notice_that_failed_for_a_moment_is_sent_on_the_next_pass(client, sent, factory, clock):
    from campaigns.care.notifications import announce_contact_requests
    from campaigns.delivery.providers import Outcome, SendResult

    class Flaky:
        name = "flaky"

        def __init__(self):
            self.answers = [Outcome.TRANSIENT, Outcome.ACCEPTED]

        def send_emails(self, emails):
            return [SendResult(0, self.answers.pop(0))]

    _, _, links = sent
    client.post(path(links.contact), data={"preferred_channel": "phone"})
    flaky = Flaky()
    assert (
        announce_contact_requests(factory, clock, flaky, "team@lunara.example", BASE, "Lunara") == 0
    )
    assert (
        announce_contact_requests(factory, clock, flaky, "team@lunara.example", BASE, "Lunara") == 1
    )
    assert flaky.answers == []
