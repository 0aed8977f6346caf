"""Erasing a person, on SQLite and PostgreSQL: the export→erase round trip (afterwards
the export holds nothing personal, while the person's row, messages, events and answers
remain without identity), and what still holds after it: a send to them is refused, a
STOP stays honoured until the phone itself texts START, a new sign-up with the same
email goes through the double opt-in as a new person, an import with an email they had
opted out of stays suppressed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from campaigns.audience.consent import has_consent, record_consent
from campaigns.audience.opt_outs import unsubscribe
from campaigns.audience.subscribers import InvalidSubscriber
from campaigns.audience.suppression import is_hashed, suppress, suppression_for
from campaigns.care.contact_notes import add_note
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.sending import send_batch
from campaigns.delivery.testsend import SendTestRequest
from campaigns.intake import signup
from campaigns.intake.imports import import_file
from campaigns.links import Signer
from campaigns.models import (
    Answer,
    AuditEntry,
    ConsentRecord,
    ContactRequest,
    Enrollment,
    Event,
    Message,
    Subscriber,
    Suppression,
)
from campaigns.staff.audit import Actor
from campaigns.states import EnrollmentStatus, MessageStatus, SubscriberStatus
from campaigns.tracking.inbound import InboundText, handle_inbound_sms
from tests.helpers import add_and_enroll, drip_context
from tests.test_admin import AUTH, POST, make_app
from tests.test_people import ANA, BEN, build_person
from tests.test_testsend import run as run_test_send
from workers.cli import main

PHONE = "+12025550150"
SMS_WORDING = "By checking this box you agree to receive texts."


@pytest.fixture
def client(factory, clock, tmp_path):
    return TestClient(make_app(factory, clock, tmp_path))


def text_in(factory, clock, phone: str, body: str, sid: str) -> str | None:
    with transaction(factory) as s:
        return handle_inbound_sms(s, clock, InboundText("twilio", phone, body, sid))


def counts(factory, sid: int) -> dict[str, int]:
    with factory() as s:
        mids = s.scalars(select(Message.id).where(Message.subscriber_id == sid)).all()
        return {
            "messages": len(mids),
            "events": s.scalar(
                select(func.count(Event.id)).where(
                    (Event.subscriber_id == sid) | Event.message_id.in_(mids)
                )
            ),
            "answers": s.scalar(select(func.count(Answer.id)).where(Answer.subscriber_id == sid)),
            "consent": s.scalar(
                select(func.count(ConsentRecord.id)).where(ConsentRecord.subscriber_id == sid)
            ),
        }


PERSONAL = (
    "ana@example.com",
    "+12025550143",
    "2025550143",
    "Ana",
    "my hip hurts today",
    "198.51.100.7",
    "plan-of-Ana",
    "clinic of Ana",
    "mornings",
    "UA-of-the-patient",  # a browser's user agent in consent evidence
    "rang Ana's mobile",  # a care-team note on her call request
)


def test_export_then_erase_round_trip(client, factory, clock, registry, policy, send_ctx):
    ana = build_person(factory, clock, registry, policy, send_ctx, ANA, text="my hip hurts today")
    ben = build_person(factory, clock, registry, policy, send_ctx, BEN, text="when is lesson two")
    assert text_in(factory, clock, ANA["phone"], "STOP", "SMstop1")  # Ana stops texts first
    with transaction(factory) as s:
        evidence = {"via": "signup_form", "user_agent": "UA-of-the-patient"}
        record_consent(s, clock, s.get(Subscriber, ana), "email", "granted", "form", evidence)
        asked = s.scalars(select(ContactRequest).where(ContactRequest.subscriber_id == ana)).one()
        add_note(s, clock, Actor("nina", "care"), asked.id, "rang Ana's mobile, no answer")
    before = client.get(f"/admin/people/{ana}/export.json", headers=AUTH).text
    for value in PERSONAL:
        assert value in before, value
    kept = counts(factory, ana)

    asks = client.get(f"/admin/people/{ana}/erase", headers=AUTH)
    assert asks.status_code == 200 and f"Type the person's id ({ana})" in asks.text
    wrong = client.post(
        f"/admin/people/{ana}/erase", headers=POST, data={"csrf_token": "", "confirm": str(ben)}
    )
    assert wrong.status_code == 400 and "nothing was changed" in wrong.text
    with factory() as s:
        assert s.get(Subscriber, ana).email == ANA["email"]

    done = client.post(
        f"/admin/people/{ana}/erase", headers=POST, data={"csrf_token": "", "confirm": str(ana)}
    )
    assert done.status_code == 200 and f"Person {ana} erased" in done.text

    after = client.get(f"/admin/people/{ana}/export.json", headers=AUTH)
    assert after.status_code == 200
    for value in PERSONAL:
        assert value not in after.text, value
    doc = after.json()["tables"]
    person = doc["subscribers"][0]
    assert person["status"] == SubscriberStatus.ERASED and person["erased_at"]
    assert person["email"] is person["phone"] is person["first_name"] is None
    assert counts(factory, ana) == kept  # messages, events, answers, consent all still there
    assert [a["value"] for a in doc["answers"]] == [4]
    assert all(e["status"] == EnrollmentStatus.EXITED for e in doc["enrollments"])
    assert {c["action"] for c in doc["consent_records"]} == {"granted", "revoked"}
    evidence = [c["evidence"] for c in doc["consent_records"] if c["source"] == "form"]
    assert evidence == [{"via": "signup_form", "erased": True}]  # how, not who

    with factory() as s:
        # The STOP outlives the erasure, as a hash: no row holds the number any more.
        assert s.scalar(select(Suppression).where(Suppression.address == ANA["phone"])) is None
        hashed = suppression_for(s, "sms", ANA["phone"])
        assert hashed is not None and is_hashed(hashed.address)
        assert hashed.reason == "unsubscribed"
        # Ben is untouched.
        b = s.get(Subscriber, ben)
        assert (b.email, b.phone, b.first_name) == (BEN["email"], BEN["phone"], "Benjamin")
        assert s.scalar(select(func.count(Event.id)).where(Event.subscriber_id == ben)) >= 3
        entry = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "person.erase", AuditEntry.target_id == str(ana))
            .order_by(AuditEntry.id.desc())
        ).first()
    assert entry is not None and entry.target_type == "person"
    logged = json.dumps([entry.before, entry.after])
    assert all(v not in logged for v in PERSONAL)
    ben_export = client.get(f"/admin/people/{ben}/export.json", headers=AUTH).text
    assert "ben@example.com" in ben_export and "when is lesson two" in ben_export

    # The person page still opens, without identity; erasing again changes nothing.
    page = client.get(f"/admin/people/{ana}", headers=AUTH)
    assert page.status_code == 200 and "erased" in page.text and "ana@" not in page.text
    res = CliRunner().invoke(
        main, ["people", "erase", str(ana), "--yes"], obj=drip_context(factory, clock)
    )
    assert res.exit_code == 0 and "already erased" in res.output


def test_cli_erase_needs_yes_and_a_real_id(factory, clock, registry, policy):
    sid, _ = add_and_enroll(factory, clock, registry, policy, email="cy@example.com")
    ctx = drip_context(factory, clock)
    runner = CliRunner()
    refused = runner.invoke(main, ["people", "erase", str(sid)], obj=ctx)
    assert refused.exit_code == 1 and "--yes" in refused.output
    with factory() as s:
        assert s.get(Subscriber, sid).email == "cy@example.com"
    for bad in ("999999", "x"):
        res = runner.invoke(main, ["people", "erase", bad, "--yes"], obj=ctx)
        assert res.exit_code == 1 and "no person" in res.output
    res = runner.invoke(main, ["people", "erase", str(sid), "--yes"], obj=ctx)
    assert res.exit_code == 0 and f"person {sid} erased" in res.output
    with factory() as s:
        assert (
            s.scalar(
                select(func.count(AuditEntry.id)).where(
                    AuditEntry.action == "person.erase", AuditEntry.target_id == str(sid)
                )
            )
            >= 1
        )


def test_after_erase_a_send_to_them_is_refused(factory, clock, registry, policy, send_ctx):
    ctx = drip_context(factory, clock)
    sid, eid = add_and_enroll(
        factory, clock, registry, policy, email="cy@example.com", phone=PHONE, first_name="Cy"
    )
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
    assert work.email and work.sms
    res = CliRunner().invoke(main, ["people", "erase", str(sid), "--yes"], obj=ctx)
    assert res.exit_code == 0, res.output
    assert send_batch(send_ctx, "email", work.email).sent == 0
    assert send_batch(send_ctx, "sms", work.sms).sent == 0
    with factory() as s:
        msgs = s.scalars(select(Message).where(Message.subscriber_id == sid)).all()
        assert {(m.status, m.reason_code) for m in msgs} == {(MessageStatus.SKIPPED, "erased")}
        assert s.get(Enrollment, eid).status == EnrollmentStatus.EXITED
    clock.advance(days=3)
    with transaction(factory) as s:
        later = claim_due(s, clock, registry, policy)
    assert not later.email and not later.sms  # the course claims nothing more


def form_signup(factory, clock, registry, policy, *, email=None, phone=None):
    channels = tuple(c for c, v in (("email", email), ("sms", phone)) if v)
    with transaction(factory) as s:
        return signup.start_signup(
            s,
            clock,
            email=email,
            phone=phone,
            first_name="New",
            locale="en",
            timezone=None,
            channels=channels,
            evidence={"sms_consent_text": SMS_WORDING} if phone else {},
            double_opt_in=True,
            signer=Signer(b"k" * 32),
            registry=registry,
            policy=policy,
            campaign_key="tiny",
        )


def test_a_stop_stays_honoured_after_erase_until_the_phone_texts_start(
    factory, clock, registry, policy
):
    ctx = drip_context(factory, clock)
    sid, _ = add_and_enroll(factory, clock, registry, policy, phone=PHONE, first_name="Dee")
    text_in(factory, clock, PHONE, "STOP", "SM1")
    CliRunner().invoke(main, ["people", "erase", str(sid), "--yes"], obj=ctx)

    # The form cannot text the number: a STOP is never lifted by a form.
    first = form_signup(factory, clock, registry, policy, phone=PHONE)
    assert first.text_confirmation is False
    with factory() as s:
        new = s.get(Subscriber, first.subscriber_id)
        assert new.id != sid and new.phone == PHONE
        assert not has_consent(s, new.id, "sms")
    # STOP again: still one suppression, still hashed; the number is not written down.
    text_in(factory, clock, PHONE, "stop", "SM2")
    with factory() as s:
        rows = s.scalars(select(Suppression).where(Suppression.channel == "sms")).all()
        assert [is_hashed(r.address) for r in rows] == [True]
    # START from the phone itself lifts it; texts still need the phone's YES.
    assert "texts again" in text_in(factory, clock, PHONE, "START", "SM3")
    with factory() as s:
        assert suppression_for(s, "sms", PHONE) is None
        assert s.scalar(select(func.count(Suppression.id))) == 0
    with transaction(factory) as s:
        s.get(Subscriber, first.subscriber_id).phone = None  # a fresh form, a new record
    again = form_signup(factory, clock, registry, policy, phone=PHONE)
    assert again.text_confirmation is True
    with factory() as s:
        assert not has_consent(s, again.subscriber_id, "sms")  # no old consent reused
        assert s.get(Subscriber, sid).status == SubscriberStatus.ERASED  # nobody re-joined


def test_a_new_signup_with_the_erased_email_needs_the_double_opt_in(
    factory, clock, registry, policy
):
    ctx = drip_context(factory, clock)
    sid, _ = add_and_enroll(factory, clock, registry, policy, email="eve@example.com")
    CliRunner().invoke(main, ["people", "erase", str(sid), "--yes"], obj=ctx)
    result = form_signup(factory, clock, registry, policy, email="Eve@Example.com")
    assert result.created and result.subscriber_id != sid
    assert result.needs_confirmation and result.confirm_to == "eve@example.com"
    assert result.enrollment_id is None
    with factory() as s:
        new = s.get(Subscriber, result.subscriber_id)
        assert new.status == SubscriberStatus.PENDING and new.confirmation_requested_at
        assert not has_consent(s, new.id, "email")
        assert (
            s.scalar(
                select(func.count(ConsentRecord.id)).where(ConsentRecord.subscriber_id == new.id)
            )
            == 0
        )


def test_a_test_send_to_an_erased_persons_bounced_address_is_refused(
    factory, clock, registry, policy, send_ctx
):
    ctx = drip_context(factory, clock)
    sid, _ = add_and_enroll(factory, clock, registry, policy, email="hal@example.com")
    with transaction(factory) as s:
        suppress(s, clock, "email", "hal@example.com", "bounce", "sendgrid")
    CliRunner().invoke(main, ["people", "erase", str(sid), "--yes"], obj=ctx)
    request = SendTestRequest("tiny", ["hello"], "en", "HAL@example.com")
    with pytest.raises(InvalidSubscriber, match="suppressed \\(bounce\\)"):
        run_test_send(send_ctx, factory, request)


@pytest.mark.parametrize("bulk", [True, False])
def test_an_import_with_an_erased_persons_opted_out_email_stays_suppressed(
    factory, clock, registry, policy, tmp_path, bulk
):
    ctx = drip_context(factory, clock)
    sid, _ = add_and_enroll(factory, clock, registry, policy, email="fay@example.com")
    with transaction(factory) as s:
        unsubscribe(s, clock, s.get(Subscriber, sid), channels=("email",))
    CliRunner().invoke(main, ["people", "erase", str(sid), "--yes"], obj=ctx)
    path = tmp_path / "list.csv"
    path.write_text("email,first_name,consent_email\nFAY@example.com,Fay,yes\n")
    report = import_file(factory, clock, registry, policy, path, campaign_key="tiny", bulk=bulk)
    assert report.not_enrolled == [
        (2, "email suppressed (unsubscribed); an import never subscribes anyone again")
    ]
    with factory() as s:
        fresh = s.scalar(select(Subscriber).where(Subscriber.email == "fay@example.com"))
        assert fresh.id != sid and not has_consent(s, fresh.id, "email")
    # The form mails nothing to it either, as for any address that opted out.
    assert not form_signup(
        factory, clock, registry, policy, email="fay@example.com"
    ).needs_confirmation


def test_consent_records_stay_append_only(factory, clock, registry, policy):
    sid, _ = add_and_enroll(factory, clock, registry, policy, email="gus@example.com")
    with pytest.raises(ValueError, match="append-only"), transaction(factory) as s:
        s.scalars(
            select(ConsentRecord).where(ConsentRecord.subscriber_id == sid)
        ).first().source = "x"
