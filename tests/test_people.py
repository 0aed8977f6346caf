"""The care team's people pages and `drip people`, through the real app on SQLite and
PostgreSQL: search by each field, the person page with messages, events and consent,
each action (pause, resume, exit, stop a channel) done and in the audit log, the export
holding every table's rows for that person and nobody else's, and bad ids answering 404."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from campaigns.audience.consent import has_consent
from campaigns.audience.suppression import suppression_for
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.sending import send_batch
from campaigns.models import (
    Answer,
    AuditEntry,
    CapHold,
    ContactRequest,
    Enrollment,
    Event,
    InboxItem,
    Message,
    PersonEvent,
    Subscriber,
)
from campaigns.states import EnrollmentStatus, EventType
from campaigns.tracking.inbound import InboundText, handle_inbound_sms
from tests.helpers import add_and_enroll, drip_context
from tests.test_admin import AUTH, BASE, POST, browser_session, make_app
from workers.cli import main

ANA = {"email": "ana@example.com", "phone": "+12025550143", "first_name": "Ana"}
BEN = {"email": "ben@example.com", "phone": "+12025550144", "first_name": "Benjamin"}


@pytest.fixture
def client(factory, clock, tmp_path):
    return TestClient(make_app(factory, clock, tmp_path))


def audit_count(factory, action: str) -> int:
    with factory() as s:
        return s.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.action == action))


def build_person(factory, clock, registry, policy, send_ctx, details, *, text: str) -> int:
    """A person with a course, sent messages, a delivery and a machine-flagged open, a
    contact request, a text for the inbox, a check-in answer, a person event and a cap
    hold: a row in every table that holds people."""
    sid, eid = add_and_enroll(factory, clock, registry, policy, **details)
    with transaction(factory) as s:
        work = claim_due(s, clock, registry, policy)
    send_batch(send_ctx, "email", work.email)
    send_batch(send_ctx, "sms", work.sms)
    now = clock.now()
    with transaction(factory) as s:
        s.get(Subscriber, sid).attributes = {"plan": f"plan-of-{details['first_name']}"}
        msg = s.scalars(
            select(Message).where(Message.subscriber_id == sid, Message.channel == "email")
        ).one()
        for kind, automated, pid in (
            (EventType.DELIVERED, False, "d"),
            (EventType.OPENED, True, "o"),
        ):
            s.add(
                Event(
                    message_id=msg.id,
                    subscriber_id=sid,
                    type=kind,
                    provider="sendgrid",
                    provider_event_id=f"{pid}-{sid}",
                    occurred_at=now,
                    received_at=now,
                    payload={"email": details["email"], "ip": "198.51.100.7", "event": kind},
                    automated=automated,
                    automated_reason="apple_proxy" if automated else None,
                )
            )
        s.add(
            ContactRequest(
                subscriber_id=sid,
                message_id=msg.id,
                campaign_key="tiny",
                step_key="hello",
                preferred_channel="phone",
                preferred_time="mornings",
                note=f"please call {details['first_name']} on {details['phone']}",
                created_at=now,
            )
        )
        s.add(
            PersonEvent(
                event_id=f"visit-{sid}",
                subscriber_id=sid,
                name="visit_booked",
                occurred_at=now,
                properties={"clinic": f"clinic of {details['first_name']}"},
                source="api",
                source_ref="key_abc",
                created_at=now,
            )
        )
        s.add(
            Answer(
                subscriber_id=sid,
                enrollment_id=eid,
                campaign_key="tiny",
                step_key="hello",
                question="pain_0_10",
                value=4,
                message_id=msg.id,
                via="link",
                answered_at=now,
                created_at=now,
            )
        )
        s.add(
            CapHold(
                subscriber_id=sid,
                enrollment_id=eid,
                campaign_key="tiny",
                step_key="second",
                cap="day",
                allowed=1,
                counted=1,
                held_at=now,
                held_until=now + timedelta(hours=20),
            )
        )
    with transaction(factory) as s:
        handle_inbound_sms(
            s,
            clock,
            InboundText(
                "twilio",
                details["phone"],
                text,
                f"SMin{sid}",
                {"From": details["phone"], "Body": text},
            ),
        )
    return sid


@pytest.fixture
def people(client, factory, clock, registry, policy, send_ctx):
    ana = build_person(factory, clock, registry, policy, send_ctx, ANA, text="my hip hurts today")
    ben = build_person(factory, clock, registry, policy, send_ctx, BEN, text="when is lesson two")
    return ana, ben


@pytest.mark.parametrize(
    "query",
    [
        "ana",
        "AN",
        "nA",
        "ana@example.com",
        " ANA@Example.com ",
        "+1 (202) 555-0143",
        "202 555 0143",
        "0143",
    ],
)
def test_search_finds_by_name_email_and_phone(client, people, query):
    ana, ben = people
    page = client.get("/admin/people", params={"q": query}, headers=AUTH)
    assert page.status_code == 200
    assert f'href="/admin/people/{ana}"' in page.text
    assert f'href="/admin/people/{ben}"' not in page.text
    assert "ana@example.com" in page.text and "+12025550143" in page.text  # care sees plain
    assert "tiny (active)" in page.text


def test_search_by_id_says_when_nobody_matches_and_treats_wildcards_as_letters(client, people):
    ana, ben = people
    assert (
        f'href="/admin/people/{ben}"' in client.get(f"/admin/people?q=%23{ben}", headers=AUTH).text
    )
    for query in ("zelda", "%", "_", "#99999999999"):
        page = client.get("/admin/people", params={"q": query}, headers=AUTH)
        assert page.status_code == 200 and "Nobody matches" in page.text
    assert "Type a first name" in client.get("/admin/people", headers=AUTH).text


def test_search_pages(client, factory, clock, registry, policy):
    for i in range(27):
        add_and_enroll(
            factory, clock, registry, policy, email=f"kim{i}@example.com", first_name="Kim"
        )
    first = client.get("/admin/people?q=kim", headers=AUTH).text
    second = client.get("/admin/people?q=kim&page=2", headers=AUTH).text
    assert first.count('">Kim</a>') == 25 and "page=2" in first
    assert second.count('">Kim</a>') == 2 and "page=1" in second
    assert client.get("/admin/people?q=kim&page=0", headers=AUTH).status_code == 422


def test_the_pages_need_credentials(client, people):
    ana, _ = people
    assert client.get("/admin/people?q=ana").status_code == 401
    assert client.get(f"/admin/people/{ana}").status_code == 401
    assert client.get(f"/admin/people/{ana}/export.json").status_code == 401


def test_person_page_shows_courses_messages_events_consent_and_the_rest(client, people):
    ana, ben = people
    page = client.get(f"/admin/people/{ana}", headers=AUTH)
    assert page.status_code == 200
    text = page.text
    for expected in (
        "ana@example.com",
        "+12025550143",
        "plan: plan-of-Ana",
        "tiny",  # the course
        "hello",  # the step
        "delivered 2026-03-02 15:00 UTC",
        "machine: apple_proxy",  # the open a machine made, marked
        "granted",
        "please call Ana",  # the contact request's note
        "my hip hurts today",  # the text they wrote
        "pain_0_10",
        "visit_booked",
        "clinic of Ana",
        "day",  # the cap hold
        'name="csrf_token"',
    ):
        assert expected in text, expected
    assert "ben@example.com" not in text and "when is lesson two" not in text


@pytest.mark.parametrize(
    "path",
    [
        "/admin/people/999999",
        "/admin/people/0",
        "/admin/people/-1",
        "/admin/people/abc",
        "/admin/people/99999999999999999999",
        "/admin/people/%C3%A9",
        "/admin/people/999999/export.json",
        "/admin/people/abc/export.zip",
        "/admin/people/1/export.exe",
        "/admin/people/999999/erase",
    ],
)
def test_bad_ids_get_the_404_page(client, path):
    page = client.get(path, headers=AUTH)
    assert page.status_code == 404 and "No such person" in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/admin/people/999999/courses/1/pause",
        "/admin/people/abc/courses/1/pause",
        "/admin/people/1/courses/abc/pause",
        "/admin/people/1/courses/1/explode",
        "/admin/people/999999/suppress",
        "/admin/people/999999/erase",
    ],
)
def test_actions_on_bad_ids_get_404(client, path):
    page = client.post(path, headers=POST, data={"csrf_token": "", "confirm": "999999"})
    assert page.status_code == 404


def course_of(factory, sid) -> Enrollment:
    with factory() as s:
        return s.scalars(select(Enrollment).where(Enrollment.subscriber_id == sid)).one()


def test_pause_resume_and_exit_a_course_each_audited(client, factory, people):
    ana, ben = people
    eid = course_of(factory, ana).id
    base = f"/admin/people/{ana}/courses/{eid}"
    before = {a: audit_count(factory, f"person.{a}") for a in ("pause", "resume", "exit")}

    assert client.post(f"{base}/pause", headers=POST, data={"csrf_token": ""}).status_code == 200
    assert course_of(factory, ana).status == EnrollmentStatus.PAUSED
    again = client.post(f"{base}/pause", headers=POST, data={"csrf_token": ""})
    assert again.status_code == 400 and "not active" in again.text

    assert client.post(f"{base}/resume", headers=POST, data={"csrf_token": ""}).status_code == 200
    assert course_of(factory, ana).status == EnrollmentStatus.ACTIVE

    assert client.post(f"{base}/exit", headers=POST, data={"csrf_token": ""}).status_code == 200
    course = course_of(factory, ana)
    assert (course.status, course.exit_reason) == (EnrollmentStatus.EXITED, "exited by staff")
    assert client.post(f"{base}/resume", headers=POST, data={"csrf_token": ""}).status_code == 400

    for action in ("pause", "resume", "exit"):
        assert audit_count(factory, f"person.{action}") == before[action] + 1
    with factory() as s:
        entry = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "person.exit")
            .order_by(AuditEntry.id.desc())
        ).first()
    assert (entry.target_type, entry.target_id, entry.actor) == ("person", str(ana), "admin")
    assert entry.before == {"enrollment": eid, "status": "active"}
    assert course_of(factory, ben).status == EnrollmentStatus.ACTIVE  # nobody else's course

    # Another person's course through this person's page: not theirs, so not found.
    other = course_of(factory, ben).id
    assert (
        client.post(
            f"/admin/people/{ana}/courses/{other}/pause", headers=POST, data={"csrf_token": ""}
        ).status_code
        == 404
    )


def test_stop_a_channel_revokes_consent_and_suppresses_audited(client, factory, people):
    ana, _ = people
    before = audit_count(factory, "person.suppress")
    missing = client.post(
        f"/admin/people/{ana}/suppress",
        headers=POST,
        data={"csrf_token": "", "channel": "sms", "reason": ""},
    )
    assert missing.status_code == 400 and "reason" in missing.text
    bad = client.post(
        f"/admin/people/{ana}/suppress",
        headers=POST,
        data={"csrf_token": "", "channel": "fax", "reason": "asked"},
    )
    assert bad.status_code == 400
    done = client.post(
        f"/admin/people/{ana}/suppress",
        headers=POST,
        data={"csrf_token": "", "channel": "sms", "reason": "asked on the phone"},
    )
    assert done.status_code == 200
    with factory() as s:
        assert not has_consent(s, ana, "sms") and has_consent(s, ana, "email")
        assert suppression_for(s, "sms", ANA["phone"]).reason == "unsubscribed"
        entry = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "person.suppress")
            .order_by(AuditEntry.id.desc())
        ).first()
    assert audit_count(factory, "person.suppress") == before + 1
    assert "asked on the phone" not in json.dumps(entry.after)  # ids and states only


def test_a_post_from_another_site_or_with_a_wrong_token_changes_nothing(client, factory, people):
    ana, _ = people
    eid = course_of(factory, ana).id
    other_site = client.post(
        f"/admin/people/{ana}/courses/{eid}/pause",
        headers={**AUTH, "Origin": "https://evil.example"},
        data={"csrf_token": ""},
    )
    assert other_site.status_code == 403
    wrong = browser_session(client.app).post(
        f"/admin/people/{ana}/courses/{eid}/pause",
        headers={"Origin": BASE},
        data={"csrf_token": "forged"},
    )
    assert wrong.status_code == 403
    assert course_of(factory, ana).status == EnrollmentStatus.ACTIVE


TABLES_WITH_ROWS = (
    "subscribers",
    "consent_records",
    "enrollments",
    "messages",
    "events",
    "contact_requests",
    "inbox_items",
    "answers",
    "person_events",
    "cap_holds",
    "audit_log",
)


def test_export_holds_every_table_for_that_person_and_nobody_else(client, factory, people):
    ana, ben = people
    client.post(
        f"/admin/people/{ana}/suppress",
        headers=POST,
        data={"csrf_token": "", "channel": "sms", "reason": "asked"},
    )
    before = audit_count(factory, "person.export")
    answer = client.get(f"/admin/people/{ana}/export.json", headers=AUTH)
    assert answer.status_code == 200
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.headers["cache-control"] == "no-store"
    doc = answer.json()
    tables = doc["tables"]
    for name in (*TABLES_WITH_ROWS, "suppressions"):
        assert tables[name], f"{name} is empty"
    assert tables["subscribers"][0]["email"] == "ana@example.com"
    for name in (
        "consent_records",
        "enrollments",
        "messages",
        "contact_requests",
        "answers",
        "person_events",
        "cap_holds",
    ):
        assert {r["subscriber_id"] for r in tables[name]} == {ana}, name
    with factory() as s:
        mine = s.scalars(select(Message.id).where(Message.subscriber_id == ana)).all()
        assert sorted(r["id"] for r in tables["messages"]) == sorted(mine)
        events = s.scalars(
            select(Event.id).where((Event.subscriber_id == ana) | Event.message_id.in_(mine))
        ).all()
        assert sorted(r["id"] for r in tables["events"]) == sorted(events)
        inbox = s.scalars(select(InboxItem.id).where(InboxItem.subscriber_id == ana)).all()
        assert [r["id"] for r in tables["inbox_items"]] == inbox
    assert all("origin" not in e and "actor" not in e for e in tables["audit_log"])
    text = json.dumps(doc)
    assert "ben@example.com" not in text and "Benjamin" not in text and "+12025550144" not in text
    assert audit_count(factory, "person.export") == before + 1

    archive = client.get(f"/admin/people/{ana}/export.zip", headers=AUTH)
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        names = {n.split("/")[-1] for n in z.namelist()}
        assert {f"{t}.csv" for t in (*TABLES_WITH_ROWS, "suppressions")} <= names
        messages_csv = z.read(f"person-{ana}/messages.csv").decode()
        assert messages_csv.startswith("id,") and messages_csv.count("\n") == 1 + len(mine)
        assert "ana@example.com" in z.read(f"person-{ana}/subscribers.csv").decode()
    with factory() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "person.export")).all()
    assert all("ana@" not in json.dumps([e.before, e.after]) for e in entries)


def test_cli_find_show_export(factory, clock, people, tmp_path):
    ana, _ = people
    runner = CliRunner()
    ctx = drip_context(factory, clock)
    found = runner.invoke(main, ["people", "find", "+1 (202) 555-0143"], obj=ctx)
    assert found.exit_code == 0 and f"#{ana}  Ana" in found.output
    assert "ana@example.com" not in found.output  # masked unless --reveal
    assert (
        "ana@example.com"
        in runner.invoke(main, ["people", "find", "ana", "--reveal"], obj=ctx).output
    )
    nobody = runner.invoke(main, ["people", "find", "zelda"], obj=ctx)
    assert nobody.exit_code == 0 and "Nobody matches 'zelda'." in nobody.output
    shown = runner.invoke(main, ["people", "show", str(ana)], obj=ctx)
    assert shown.exit_code == 0
    assert "tiny: active" in shown.output and "opened (machine)" in shown.output
    assert "Person events:\n  2026-03-02 15:00 UTC visit_booked" in shown.output
    for bad in ("999999", "abc", "0"):
        res = runner.invoke(main, ["people", "show", bad], obj=ctx)
        assert res.exit_code == 1 and "no person" in res.output
    out = tmp_path / "ana.json"
    res = runner.invoke(
        main, ["people", "export", str(ana), "--format", "json", "--out", str(out)], obj=ctx
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["tables"]["subscribers"][0]["id"] == ana
    zipped = tmp_path / "ana.zip"
    res = runner.invoke(
        main, ["people", "export", str(ana), "--format", "csv", "--out", str(zipped)], obj=ctx
    )
    assert res.exit_code == 0 and zipfile.is_zipfile(zipped)
    with factory() as s:
        entry = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "person.export")
            .order_by(AuditEntry.id.desc())
        ).first()
    assert entry.actor.startswith("cli:") and entry.origin == "cli"
