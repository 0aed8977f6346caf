"""The subscriber pages as a person with one channel or two reads them, in English and
Spanish: what the unsubscribe page names is what it stops, the call request offers only
what reaches the person, invalid links say which page they meant, the colours shipped
hold 4.5:1, every control is labelled, and a test message's links open previews that
record nothing. Through the real FastAPI app on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import re
import shutil
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from campaigns.audience.consent import has_consent
from campaigns.audience.suppression import suppression_for
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.testsend import SendTestRequest, send_test
from campaigns.links import Signer, links_for
from campaigns.models import (
    ConsentRecord,
    ContactRequest,
    Enrollment,
    Event,
    Message,
    Subscriber,
    Suppression,
)
from settings import ROOT, SettingsError, load_settings
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from web.app import create_app
from web.render import TEMPLATES
from workers.providers.outbox import LocalOutbox

BASE = "https://care.example"
SECRET = "s" * 40
ES = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}


def app_client(factory, clock, **overrides) -> TestClient:
    settings = load_settings(
        environment="test",
        secret_key=SECRET,
        public_base_url=BASE,
        definitions_dir=overrides.pop("definitions_dir", FIXTURES / "definitions"),
        templates_dir=overrides.pop("templates_dir", FIXTURES / "templates"),
        **overrides,
    )
    return TestClient(create_app(settings, factory=factory, clock=clock))


@pytest.fixture
def client(factory, clock):
    return app_client(factory, clock)


def person(factory, clock, registry, policy, channel: str | None = None, **who):
    """Enrolled in `tiny` and sent its first step; (subscriber id, links of the message
    on `channel`, or of the first one claimed)."""
    sid, _ = add_and_enroll(factory, clock, registry, policy, **who)
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
        ids = {"email": work.email, "sms": work.sms}
        message_id = (ids[channel] if channel else work.email or work.sms)[0]
        token = s.get(Message, message_id).public_token
    return sid, links_for(BASE, Signer(SECRET.encode()), token)


def path(url: str) -> str:
    return url[len(BASE) :]


def count(factory, model) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model))


# ---------------------------------------------------------------- 1. unsubscribe


def test_a_text_only_person_is_offered_to_stop_texts_and_the_post_stops_them(
    client, factory, clock, registry, policy
):
    sid, links = person(factory, clock, registry, policy, phone="+12025550143", locale="es")
    with transaction(factory) as s:
        s.get(Subscriber, sid).sms_confirmation_requested_at = clock.now()
    page = client.get(path(links.unsubscribe))
    assert page.status_code == 200 and '<html lang="es">' in page.text
    assert "¿Dejar de recibir mensajes de texto de este curso" in page.text
    assert "correo" not in page.text.split("<main>")[1].split("</main>")[0]
    with factory() as s:
        assert has_consent(s, sid, "sms")  # GET changed nothing

    done = client.post(path(links.unsubscribe), data={"scope": "sms"})
    assert done.status_code == 200
    assert "No recibirás más mensajes de texto de Lunara" in done.text
    with factory() as s:
        sub = s.get(Subscriber, sid)
        assert not has_consent(s, sid, "sms")
        assert suppression_for(s, "sms", "+12025550143").reason == "unsubscribed"
        # As a STOP does: a pending "reply YES" cannot lift it, and the course ends.
        assert sub.sms_confirmation_requested_at is None and sub.status == "unsubscribed"
        assert {e.status for e in s.scalars(select(Enrollment))} == {"exited"}
        revoked = s.scalars(select(ConsentRecord).where(ConsentRecord.action == "revoked")).one()
        assert (revoked.channel, revoked.source) == ("sms", "link")
    clock.advance(days=3)  # the text-only step is due: it is never queued
    with transaction(factory) as s:
        assert claim_due(s, clock, registry, policy).sms == []


def test_a_text_s_one_click_post_stops_texts_and_an_email_s_stops_email(
    client, factory, clock, registry, policy
):
    who = {"email": "ana@example.com", "phone": "+12025550143"}
    sid, by_text = person(factory, clock, registry, policy, "sms", **who)
    with factory() as s:
        email_msg = s.scalars(select(Message).where(Message.channel == "email")).one()
    by_email = links_for(BASE, Signer(SECRET.encode()), email_msg.public_token)

    page = client.get(path(by_text.unsubscribe)).text
    assert "Stop receiving text messages about this course" in page
    assert 'value="sms">Stop text messages<' in page
    assert 'value="all" class="secondary">Stop all emails and text messages<' in page
    done = client.post(path(by_text.unsubscribe), data={"List-Unsubscribe": "One-Click"})
    assert "You will get no more text messages" in done.text
    assert "You still get emails" in done.text and path(by_text.preferences) in done.text
    with factory() as s:
        assert has_consent(s, sid, "email") and not has_consent(s, sid, "sms")

    client.post(path(by_email.unsubscribe), data={"List-Unsubscribe": "One-Click"})
    with factory() as s:
        assert not has_consent(s, sid, "email")
        assert s.get(Subscriber, sid).status == "unsubscribed"


def test_a_scope_the_person_has_no_address_for_stops_what_they_have(
    client, factory, clock, registry, policy
):
    sid, links = person(factory, clock, registry, policy, email="bo@example.com")
    page = client.get(path(links.unsubscribe)).text
    assert "text" not in page.split("<main>")[1] and "Stop emails" in page
    client.post(path(links.unsubscribe), data={"scope": "sms"})  # a tampered form
    with factory() as s:
        assert not has_consent(s, sid, "email")


def test_a_person_with_no_address_left_is_told_so_never_a_5xx(
    client, factory, clock, registry, policy
):
    sid, links = person(factory, clock, registry, policy, email="bo@example.com", locale="es")
    with transaction(factory) as s:
        s.get(Subscriber, sid).email = None  # as an erasure leaves the record
    for answer in (
        client.get(path(links.unsubscribe)),
        client.post(path(links.unsubscribe), data={"scope": "all"}),
        client.post(path(links.unsubscribe), data={"List-Unsubscribe": "One-Click"}),
    ):
        assert answer.status_code == 200 and "No tenemos ningún correo" in answer.text
    for url in (links.preferences, links.contact):
        assert client.get(path(url)).status_code == 200


def test_preferences_name_only_the_person_s_channels(client, factory, clock, registry, policy):
    _, links = person(factory, clock, registry, policy, phone="+12025550143")
    page = client.get(path(links.preferences)).text
    assert 'name="sms"' in page and 'name="email"' not in page
    assert "Stop all text messages" in page and "emails" not in page.split("<main>")[1]


# ---------------------------------------------------------------- 2. the call request


def test_an_email_only_person_is_offered_email_or_a_call_with_a_phone_field(
    client, factory, clock, registry, policy
):
    sid, links = person(factory, clock, registry, policy, email="bo@example.com", locale="es")
    page = client.get(path(links.contact)).text
    assert 'value="email" checked' in page and 'value="phone">' in page
    assert 'value="sms"' not in page and 'type="tel" id="phone" name="phone"' in page

    missing = client.post(path(links.contact), data={"preferred_channel": "phone"})
    assert missing.status_code == 400
    assert "Escribe el número de teléfono que debemos usar." in missing.text
    assert 'value="phone" checked' in missing.text and 'aria-invalid="true"' in missing.text
    bad = client.post(
        path(links.contact),
        data={"preferred_channel": "phone", "phone": "12", "note": "por la tarde"},
    )
    assert bad.status_code == 400 and "con su código de área" in bad.text
    assert "por la tarde" in bad.text  # what they wrote is kept
    texts = client.post(path(links.contact), data={"preferred_channel": "sms"})
    assert texts.status_code == 400 and "Elige cómo quieres que te contactemos." in texts.text
    assert count(factory, ContactRequest) == 0

    ok = client.post(
        path(links.contact),
        data={"preferred_channel": "phone", "phone": "(202) 555-0143", "note": "tardes"},
    )
    assert ok.status_code == 200 and "Gracias" in ok.text
    with factory() as s:
        req = s.scalars(select(ContactRequest)).one()
        assert req.preferred_channel == "phone" and req.callback_phone == "+12025550143"
        assert req.note == "tardes"
        assert s.get(Subscriber, sid).phone is None  # a typed number is no proven phone


def test_a_person_with_a_phone_gets_a_call_chosen_and_no_phone_field(
    client, factory, clock, registry, policy
):
    _, links = person(factory, clock, registry, policy, phone="+12025550143")
    page = client.get(path(links.contact)).text
    assert 'value="phone" checked' in page and 'value="sms">' in page
    assert 'value="email"' not in page and 'name="phone"' not in page


@pytest.mark.parametrize(
    "form",
    [
        {"preferred_channel": "email", "note": "x" * 10_000},
        {"preferred_channel": "email", "preferred_time": "y" * 5000, "phone": "9" * 5000},
        {"preferred_channel": "email", "note": "a\x00b"},
        {"preferred_channel": "fax"},
        {"preferred_channel": "phone", "phone": "☎☎☎"},
    ],
)
def test_odd_call_request_input_gets_a_clear_answer_never_a_5xx(
    client, factory, clock, registry, policy, form
):
    _, links = person(factory, clock, registry, policy, email="bo@example.com")
    answer = client.post(path(links.contact), data=form)
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert '<p class="error" id="contact-error" role="alert">' in answer.text


# ---------------------------------------------------------------- 3. invalid links


@pytest.mark.parametrize(
    "url,title_en,title_es",
    [
        ("/m/nonsense.sig", "Your lesson", "Tu clase"),
        ("/u/nonsense.sig", "Unsubscribe", "Cancelar suscripción"),
        ("/p/nonsense.sig", "Your preferences", "Tus preferencias"),
        ("/c/nonsense.sig", "Request a call from our care team", "Pide una llamada"),
        ("/a/nonsense.sig", "How is your pain today?", "¿Cómo está tu dolor hoy?"),
        ("/l/nonsense.sig/abcdefghij", "A link from your lesson", "Un enlace de tu clase"),
        ("/confirm/nonsense.sig", "Confirm your email", "Confirma tu correo"),
        ("/confirm/nonsense.sig/stop", "Stop these emails", "Dejar de recibir estos correos"),
        ("/t/u/nonsense.sig", "Unsubscribe", "Cancelar suscripción"),
        ("/t/zz", "A link from your lesson", "Un enlace de tu clase"),
    ],
)
def test_an_invalid_link_is_titled_for_its_page_in_the_browser_s_language(
    client, url, title_en, title_es
):
    english = client.get(url)
    assert english.status_code == 404 and '<html lang="en">' in english.text
    heading = f"<h1>Link not valid: {title_en}</h1>"
    assert heading in english.text and "This link is not valid" in english.text
    spanish = client.get(url, headers=ES)
    assert spanish.status_code == 404 and '<html lang="es">' in spanish.text
    heading = f"<h1>Enlace no válido: {title_es}"
    assert heading in spanish.text and "Este enlace no es válido" in spanish.text


@pytest.mark.parametrize("token", ["", "x" * 5000, "é.ü", "%00", "a.b.c", "..", "abc." + "=" * 300])
@pytest.mark.parametrize("route", ["/m/", "/u/", "/p/", "/c/", "/a/", "/t/m/", "/t/c/", "/t/a/"])
def test_mangled_tokens_get_the_404_page(client, route, token):
    for method in ("GET", "POST"):
        answer = client.request(method, route + token, data={"scope": "all"})
        assert answer.status_code in (404, 405), (method, route, token, answer.status_code)


@pytest.mark.parametrize(
    "header,lang",
    [
        ("es", "es"),
        ("en-US,en;q=0.9,es;q=0.8", "en"),
        ("fr-FR,es;q=0.7,en;q=0.3", "es"),
        ("de", "en"),
        ("es;q=abc, en;q=0.1", "en"),
        ("", "en"),
    ],
)
def test_the_language_of_a_page_nobody_s_record_tells(header, lang):
    from web.i18n import accepted_lang

    assert accepted_lang(header) == lang


# ---------------------------------------------------------------- 4. colour contrast


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


# Each text colour of page.html, on every background it is shown on.
PAIRS = [
    ("page-fg", "page-bg"),
    ("page-fg", "card-bg"),
    ("muted-fg", "page-bg"),  # the footer
    ("muted-fg", "card-bg"),
    ("link-fg", "page-bg"),
    ("link-fg", "card-bg"),
    ("link-fg", "urgent-bg"),
    ("brand-fg", "brand-bg"),
    ("button-fg", "button-bg"),
    ("button-fg", "secondary-bg"),
    ("urgent-fg", "urgent-bg"),
    ("error-fg", "card-bg"),
    ("preview-fg", "preview-bg"),
]


def test_every_text_colour_shipped_has_at_least_4_5_to_1_contrast():
    assert round(contrast("#7b8794", "#f4f6f8"), 2) == 3.38  # the old footer: the check bites
    css = (TEMPLATES / "page.html").read_text()
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})\s*;", css))
    used = {name for pair in PAIRS for name in pair}
    assert set(colours) - {"urgent-line"} == used  # no colour left unchecked
    low = {f"{fg} on {bg}": round(contrast(colours[fg], colours[bg]), 2) for fg, bg in PAIRS}
    assert all(ratio >= 4.5 for ratio in low.values()), low
    # Every colour of the subscriber pages is one of those variables.
    rules = css.split(":root", 1)[1].split("}", 1)[1]
    assert not re.search(r"#[0-9a-fA-F]{3,6}\b", rules)
    for name in SUBSCRIBER_TEMPLATES:
        assert "style=" not in (TEMPLATES / name).read_text(), name


# ---------------------------------------------------------------- 5. labels


SUBSCRIBER_TEMPLATES = [
    "page.html",
    "notice.html",
    "contact.html",
    "preferences.html",
    "unsubscribe.html",
    "confirm.html",
    "confirm_stop.html",
    "answer.html",
    "signup.html",
]


class Controls(HTMLParser):
    """Form controls, the labels that name them, and radios outside a fieldset's legend."""

    def __init__(self):
        super().__init__()
        self.open: list[str] = []
        self.label_for: set[str] = set()
        self.unlabelled: list[str] = []
        self.legends = 0
        self.loose_radios = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "label" and a.get("for"):
            self.label_for.add(a["for"])
        if tag == "legend":
            self.legends += 1
        if tag in ("input", "select", "textarea"):
            kind = a.get("type", "text")
            if kind in ("hidden", "submit"):
                return
            if kind == "radio" and "fieldset" not in self.open:
                self.loose_radios += 1
            if "label" not in self.open:
                self.unlabelled.append(a.get("id") or a.get("name"))
        if tag not in ("input", "br", "meta", "link", "img"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        if tag in self.open:
            while self.open.pop() != tag:
                pass

    def check(self, page: str) -> None:
        self.feed(page)
        assert [c for c in self.unlabelled if c not in self.label_for] == []
        assert self.loose_radios == 0


def test_every_control_has_a_label_and_radios_a_fieldset_and_legend(
    client, factory, clock, registry, policy
):
    _, links = person(
        factory, clock, registry, policy, email="ana@example.com", phone="+12025550143"
    )
    _, email_only = person(factory, clock, registry, policy, email="bo@example.com")
    contact = client.get(path(links.contact)).text
    assert "<fieldset" in contact and "<legend>How should we contact you?</legend>" in contact
    for url in (links.contact, email_only.contact, links.preferences, links.unsubscribe):
        Controls().check(client.get(path(url)).text)
    for lang in ("en", "es"):
        Controls().check(client.get(f"/signup?lang={lang}").text)


# ---------------------------------------------------------------- 6. zones and errors


def test_spanish_sign_up_names_time_zones_in_spanish(client):
    page = client.get("/signup?lang=es").text
    options = re.findall(r"<option value=\"([^\"]+)\"[^>]*>([^<]+)</option>", page)
    names = {zone: name for zone, name in options if "/" in zone or zone == "UTC"}
    assert names["America/Toronto"] == "hora de Canadá (Toronto)"
    assert names["America/Mexico_City"] == "hora de México (Ciudad de México)"
    assert names["Europe/London"] == "hora de Reino Unido"
    assert names["UTC"] == "Tiempo universal coordinado (UTC)"
    assert all("_" not in name and "/" not in name for name in names.values())
    english = client.get("/signup?lang=en").text
    assert ">Canada (Toronto) Time</option>" in english


def test_spanish_sign_up_errors_are_in_spanish(client):
    form = {"form_locale": "es", "locale": "es", "channel_email": "1", "email": "not-an-email"}
    page = client.post("/signup", data=form, headers={"Origin": BASE})
    assert page.status_code == 400 and "Escribe un correo como nombre@ejemplo.com." in page.text


# ---------------------------------------------------------------- 7. brand, privacy, terms


def test_every_subscriber_page_has_the_brand_bar_and_privacy_and_terms_links(
    client, factory, clock, registry, policy
):
    _, links = person(
        factory, clock, registry, policy, email="ana@example.com", phone="+12025550143"
    )
    urls = [links.contact, links.preferences, links.unsubscribe, f"{BASE}/signup"]
    for lang, headers, privacy in (("en", {}, "Privacy"), ("es", ES, "Privacidad")):
        for url in [*urls, f"{BASE}/signup?lang={lang}", f"{BASE}/u/forged.token"]:
            page = client.get(path(url), headers=headers).text
            assert '<header class="brandbar"><span>Lunara</span></header>' in page
            if "/signup" in url or "forged" in url:
                assert f'<html lang="{lang}">' in page
                assert f'<a href="{BASE}/privacy?lang={lang}">{privacy}</a>' in page
            assert f"{BASE}/terms?lang=" in page


def test_our_own_privacy_and_terms_pages_show_the_legal_folder_s_text(client, tmp_path):
    page = client.get("/privacy?lang=es")
    assert page.status_code == 200 and "<h1>Política de privacidad</h1>" in page.text
    assert "Lunara usa tu nombre" in page.text
    assert "<h1>Terms of use</h1>" in client.get("/terms").text
    assert "<h1>Términos de uso</h1>" in client.get("/terms", headers=ES).text
    assert client.get("/privacy?lang=xx").status_code == 200  # an unknown language: English


def test_production_needs_privacy_and_terms_of_its_own(tmp_path):
    prod = {
        "environment": "production",
        "secret_key": "k7Qp2xV9mZ4rT8wY1nB6cL3sD0fG5hJa",
        "public_base_url": "https://care.lunara.health",
        "postal_address": "Lunara Health, 12 Harbor Road, Portland, ME 04101, USA",
        "care_team_phone": "+12075552368",
        "email_from": "care@lunara.health",
    }
    with pytest.raises(SettingsError, match="PRIVACY_URL is unset and LEGAL_DIR"):
        load_settings(**prod)
    urls = {"privacy_url": "https://lunara.health/privacy", "terms_url": "https://x.org/t"}
    settings = load_settings(**prod, **urls)
    assert settings.privacy_link == "https://lunara.health/privacy"
    own = tmp_path / "legal"
    shutil.copytree(ROOT / "web" / "legal", own)
    assert load_settings(**prod, legal_dir=own).terms_link == "https://care.lunara.health/terms"
    with pytest.raises(SettingsError, match="PRIVACY_URL"):
        load_settings(privacy_url="lunara.health/privacy")
    with pytest.raises(SettingsError, match="LEGAL_DIR"):
        load_settings(legal_dir=tmp_path)


# ---------------------------------------------------------------- 8. read online


@pytest.fixture
def shipped_layout(tmp_path):
    """The fixture course with the shipped layouts (a read-online link and the pixel)."""
    templates = tmp_path / "templates"
    shutil.copytree(FIXTURES / "templates", templates)
    shutil.rmtree(templates / "_layout")
    shutil.copytree(ROOT / "templates" / "_layout", templates / "_layout")
    return templates


def test_the_lesson_read_online_links_to_nothing_of_itself_and_loads_no_pixel(
    factory, clock, registry, policy, shipped_layout
):
    client = app_client(factory, clock, templates_dir=shipped_layout)
    _, links = person(factory, clock, registry, policy, email="ana@example.com", first_name="Ana")
    app = client.app.state
    with factory() as s:
        message = s.scalars(select(Message)).first()
        campaign = app.registry.get("tiny")
        from campaigns.content.rendering import Recipient

        mailed = app.renderer.email(
            campaign, campaign.step(message.step_key), Recipient("Ana", "en"), links
        )
    assert links.read_online in mailed.html and links.open in mailed.html  # the email has both
    online = client.get(path(links.read_online))
    assert online.status_code == 200 and "Hello Ana" in online.text
    assert (
        "/m/" not in online.text and "/o/" not in online.text and "Read online" not in online.text
    )
    assert path(links.unsubscribe) in online.text  # the rest of the footer stays
    assert count(factory, Event) == 1  # the visit's click, and no open


# ---------------------------------------------------------------- 9. test-send


@pytest.fixture
def course_client(factory, clock):
    return app_client(
        factory,
        clock,
        definitions_dir=ROOT / "campaigns" / "definitions",
        templates_dir=ROOT / "templates",
    )


def send_a_test(client, tmp_path, **request):
    app = client.app.state
    outbox = LocalOutbox(tmp_path / "outbox")
    with app.factory() as s:
        results = send_test(
            s,
            app.registry,
            app.renderer,
            app.signer,
            BASE,
            outbox,
            outbox,
            SendTestRequest("hip_and_back", request.pop("steps"), **request),
        )
    return results, outbox.folder / "adhoc"


def rows(factory) -> dict[str, int]:
    models = (Subscriber, Message, Event, ConsentRecord, Suppression, ContactRequest)
    return {m.__name__: count(factory, m) for m in models}


def test_a_test_message_s_links_open_previews_that_record_nothing(course_client, factory, tmp_path):
    client = course_client
    _, adhoc = send_a_test(
        client,
        tmp_path,
        steps=["welcome", "pain_check_start"],
        locale="es",
        email="me@example.com",
        phone="+12025550111",
    )
    parts = [
        part.get_payload(decode=True).decode()
        for p in adhoc.glob("email-*.eml")
        for part in email.message_from_bytes(p.read_bytes()).walk()
        if not part.is_multipart()
    ]
    text = "\n".join(parts + [p.read_text() for p in adhoc.glob("sms-*")])
    urls = set(re.findall(rf"{re.escape(BASE)}/[^\s\"'<>]+", text))
    kinds = {u[len(BASE) :].split("/")[2] for u in urls if u.startswith(f"{BASE}/t/")}
    assert {"m", "c", "p", "u", "o", "a"} <= kinds
    assert all(u.startswith(f"{BASE}/t/") for u in urls), urls  # no real link at all
    before = rows(factory)
    for url in sorted(urls):
        got = client.get(path(url), follow_redirects=False)
        assert got.status_code in (200, 302), url
        if "/t/o/" in url or got.status_code == 302:
            continue
        assert "Vista de prueba: no se guarda nada." in got.text, url
        if any(f"/t/{k}/" in url for k in "cpua"):
            form = {"preferred_channel": "phone", "scope": "all", "value": "3", "sms": "1"}
            posted = client.post(path(url), data=form)
            assert posted.status_code == 200, url
            assert "Vista de prueba: no se cambió nada" in posted.text
    assert rows(factory) == before == {k: 0 for k in before}


def test_a_test_link_acts_on_no_real_page_and_a_real_link_opens_no_preview(
    course_client, factory, clock, registry, policy, tmp_path
):
    client = course_client
    _, adhoc = send_a_test(client, tmp_path, steps=["welcome"], locale="en", phone="+12025550111")
    (sms,) = adhoc.glob("sms-*")
    body = sms.read_text().split("\n\n", 1)[1]  # after the outbox's "To:" line
    assert body.startswith("[TEST] Lunara:")
    test_link = re.search(rf"{re.escape(BASE)}/t/(\w)/(\S+)", body)
    kind, token = test_link.groups()
    assert client.get(f"/{kind}/{token}").status_code == 404
    assert client.post(f"/u/{token}", data={"scope": "all"}).status_code == 404
    _, real = person(factory, clock, registry, policy, email="ana@example.com")
    for url in (real.unsubscribe, real.contact, real.read_online):
        short = path(url)
        assert client.get(f"/t{short}").status_code == 404


def test_test_send_says_where_each_message_went(tmp_path):
    from click.testing import CliRunner

    from settings import Settings
    from workers.cli import main

    db = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    from campaigns.migrate import upgrade

    upgrade(db)
    env = {name.upper(): None for name in Settings.model_fields} | {
        "DATABASE_URL": db,
        "DEFINITIONS_DIR": str(FIXTURES / "definitions"),
        "TEMPLATES_DIR": str(FIXTURES / "templates"),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "BROKER_DIR": str(tmp_path / "broker"),
        "SEQUENCES_SOURCE": "files",  # the fixture course, not lint-clean, is not a revision
    }
    args = ["campaigns", "test-send", "tiny", "hello", "--email", "me@example.com"]
    result = CliRunner().invoke(main, [*args, "--phone", "+12025550111"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("accepted: hello email via outbox to m***@example.com, id ")
    assert lines[1].startswith("accepted: hello sms via outbox to +***11, id ")
    assert "me@example.com" not in result.output and "2025550111" not in result.output
    assert all(not line.endswith("id -") for line in lines)
