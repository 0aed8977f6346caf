"""A check-in question (`asks: pain_score`): asked by email (eleven signed links, a page to
confirm, a POST that records) and by text (a reply that is a number), kept out of logs,
URLs and provider metadata, and reported as a distribution at the start and the end.

Real parts throughout: the send path with the official SendGrid SDK against the local fake,
the FastAPI app, Twilio's signed inbound webhook, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from datetime import timedelta

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from campaigns.audience.consent import has_consent
from campaigns.content.lint import LintContext, lint_campaign
from campaigns.content.rendering import Renderer, Sender
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.sending import SendContext, send_batch
from campaigns.models import Answer, InboxItem, Message
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from campaigns.sequences.questions import QUESTIONS, read_reply
from campaigns.sequences.registry import Registry
from campaigns.states import MessageStatus
from campaigns.tracking import answers
from settings import SettingsError, load_settings
from tests.conftest import FIXTURES
from tests.fakes import FakeSendGrid
from tests.helpers import add_and_enroll
from web.app import create_app
from workers.cli import main
from workers.cli.context import Drip
from workers.providers.outbox import LocalOutbox
from workers.providers.sendgrid import SendGridEmail
from workers.runtime import build_runtime

BASE = "https://care.example"
ROOT = FIXTURES.parent.parent
TOKEN = "twilio-auth-token-for-tests"
SG_KEY = "SG.test-key"
PHONE = "+12025550143"
AUTH = ("admin", "pw-for-the-checkin-tests")
PAIN = QUESTIONS["pain_score"]

CAMPAIGN = """\
key: asking
version: 1
name: {en: "A course that asks", es: "Un curso que pregunta"}
locales: [en, es]
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
steps:
  - key: start_q
    delay: 0m
    channels: [email, sms]
    template: ask
    asks: pain_score
    subject: {en: "A quick question", es: "Una pregunta"}
  - key: lesson
    delay: 1d
    channels: [email]
    template: lesson
    subject: {en: "A lesson", es: "Una lección"}
  - key: end_q
    delay: 1d
    channels: [email]
    fallback: sms
    template: ask
    asks: pain_score
    subject: {en: "One last question", es: "Una última pregunta"}
"""
TEMPLATES = {
    "ask.html": (
        "<p>How is your pain today?</p><p>{% for a in question.answers %}"
        '<a href="{{ a.url }}">{{ a.value }}</a> {% endfor %}</p>'
        "<p>Not read for emergencies: call {{ emergency_number }}.</p>"
    ),
    "ask.txt": (
        "How is your pain today?\n{% for a in question.answers %}{{ a.value }}: {{ a.url }}\n"
        "{% endfor %}Not read for emergencies: call {{ emergency_number }}."
    ),
    "ask.sms.txt": (
        "How is your pain today, 0 (none) to 10 (worst)? Reply with a number. "
        "{{ links.read_online }}"
    ),
    "lesson.html": "<p>A lesson. In an emergency call {{ emergency_number }}.</p>",
    "lesson.txt": "A lesson. In an emergency call {{ emergency_number }}.",
}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def course(tmp_path):
    """The `asking` campaign's files: its YAML and its templates beside the test layouts."""
    definitions, templates = tmp_path / "definitions", tmp_path / "templates"
    definitions.mkdir()
    (definitions / "asking.yaml").write_text(CAMPAIGN, encoding="utf-8")
    shutil.copytree(FIXTURES / "templates" / "_layout", templates / "_layout")
    for locale in ("en", "es"):
        folder = templates / "asking" / locale
        folder.mkdir(parents=True)
        for name, source in TEMPLATES.items():
            (folder / name).write_text(source, encoding="utf-8")
    return definitions, templates


@pytest.fixture
def reg(course):
    return Registry(*course)


@pytest.fixture
def sendgrid():
    with FakeSendGrid(api_key=SG_KEY) as server:
        yield server


@pytest.fixture
def app(factory, clock, course, tmp_path):
    definitions, templates = course
    settings = load_settings(
        environment="test",
        secret_key="k" * 40,
        public_base_url=BASE,
        brand_name="Lunara",
        email_from="care@lunara.example",
        twilio_auth_token=TOKEN,
        definitions_dir=definitions,
        templates_dir=templates,
        broker_dir=tmp_path / "broker",
        admin_password=AUTH[1],
    )
    return create_app(settings, factory=factory, clock=clock)


@pytest.fixture
def client(app):
    return TestClient(app)


@pytest.fixture
def ctx(factory, clock, reg, policy, app, sendgrid, tmp_path, course):
    """The real send path: the app's own signer, SendGrid's SDK against the fake, the
    local outbox for texts."""
    return SendContext(
        factory=factory,
        clock=clock,
        registry=reg,
        renderer=Renderer(course[1], Sender("Lunara", "1 Test Street, Springfield")),
        signer=app.state.signer,
        policy=policy,
        base_url=BASE,
        email_provider=SendGridEmail(
            api_key=SG_KEY,
            host=sendgrid.url,
            from_email="care@lunara.example",
            from_name="Lunara",
            timeout=2.0,
        ),
        sms_provider=LocalOutbox(tmp_path / "outbox"),
    )


def send_due(ctx) -> None:
    with transaction(ctx.factory) as s:
        work = claim_due(s, ctx.clock, ctx.registry, ctx.policy)
    if work.email:
        send_batch(ctx, "email", work.email)
    if work.sms:
        send_batch(ctx, "sms", work.sms)


def sent(factory, step="start_q", channel="email") -> list[Message]:
    with factory() as s:
        return s.scalars(
            select(Message)
            .where(Message.step_key == step, Message.channel == channel)
            .order_by(Message.id)
        ).all()


def answer_rows(factory) -> list[Answer]:
    with factory() as s:
        return s.scalars(select(Answer).order_by(Answer.id)).all()


def answer_links(sendgrid) -> list[str]:
    """The answer links of the question email the fake SendGrid received, in order."""
    html = next(
        c["value"] for c in sendgrid.sent_mails()[-1]["content"] if c["type"] == "text/html"
    )
    return re.findall(r'href="(https://care\.example/a/[^"]+)"', html)


def path_of(url: str) -> str:
    return url.removeprefix(BASE)


def inbound(client, body, sender=PHONE, sid=None):
    params = {
        "MessageSid": sid or "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": "+12025550100",
        "Body": body,
        "NumMedia": "0",
    }
    path = "/webhooks/twilio/inbound"
    signature = RequestValidator(TOKEN).compute_signature(BASE + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def drip(factory, clock, course) -> Drip:
    """The `drip` command's context on this test's database, clock and course."""
    definitions, templates = course
    settings = load_settings(
        environment="test",
        secret_key="k" * 40,
        definitions_dir=definitions,
        templates_dir=templates,
    )
    return Drip.around(build_runtime(settings, factory=factory, clock=clock))


# ---------------------------------------------------------------- the email's links


def test_the_email_carries_eleven_opaque_links_and_nothing_health_related_in_metadata(
    factory, clock, reg, policy, ctx, sendgrid
):
    add_and_enroll(factory, clock, reg, policy, campaign="asking", email="ana@example.com")
    send_due(ctx)
    links = answer_links(sendgrid)
    assert len(links) == 11 and len(set(links)) == 11
    (msg,) = sent(factory)
    # Each link is the message's token and a signature: no value is readable in it.
    tokens = {path_of(u).removeprefix("/a/").rsplit(".", 1)[0] for u in links}
    assert tokens == {msg.public_token}
    assert not any(re.search(r"[/.=](?:10|[0-9])$", u.rsplit(".", 1)[0]) for u in links)
    (p,) = sendgrid.personalizations()
    assert p["custom_args"] == {"drip_ref": msg.public_token}
    assert "categories" not in sendgrid.sent_mails()[-1]
    assert "pain" not in p["subject"].lower()
    assert answer_rows(factory) == []  # sending records no answer


def test_get_shows_the_value_and_records_nothing_post_records_and_replaces(
    factory, clock, reg, policy, ctx, sendgrid, client, caplog
):
    caplog.set_level(logging.DEBUG)
    add_and_enroll(factory, clock, reg, policy, campaign="asking", email="ana@example.com")
    send_due(ctx)
    links = answer_links(sendgrid)
    seven = path_of(links[7])
    for _ in range(2):  # a mail scanner, then the person: GET changes nothing
        page = client.get(seven)
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert "<fieldset>" in page.text and "<legend>" in page.text
        assert 'name="value" value="7" checked' in page.text
        assert page.text.count('type="radio"') == 11
        assert "No one reads these answers for emergencies" in page.text and "911" in page.text
    assert client.head(seven).status_code in (404, 405)  # HEAD is no answer either
    assert answer_rows(factory) == []
    done = client.post(seven, data={"value": "7"})
    assert done.status_code == 200 and "Your answer is saved" in done.text
    (row,) = answer_rows(factory)
    (msg,) = sent(factory)
    assert (row.value, row.via, row.step_key, row.message_id) == (7, "link", "start_q", msg.id)
    assert row.enrollment_id == msg.enrollment_id and row.question == "pain_score"
    client.post(seven, data={"value": "7"})  # pressed twice: one answer, unchanged
    clock.advance(minutes=5)
    client.post(seven, data={"value": "5"})  # changed on the page before saving
    (row,) = answer_rows(factory)
    assert (row.value, row.answered_at) == (5, clock.now())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/a/" in logged  # the requests were logged, by their opaque path only
    assert "value=" not in logged and "value 5" not in logged


@pytest.mark.parametrize("value", ["11", "-1", "abc", "", "7.5", "٧", "1" * 50])
def test_a_value_off_the_scale_is_a_clear_400_and_changes_nothing(
    factory, clock, reg, policy, ctx, sendgrid, client, value
):
    add_and_enroll(factory, clock, reg, policy, campaign="asking", email="ana@example.com")
    send_due(ctx)
    three = path_of(answer_links(sendgrid)[3])
    client.post(three, data={"value": "3"})
    response = client.post(three, data={"value": value})
    assert response.status_code == 400 and "Choose a number from 0 to 10" in response.text
    assert [r.value for r in answer_rows(factory)] == [3]


def test_forged_tampered_and_foreign_tokens_are_404_never_5xx(
    factory, clock, reg, policy, ctx, sendgrid, client, app
):
    add_and_enroll(factory, clock, reg, policy, campaign="asking", email="ana@example.com")
    send_due(ctx)
    links = [path_of(u) for u in answer_links(sendgrid)]
    (msg,) = sent(factory)
    signer = app.state.signer
    token, sig = links[4].removeprefix("/a/").rsplit(".", 1)
    lesson_token = None
    clock.advance(days=1, minutes=1)
    send_due(ctx)
    (lesson,) = sent(factory, "lesson")
    lesson_token = signer.sign_answer(lesson.public_token, 4)  # a step that asks nothing
    bad = [
        f"/a/{token}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",  # one character changed
        f"/a/{token}",  # no signature
        f"/a/.{sig}",
        f"/a/{signer.sign('c', msg.public_token)}",  # the call link's token
        f"/a/{signer.sign_answer(msg.public_token, 11)}",  # signed, but off the scale
        f"/a/{signer.sign_answer('nosuchtoken12345', 4)}",  # no such message
        f"/a/{lesson_token}",
        "/a/" + "x" * 500,
        "/a/%C3%A9t%C3%A9.%00",
        "/a/..%2F..%2Fetc",
    ]
    for path in bad:
        for response in (client.get(path), client.post(path, data={"value": "4"})):
            assert response.status_code == 404, (path, response.status_code)
            assert "This link is not valid" in response.text
    assert answer_rows(factory) == []


def test_the_pages_speak_the_person_s_language(factory, clock, reg, policy, ctx, sendgrid, client):
    add_and_enroll(
        factory, clock, reg, policy, campaign="asking", email="lu@example.com", locale="es"
    )
    send_due(ctx)
    page = client.get(path_of(answer_links(sendgrid)[0]))
    assert '<html lang="es">' in page.text and "Tu dolor hoy, de 0" in page.text
    assert 'value="0" checked' in page.text
    done = client.post(path_of(answer_links(sendgrid)[0]), data={"value": "0"})
    assert "Guardamos tu respuesta" in done.text
    assert [r.value for r in answer_rows(factory)] == [0]


# ---------------------------------------------------------------- text replies


@pytest.mark.parametrize(
    ("body", "value"),
    [
        ("7", 7),
        (" 7 ", 7),
        ("7/10", 7),
        ("7 / 10", 7),
        ("7 out of 10", 7),
        ("7 de 10", 7),
        ("7.", 7),
        ("0", 0),
        ("10", 10),
        ("10/10!", 10),
        ("siete", 7),
        ("Seven", 7),
        ("cero", 0),
        ("DIEZ", 10),
        ("７", 7),  # a full-width digit
    ],
)
def test_a_reply_that_is_one_number_of_the_scale_reads_as_it(body, value):
    assert read_reply(PAIN, body) == value


@pytest.mark.parametrize(
    "body",
    ["11", "-1", "7.5", "6-7", "7 or 8", "about 6", "7/5", "7 but worse at night", "", "  ", "x"],
)
def test_anything_else_is_not_an_answer(body):
    assert read_reply(PAIN, body) is None


def test_a_text_reply_is_recorded_thanked_without_the_value_and_kept_out_of_logs(
    factory, clock, reg, policy, ctx, client, caplog
):
    caplog.set_level(logging.DEBUG)
    add_and_enroll(factory, clock, reg, policy, campaign="asking", phone=PHONE)
    send_due(ctx)
    (question,) = sent(factory, channel="sms")
    assert question.status == MessageStatus.SENT
    clock.advance(hours=2)
    response = inbound(client, " 7 / 10 ")
    assert response.status_code == 200
    assert "Thank you, your answer is saved" in response.text and "911" in response.text
    assert "7" not in response.text.replace("911", "")  # never echoed back
    (row,) = answer_rows(factory)
    assert (row.value, row.via, row.message_id) == (7, "text", question.id)
    inbound(client, "siete")  # a second answer replaces the first
    (row,) = answer_rows(factory)
    assert row.value == 7 and row.event_id is not None
    inbound(client, "3")
    assert [r.value for r in answer_rows(factory)] == [3]
    with factory() as s:
        assert s.scalars(select(InboxItem)).all() == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("7 / 10", "siete", "answer 3", "value=3", "value 3"):
        assert secret not in logged
    assert PHONE not in logged  # and the phone is masked


def test_stop_still_wins_and_help_still_answers(factory, clock, reg, policy, ctx, client):
    sid, _ = add_and_enroll(factory, clock, reg, policy, campaign="asking", phone=PHONE)
    send_due(ctx)
    assert "Emergency? Call 911 now." in inbound(client, "HELP").text
    inbound(client, "STOP")
    with factory() as s:
        assert not has_consent(s, sid, "sms")
        assert s.scalars(select(InboxItem)).all() == []
    assert answer_rows(factory) == []


def test_words_go_to_the_inbox_with_the_question_beside_them(
    factory, clock, reg, policy, ctx, client, course
):
    add_and_enroll(factory, clock, reg, policy, campaign="asking", phone=PHONE, first_name="Ana")
    send_due(ctx)
    (question,) = sent(factory, channel="sms")
    assert inbound(client, "about 8, worse at night").text.endswith("<Response />")
    with factory() as s:
        (item,) = s.scalars(select(InboxItem)).all()
    assert item.question_message_id == question.id
    page = client.get("/admin/inbox", auth=AUTH)
    assert "about 8, worse at night" in page.text
    assert "May answer the check-in question asking/start_q" in page.text
    assert answer_rows(factory) == []
    listed = CliRunner().invoke(main, ["inbox"], obj=drip(factory, clock, course))
    assert "about 8, worse at night" in listed.output
    assert "(may answer the check-in question asking/start_q, sent 2026-03-02 15:00 UTC)" in (
        listed.output
    )


def test_a_number_long_after_the_question_is_for_a_person(factory, clock, reg, policy, ctx, client):
    add_and_enroll(factory, clock, reg, policy, campaign="asking", phone=PHONE)
    send_due(ctx)
    clock.advance(days=3, minutes=1)  # QUESTION_REPLY_DAYS: 3
    inbound(client, "4")
    with factory() as s:
        (item,) = s.scalars(select(InboxItem)).all()
    assert (item.body, item.question_message_id) == ("4", None)
    assert answer_rows(factory) == []


def test_a_stranger_s_number_is_for_a_person(factory, clock, client):
    inbound(client, "5", sender="+12025550199")
    with factory() as s:
        (item,) = s.scalars(select(InboxItem)).all()
    assert item.subscriber_id is None and item.question_message_id is None
    assert answer_rows(factory) == []


# ---------------------------------------------------------------- the report


def test_the_report_shows_the_start_and_the_end_and_the_change(
    factory, clock, reg, policy, ctx, app, course
):
    start = [8, 6, 6, 3, 9, None]
    end = [4, 6, 7, 1, None, 2]
    for n in range(6):
        add_and_enroll(factory, clock, reg, policy, campaign="asking", email=f"p{n}@example.com")
    send_due(ctx)
    clock.advance(days=1, minutes=1)
    send_due(ctx)
    clock.advance(days=1, minutes=1)
    send_due(ctx)
    for step, values in (("start_q", start), ("end_q", end)):
        with transaction(factory) as s:
            for msg, value in zip(
                s.scalars(
                    select(Message).where(Message.step_key == step).order_by(Message.id)
                ).all(),
                values,
                strict=True,
            ):
                if value is not None:
                    asked = answers.Asked(msg, reg.get("asking").step(step))
                    answers.record(s, clock, asked, value, answers.VIA_LINK)
    obj = drip(factory, clock, course)
    as_json = CliRunner().invoke(main, ["report", "asking", "--json"], obj=obj)
    assert as_json.exit_code == 0, as_json.output
    got = json.loads(as_json.output)["answers"]
    zeros = {str(v): 0 for v in range(11)}
    assert got["steps"] == [
        {
            "step": "start_q",
            "position": 1,
            "question": "pain_score",
            "answered": 5,
            "counts": {**zeros, "3": 1, "6": 2, "8": 1, "9": 1},
            "median": 6,
        },
        {
            "step": "end_q",
            "position": 3,
            "question": "pain_score",
            "answered": 5,
            "counts": {**zeros, "1": 1, "2": 1, "4": 1, "6": 1, "7": 1},
            "median": 4,
        },
    ]
    # Four people answered both: -4, 0, +1, -2.
    assert got["change"] == {
        "first_step": "start_q",
        "last_step": "end_q",
        "people": 4,
        "median": -1.0,
        "lower": 2,
        "same": 1,
        "higher": 1,
    }
    text = CliRunner().invoke(main, ["report", "asking"], obj=obj).output
    assert "check-in answers" in text
    assert re.search(r"1\s+start_q\s+5\s+0\s+0\s+0\s+1\s+0\s+0\s+2\s+0\s+1\s+1\s+0\s+6\b", text)
    assert (
        "change from start_q to end_q, 4 people who answered both: median -1; "
        "lower 2, same 1, higher 1"
    ) in text
    page = TestClient(app).get("/admin/campaigns/asking", auth=AUTH)
    assert page.status_code == 200
    part = page.text.split('<h2 id="answers">', 1)[1]
    assert part.lstrip().startswith('Check-in answers</h2>\n<div class="wide"')
    assert "4 people answered both: median change -1" in part


def test_a_course_that_asks_nothing_has_no_answers_part(factory, clock, registry):
    from campaigns.reporting.funnels import campaign_report

    with factory() as s:
        assert campaign_report(s, registry, "tiny").answers is None


# ---------------------------------------------------------------- the sequence file


def test_an_unknown_question_is_an_error_naming_the_step_and_field(course):
    definitions, templates = course
    path = definitions / "asking.yaml"
    path.write_text(CAMPAIGN.replace("asks: pain_score", "asks: mood", 1), encoding="utf-8")
    with pytest.raises(DefinitionError) as info:
        parse_campaign(path, templates)
    assert "step 1 (start_q)" in str(info.value) and "asks" in str(info.value)
    assert "unknown question 'mood'" in str(info.value)


def test_lint_wants_every_answer_link_and_the_scale_in_the_text(course, reg):
    definitions, templates = course
    ctx = LintContext(templates, BASE, "Lunara", "1 Test Street, Springfield")

    def question_errors(campaign) -> list[str]:
        # The test layouts lack the footer the lint wants; only the question's checks here.
        return [
            str(f)
            for f in lint_campaign(campaign, ctx)
            if f.severity == "error" and ("answer links" in f.message or "scale" in f.message)
        ]

    assert question_errors(reg.get("asking")) == []
    for locale in ("en", "es"):
        folder = templates / "asking" / locale
        (folder / "ask.html").write_text(
            TEMPLATES["ask.html"].replace("question.answers", "question.answers[:10]"),
            encoding="utf-8",
        )
        (folder / "ask.sms.txt").write_text(
            "How is your pain today? Reply. {{ links.read_online }}", encoding="utf-8"
        )
    broken = Registry(definitions, templates).get("asking")
    errors = question_errors(broken)
    assert any("HTML part is missing the answer links for 10" in e for e in errors)
    assert any("a question's text must give its scale (0 to 10)" in e for e in errors)
    assert {e.split(": ")[2].split()[-1] for e in errors} == {"en", "es"}


def test_the_shipped_course_asks_at_the_start_and_the_end():
    campaign = parse_campaign(
        ROOT / "campaigns" / "definitions" / "hip_and_back.yaml", ROOT / "templates"
    )
    asking = [s for s in campaign.steps if s.question is not None]
    assert [(s.key, s.index) for s in asking] == [
        ("pain_check_start", 1),
        ("pain_check_end", len(campaign.steps) - 1),
    ]
    assert all(s.question.key == "pain_score" and s.fallback == "sms" for s in asking)
    assert all(s.delay == timedelta(0) for s in asking)


def test_the_sms_reply_window_is_a_setting():
    assert load_settings(environment="test", secret_key="k" * 40).question_reply_days == 3
    with pytest.raises(SettingsError, match="QUESTION_REPLY_DAYS"):
        load_settings(environment="test", secret_key="k" * 40, question_reply_days=0)


def test_simulate_sends_a_question_right_after_a_skipped_lesson_on_time():
    """In the shipped course the end question follows the last lesson with no delay; for
    someone who asked for a call that lesson is skipped, and the question still goes at
    once (a tick that only skipped used to end the moment)."""
    result = CliRunner().invoke(main, ["simulate", "hip_and_back", "--joined", "2026-03-02 15:00"])
    assert result.exit_code == 0, result.output
    maria = result.output.split("\nMaria:")[1].split("\n\n")[0]
    assert "next_step          email    Mon 30 Mar 11:00 PDT  -" in maria
    assert re.search(r"pain_check_end +email +Mon 30 Mar 11:00 PDT +Mon 30 Mar 11:00:00", maria)
    assert "LATE" not in result.output
