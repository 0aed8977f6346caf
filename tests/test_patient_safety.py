"""Patient safety in the shipped course: the right emergency number for each country, the
warning signs and every lesson for people who only get texts, and a help path that names
a phone number, hours and a promise. Real pipeline (claim, compose, send to the local
outbox) on SQLite and PostgreSQL."""

import csv
import re
from dataclasses import replace

import pytest
from phonenumbers import shortnumberinfo
from sqlalchemy import func, select

from campaigns.audience.emergency import (
    TABLE,
    country_of_phone,
    country_of_zone,
    emergency_number,
    numbers,
)
from campaigns.audience.opt_outs import unsubscribe
from campaigns.content.care_team import EXAMPLE, CareTeam
from campaigns.content.rendering import Recipient, Renderer, Sender
from campaigns.content.sms_text import is_gsm7, segments
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due, release_waiting
from campaigns.delivery.sending import SendContext, send_batch
from campaigns.links import Signer, links_for
from campaigns.models import Enrollment, Message, Subscriber
from campaigns.sequences.registry import Registry
from campaigns.states import Channel, EnrollmentStatus, MessageStatus
from campaigns.tracking.inbound import HelpDesk, InboundText, handle_inbound_sms
from settings import ROOT
from tests.helpers import add_and_enroll
from workers.providers.outbox import LocalOutbox

COURSE = "hip_and_back"
SENDER = Sender("Lunara", "Lunara Care, 100 Main Street, Springfield, IL 62701, USA")


@pytest.fixture
def shipped():
    return Registry(ROOT / "campaigns" / "definitions", ROOT / "templates")


@pytest.fixture
def course_ctx(factory, clock, shipped, policy, tmp_path):
    return SendContext(
        factory=factory,
        clock=clock,
        registry=shipped,
        renderer=Renderer(ROOT / "templates", SENDER),
        signer=Signer(b"test-secret-key-for-links-0123456789"),
        policy=policy,
        base_url="https://care.example",
        email_provider=LocalOutbox(tmp_path / "outbox"),
        sms_provider=LocalOutbox(tmp_path / "outbox"),
    )


def run_course(ctx: SendContext, max_rounds: int = 200) -> None:
    """Claim and send until nobody is left in the course, jumping the clock to the next
    moment anything is due (a step, or a text held for the text hours)."""
    for _ in range(max_rounds):
        with transaction(ctx.factory) as s:
            work = claim_due(s, ctx.clock, ctx.registry, ctx.policy)
            work.sms += release_waiting(s, ctx.clock).sms
        send_batch(ctx, "email", work.email)
        send_batch(ctx, "sms", work.sms)
        with ctx.factory() as s:
            due = s.scalar(
                select(func.min(Enrollment.next_due_at)).where(
                    Enrollment.status == EnrollmentStatus.ACTIVE
                )
            )
            held = s.scalar(
                select(func.min(Message.next_attempt_at)).where(
                    Message.status == MessageStatus.DEFERRED
                )
            )
        upcoming = [t for t in (due, held) if t is not None]
        if not upcoming:
            return
        ctx.clock.current = max(ctx.clock.now(), min(upcoming))
    raise AssertionError("the course did not finish")


def sent(factory, subscriber_id, channel):
    """(step key, body) of what went to one person on one channel, in order."""
    with factory() as s:
        rows = s.scalars(
            select(Message)
            .where(
                Message.subscriber_id == subscriber_id,
                Message.channel == channel,
                Message.status == MessageStatus.SENT,
            )
            .order_by(Message.id)
        ).all()
        return [(m.step_key, m.id) for m in rows]


def skipped_by_condition(factory, subscriber_id):
    """The steps that did not go to this person because their condition did not hold."""
    with factory() as s:
        return s.scalars(
            select(Message.step_key)
            .where(Message.subscriber_id == subscriber_id, Message.reason_code == "condition")
            .order_by(Message.id)
        ).all()


def text_body(ctx, message_id):
    path = ctx.sms_provider.folder / "sms" / f"{message_id:08d}.txt"
    return path.read_text().split("\n\n", 1)[1].strip()


def email_text(ctx, message_id):
    from email import message_from_bytes, policy

    path = ctx.email_provider.folder / "email" / f"{message_id:08d}.eml"
    msg = message_from_bytes(path.read_bytes(), policy=policy.default)
    return msg["Subject"], msg.get_body(("plain",)).get_content()


def help_now_text(locale: str, number: str) -> str:
    """The shared short form of the warning signs, as a text carries it."""
    renderer = Renderer(ROOT / "templates", SENDER)
    source = renderer.text_env.get_template(f"_partials/{locale}/help_now.sms.txt")
    return re.sub(r"\s+", " ", source.render(emergency_number=number)).strip()


# The table ---------------------------------------------------------------------------


def test_every_emergency_number_in_the_table_is_one_libphonenumber_knows():
    lines = [line for line in TABLE.read_text().splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(lines))
    assert len(rows) >= 60
    wrong = [
        (r["country"], r["number"])
        for r in rows
        if not shortnumberinfo.is_emergency_number(r["number"], r["country"])
    ]
    assert wrong == []
    assert numbers()["US"] == "911" and numbers()["ES"] == "112" and numbers()["AU"] == "000"


def test_country_comes_from_the_phone_then_the_time_zone_then_the_default():
    assert country_of_phone("+34611223344") == "ES"
    assert country_of_phone("+919876543210") == "IN"
    assert country_of_phone("+61491570006") == "AU"
    assert country_of_phone("+882351234567") is None  # non-geographic (satellite)
    assert country_of_phone("not a number") is None
    assert country_of_zone("Asia/Kolkata") == "IN"
    assert country_of_zone("Australia/Sydney") == "AU"
    assert country_of_zone("Nowhere/Else") is None
    assert emergency_number(None, "GB") == "999"
    # A country missing from the table gets 112, which every mobile phone dials anywhere.
    assert "NG" not in numbers() and emergency_number("NG", "US") == "112"


# Through the pipeline -----------------------------------------------------------------


def test_madrid_kolkata_sydney_and_new_york_each_see_their_own_number(
    factory, clock, shipped, policy, course_ctx
):
    people = {
        # Madrid: email only, known by time zone. Kolkata: text only, known by phone.
        "Lucia": dict(email="lucia@example.com", timezone="Europe/Madrid", locale="es"),
        "Priya": dict(phone="+919876543210", timezone="Asia/Kolkata"),
        "Lee": dict(email="lee@example.com", phone="+61491570006", timezone="Australia/Sydney"),
        "James": dict(email="james@example.com", timezone="America/New_York"),
    }
    ids = {
        name: add_and_enroll(factory, clock, shipped, policy, COURSE, first_name=name, **fields)[0]
        for name, fields in people.items()
    }
    run_course(course_ctx)
    expected = {"Lucia": "112", "Priya": "112", "Lee": "000", "James": "911"}
    for name, number in expected.items():
        others = {"911", "112", "000"} - {number}
        bodies = [email_text(course_ctx, mid)[1] for _, mid in sent(factory, ids[name], "email")]
        bodies += [text_body(course_ctx, mid) for _, mid in sent(factory, ids[name], "sms")]
        assert bodies, name
        told = [b for b in bodies if re.search(rf"(?<!\d){number}(?!\d)", b)]
        assert told, f"{name} is never told to call {number}"
        for body in bodies:
            wrong = [o for o in others if re.search(rf"(?<!\d){o}(?!\d)", body)]
            assert not wrong, f"{name} is told to call {wrong}: {body[:300]}"
    # Every email carries the person's number in its footer.
    for _, mid in sent(factory, ids["Lucia"], "email"):
        assert "112" in email_text(course_ctx, mid)[1].split("\n--\n")[-1]


def test_a_text_only_person_gets_all_eleven_lessons_in_order_with_the_warning_signs(
    factory, clock, shipped, policy, course_ctx
):
    course = shipped.get(COURSE)
    sid, _ = add_and_enroll(
        factory, clock, shipped, policy, COURSE, phone="+12025550143", first_name="Ana"
    )
    run_course(course_ctx)
    texts = sent(factory, sid, "sms")
    # Every lesson; not the diagnosis lesson's text version for an email reader who did
    # not open it (it is for people with email and text: hers came by text already).
    # The check-in question at the start and the end comes by text too.
    lessons = [s.key for s in course.steps if s.key != "diagnosis_by_text"]
    assert [key for key, _ in texts] == lessons and len(lessons) == 13
    assert [k for k in lessons if course.step(k).question] == ["pain_check_start", "pain_check_end"]
    assert skipped_by_condition(factory, sid) == ["diagnosis_by_text"]
    bodies = [text_body(course_ctx, mid) for _, mid in texts]
    # Numbered on this channel as this person gets them: Lesson 1 of 9 ... 9 of 9.
    numbers_seen = [int(m[1]) for b in bodies if (m := re.search(r"Lesson (\d+) of 9", b))]
    assert numbers_seen == list(range(1, 10))
    signs = help_now_text("en", "911")
    for key in ("welcome", "diagnosis", "next_step"):
        body = bodies[lessons.index(key)]
        assert signs in body, f"{key} lacks the warning signs"
    assert "rates may apply" in bodies[0].lower()
    for body in bodies:
        assert is_gsm7(body)
        # The whole lesson online, or (the last one) the page to ask for a call.
        assert re.search(r"https://care\.example/[mc]/", body)
    with factory() as s:
        assert s.scalar(select(Enrollment.status).where(Enrollment.subscriber_id == sid)) == (
            EnrollmentStatus.COMPLETED
        )


def test_texts_beside_emails_stay_companions_and_emails_number_the_lessons(
    factory, clock, shipped, policy, course_ctx
):
    course = shipped.get(COURSE)
    sid, _ = add_and_enroll(
        factory,
        clock,
        shipped,
        policy,
        COURSE,
        email="sam@example.com",
        phone="+12025550144",
        first_name="Sam",
    )
    run_course(course_ctx)
    emails = sent(factory, sid, "email")
    assert [k for k, _ in emails] == [s.key for s in course.steps if Channel.EMAIL in s.channels]
    subjects = [email_text(course_ctx, mid)[0] for _, mid in emails]
    assert [int(m[1]) for s in subjects if (m := re.match(r"Lesson (\d+):", s))] == list(
        range(1, 10)
    )
    texts = sent(factory, sid, "sms")
    # Only the steps that text alongside the email; no fallback texts for someone with mail.
    # Sam opens nothing, so the diagnosis lesson also reaches him as its text version,
    # which is the whole lesson and says so.
    assert [k for k, _ in texts] == [s.key for s in course.steps if Channel.SMS in s.channels]
    for key, mid in texts:
        numbered = re.search(r"Lesson (\d+) of 9", text_body(course_ctx, mid))
        if key == "diagnosis_by_text":
            assert numbered and numbered[1] == "7"
        else:
            assert not numbered, key


def test_someone_unsubscribed_from_email_gets_the_lesson_by_text_instead(
    factory, clock, shipped, policy, course_ctx
):
    sid, _ = add_and_enroll(
        factory,
        clock,
        shipped,
        policy,
        COURSE,
        email="kim@example.com",
        phone="+12025550145",
        first_name="Kim",
    )
    with transaction(factory) as s:
        person = s.get(Subscriber, sid)
        unsubscribe(s, clock, person, channels=(Channel.EMAIL,), source="test", evidence={})
    run_course(course_ctx)
    course = shipped.get(COURSE)
    lessons = [s.key for s in course.steps if s.key != "diagnosis_by_text"]
    assert [k for k, _ in sent(factory, sid, "sms")] == lessons  # every lesson, once
    assert skipped_by_condition(factory, sid) == ["diagnosis_by_text"]
    assert sent(factory, sid, "email") == []
    with factory() as s:
        stopped = s.scalars(
            select(Message.status).where(
                Message.subscriber_id == sid, Message.channel == Channel.EMAIL
            )
        ).all()
    # The email rows say why mail did not go; none was sent.
    assert stopped and all(st != MessageStatus.SENT for st in stopped)


# Help path ----------------------------------------------------------------------------


def text(body, phone="+34611223344", sid="SM1"):
    return InboundText("twilio", phone, body, sid)


@pytest.mark.parametrize(
    ("body", "phone", "language_word", "number"),
    [
        ("HELP", "+12025550146", "To talk to our care team", "911"),
        ("AYUDA", "+34611223344", "Para hablar con nuestro equipo", "112"),
        ("help", "+61491570006", "To talk to our care team", "000"),
    ],
)
def test_help_reply_gives_phone_hours_promise_and_the_local_emergency_number(
    factory, clock, body, phone, language_word, number
):
    desk = HelpDesk("Lunara", EXAMPLE, "US")
    with transaction(factory) as s:
        reply = handle_inbound_sms(s, clock, text(body, phone), help_desk=desk)
    assert language_word in reply
    # The emergency line comes first, before anything else the reply says.
    assert reply.index(number) < reply.index("+1 800-555-0199")
    assert "call back" not in reply and "llamamos" not in reply  # no call was asked for
    assert "+1 800-555-0199" in reply and number in reply and "STOP" in reply
    assert ("8:00 AM" in reply) or ("8:00 a.m." in reply)
    assert is_gsm7(reply) and segments(reply)[1] <= 2


def test_care_team_hours_are_worded_per_locale():
    care = CareTeam("+34911234567", "mon-fri 09:00-14:00; sat 10:00-12:00", "Europe/Madrid", 2)
    en, es = care.for_locale("en"), care.for_locale("es")
    assert en["hours"].startswith("Monday to Friday, 9:00 AM to 2:00 PM; Saturday")
    assert es["hours"].startswith("de lunes a viernes, de 9:00 a.m. a 2:00 p.m.; sábado")
    assert (en["reply_within"], es["reply_within"]) == ("two business days", "dos días hábiles")
    assert en["phone"] == "+34 911 23 45 67" and en["phone_uri"] == "tel:+34911234567"


def test_the_last_lesson_names_the_care_team_phone_hours_and_promise():
    campaign = Registry(ROOT / "campaigns" / "definitions", ROOT / "templates").get(COURSE)
    renderer = Renderer(ROOT / "templates", replace(SENDER, care=EXAMPLE))
    links = links_for("https://care.example", Signer(b"k" * 32), "tok")
    for locale in ("en", "es"):
        step = campaign.step("next_step")
        email = renderer.email(campaign, step, Recipient("Ana", locale), links)
        care = EXAMPLE.for_locale(locale)
        for part in (email.html, email.text):
            assert care["phone"] in part and care["reply_within"] in part
        assert care["hours"] in email.text


def test_an_email_stopped_after_its_claim_still_reaches_the_person_by_text(
    factory, clock, shipped, policy, course_ctx
):
    sid, _ = add_and_enroll(
        factory,
        clock,
        shipped,
        policy,
        COURSE,
        email="noor@example.com",
        phone="+12025550147",
        first_name="Noor",
    )
    # The welcome goes by email and text, and the check-in question by email; then
    # lesson 1 (email only) is claimed...
    for _ in range(2):
        with transaction(factory) as s:
            work = claim_due(s, clock, shipped, policy)
        send_batch(course_ctx, "email", work.email)
        send_batch(course_ctx, "sms", work.sms)
        with factory() as s:
            clock.current = s.scalar(
                select(Enrollment.next_due_at).where(Enrollment.subscriber_id == sid)
            )
    with transaction(factory) as s:
        work = claim_due(s, clock, shipped, policy)
        # ...and before it goes, the person unsubscribes from email (not from texts).
        unsubscribe(
            s, clock, s.get(Subscriber, sid), channels=(Channel.EMAIL,), source="test", evidence={}
        )
    assert send_batch(course_ctx, "email", work.email).suppressed == 1
    with transaction(factory) as s:
        released = release_waiting(s, clock)
    assert len(released.sms) == 1
    with factory() as s:
        reason = s.scalar(select(Message.reason).where(Message.id == released.sms[0]))
    assert reason.startswith("sent by text instead: the email could not go")
    assert send_batch(course_ctx, "sms", released.sms).sent == 1
    ((step_key, mid),) = [t for t in sent(factory, sid, "sms") if t[0] == "hip_pain"]
    assert text_body(course_ctx, mid).startswith("Lunara: Lesson 1 of 9:")


def test_old_time_zone_names_browsers_send_still_find_the_country():
    assert country_of_zone("Asia/Calcutta") == "IN"
    assert country_of_zone("Australia/NSW") == "AU"
    assert country_of_zone("Europe/Kiev") == "UA"
    assert country_of_zone("UTC") is None


def test_every_zone_with_a_country_is_known():
    import zoneinfo

    unknown = [
        z
        for z in zoneinfo.available_timezones()
        if country_of_zone(z) is None
        and not z.startswith(("Etc/", "GMT", "UTC", "UCT", "Universal", "Zulu", "Greenwich"))
        and z not in ("Factory", "localtime", "CST6CDT", "EST5EDT", "MST7MDT", "PST8PDT")
        and z != "Antarctica/Troll"
    ]
    assert unknown == []


def test_somebody_in_a_zone_without_a_country_is_told_112_not_the_default():
    from campaigns.audience.emergency import country_of

    person = Subscriber(email="x@example.com", timezone="UTC")
    assert emergency_number(country_of(person), "US") == "112"
    assert emergency_number(country_of(Subscriber(email="y@example.com")), "US") == "911"


def test_test_send_mirrors_what_a_patient_with_those_addresses_gets(factory, course_ctx):
    from campaigns.delivery.testsend import SendTestRequest, send_test

    def run(**addresses):
        with transaction(factory) as s:
            return send_test(
                s,
                course_ctx.registry,
                course_ctx.renderer,
                course_ctx.signer,
                course_ctx.base_url,
                course_ctx.email_provider,
                course_ctx.sms_provider,
                SendTestRequest(COURSE, ["hip_pain"], "en", first_name="Sam", **addresses),
            )

    adhoc = course_ctx.sms_provider.folder / "adhoc"
    # Email and phone: lesson 1 is email only, so no text (no patient gets a companion).
    assert len(run(email="me@example.com", phone="+12025550111")) == 1
    assert not list(adhoc.glob("sms-*"))
    # Phone only: the text-only lesson.
    assert len(run(phone="+34611223344")) == 1
    (text,) = adhoc.glob("sms-*")
    body = text.read_text()
    assert "Lesson 1 of 9" in body and "911" not in body
