"""Per-step funnels, enrollment funnels, provider health, the contact queue and the
`drip report` / `drip contacts` commands, on a scripted history, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, update

from campaigns.audience.suppression import suppress
from campaigns.care import contact_queue
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.pauses import pause
from campaigns.models import ChannelPause, ContactRequest, Enrollment, Event, Message
from campaigns.reasons import Reason
from campaigns.reporting import funnels
from campaigns.reporting.provider_health import provider_health
from campaigns.states import EventType, MessageStatus
from tests.conftest import T0
from tests.helpers import add_and_enroll, drip_context
from workers.cli import main

E = EventType
ANA_PHONE, ANA_EMAIL = "+12025550143", "ana@example.com"


@pytest.fixture(autouse=True)
def no_pauses(factory):
    # conftest truncates the domain tables between PostgreSQL tests, not channel_pauses.
    with transaction(factory) as s:
        s.execute(delete(ChannelPause))
    yield
    with transaction(factory) as s:
        s.execute(delete(ChannelPause))


@dataclass
class History:
    subscribers: dict[str, int]
    enrollments: dict[str, int]
    msg: dict[tuple[str, str, str], int]  # (person, step, channel) -> message id
    request_id: int


def _event(s, msg_id, kind, payload=None, provider="tracking", when=T0, automated=False):
    m = s.get(Message, msg_id)
    s.add(
        Event(
            message_id=m.id,
            subscriber_id=m.subscriber_id,
            type=kind,
            provider=provider,
            occurred_at=when,
            received_at=when,
            payload=payload,
            automated=automated,
        )
    )


def script_history(factory, clock, registry, policy) -> History:
    """Four people on the `quick` course (one: email+sms, two: email, three: sms), and
    what happened to each message. The expected funnel is spelled out in the tests."""
    people = {
        "ana": {"email": ANA_EMAIL, "phone": ANA_PHONE, "first_name": "Ana"},
        "ben": {"email": "ben@example.com", "phone": "+12025550144", "first_name": "Ben"},
        "cy": {"email": "cy@example.com", "first_name": "Cy"},  # no phone: texts skipped
        "dee": {"email": "dee@example.com", "phone": "+12025550145", "first_name": "Dee"},
    }
    subs, enrolls = {}, {}
    for name, details in people.items():
        subs[name], enrolls[name] = add_and_enroll(
            factory, clock, registry, policy, campaign="quick", **details
        )
    with transaction(factory) as s:
        suppress(
            s, clock, "email", "dee@example.com", "bounce", "sendgrid"
        )  # dee's email bounced before
    claimed = []
    for _ in range(3):  # delays are 0m: each tick claims the next step for everyone
        with transaction(factory) as s:
            work = claim_due(s, clock, registry, policy)
            # Settled for a moment so the next step can be claimed (invariant 10); the
            # history below is written by hand, and what it leaves alone is queued again.
            s.execute(
                update(Message)
                .where(Message.status == MessageStatus.QUEUED)
                .values(status=MessageStatus.SKIPPED)
            )
        claimed += work.email + work.sms
    with transaction(factory) as s:
        s.execute(
            update(Message).where(Message.id.in_(claimed)).values(status=MessageStatus.QUEUED)
        )
    ids = {}
    with factory() as s:
        owner = {v: k for k, v in enrolls.items()}
        for m in s.scalars(select(Message)):
            ids[(owner[m.enrollment_id], m.step_key, m.channel)] = m.id
    now = clock.now()

    def set_(s, key, status, **extra):
        m = s.get(Message, ids[key])
        m.status, m.updated_at = status, now
        for k, v in extra.items():
            setattr(m, k, v)

    with transaction(factory) as s:
        accepted = {"provider": "outbox", "sent_at": now}
        set_(
            s,
            ("ana", "one", "email"),
            MessageStatus.DELIVERED,
            provider_message_id="p1",
            **accepted,
        )
        set_(s, ("ben", "one", "email"), MessageStatus.SENT, provider_message_id="p2", **accepted)
        set_(
            s,
            ("cy", "one", "email"),
            MessageStatus.FAILED,
            provider="sendgrid",
            reason="rejected by provider",
            last_error="550 no such user",
        )
        set_(s, ("ana", "one", "sms"), MessageStatus.DELIVERED, **accepted)
        set_(
            s,
            ("ben", "one", "sms"),
            MessageStatus.UNCONFIRMED,
            provider="twilio",
            reason="provider call outcome unknown; awaiting webhook",
        )
        set_(
            s,
            ("dee", "one", "sms"),
            MessageStatus.RETRY,
            provider="twilio",
            reason="temporary provider error",
            next_attempt_at=now + timedelta(minutes=5),
            last_error="503",
        )
        set_(
            s, ("ana", "two", "email"), MessageStatus.BOUNCED, provider_message_id="p3", **accepted
        )
        set_(
            s,
            ("ben", "two", "email"),
            MessageStatus.FAILED,
            provider_message_id="p4",
            reason="sendgrid webhook: dropped",
            **accepted,
        )
        # engagement on step one's email
        _event(s, ids[("ana", "one", "email")], E.OPENED, {"maybe_automated": False})
        _event(
            s, ids[("ana", "one", "email")], E.OPENED, None, provider="sendgrid"
        )  # same message again
        _event(s, ids[("ana", "one", "email")], E.CLICKED, {"route": "m", "maybe_automated": False})
        _event(s, ids[("ben", "one", "email")], E.OPENED, {"route": "o"}, automated=True)
        _event(s, ids[("ben", "one", "email")], E.CLICKED, {"route": "m"}, automated=True)
        _event(
            s,
            ids[("ben", "one", "email")],
            E.OPENED,
            {"event": "open", "sg_machine_open": True},
            provider="sendgrid",
            automated=True,
        )
        _event(
            s,
            ids[("ben", "one", "email")],
            E.UNSUBSCRIBED,
            {"event": "unsubscribe"},
            provider="sendgrid",
        )
        _event(s, ids[("ana", "two", "email")], E.OPENED, {"event": "open"}, provider="sendgrid")
        request = ContactRequest(
            subscriber_id=subs["ana"],
            message_id=ids[("ana", "one", "email")],
            campaign_key="quick",
            step_key="one",
            preferred_channel="phone",
            preferred_time="mornings",
            note="my hip hurts at night",
            status="open",
            created_at=now,
        )
        s.add(request)
        s.flush()
        request_id = request.id
        # where the courses stand
        ben = s.get(Enrollment, enrolls["ben"])
        ben.status, ben.exit_reason = "exited", "unsubscribed"
        dee = s.get(Enrollment, enrolls["dee"])
        dee.status, dee.exit_reason = "paused", "asked to be contacted"
    return History(subs, enrolls, ids, request_id)


@pytest.fixture
def history(factory, clock, registry, policy):
    return script_history(factory, clock, registry, policy)


def rows_by_key(report):
    return {(r.step_key, r.channel): r for r in report.steps}


def test_per_step_funnel_counts_the_scripted_history(history, factory, registry):
    with factory() as s:
        report = funnels.campaign_report(s, registry, "quick")
    assert [(r.step_key, r.channel) for r in report.steps] == [
        ("one", "email"),
        ("one", "sms"),
        ("two", "email"),
        ("three", "sms"),
    ]
    rows = rows_by_key(report)

    one = rows[("one", "email")]
    assert (
        one.created,
        one.sent,
        one.delivered,
        one.failed,
        one.bounced,
        one.suppressed,
        one.skipped,
    ) == (4, 2, 1, 1, 0, 1, 0)
    assert one.suppress_reasons == [("address suppressed: bounce", 1)]
    # ana's two opens count once; ben's flagged opens and click (ours and SendGrid's) not at all
    assert (one.opens, one.clicks, one.contact_requests, one.unsubscribes) == (1, 1, 1, 1)
    totals = (one.opens_total, one.clicks_total, one.machine_opens, one.machine_clicks)
    assert totals == (2, 1, 2, 1)
    assert one.left_out == [("flagged (no reason kept)", 3)]  # stored before reasons were
    assert [(li.label, li.unique, li.total) for li in one.links] == [("read online", 1, 1)]
    assert one.rate_base == "delivered"
    assert (one.delivery_rate, one.open_rate, one.click_rate) == (0.5, 1.0, 1.0)
    assert one.in_flight == {}

    text = rows[("one", "sms")]
    # the email-only person has no row for this text (the step reached them by email)
    assert (text.created, text.sent, text.delivered, text.skipped) == (3, 1, 1, 0)
    assert text.skip_reasons == []
    assert text.in_flight == {"unconfirmed": 1, "retry": 1} and text.in_flight_total == 2
    assert (text.delivery_rate, text.open_rate, text.click_rate) == (
        1.0,
        None,
        0.0,
    )  # no such thing as an SMS open

    two = rows[("two", "email")]
    # accepted then bounced, accepted then failed by webhook: both were sent
    assert (two.created, two.sent, two.delivered, two.failed, two.bounced, two.suppressed) == (
        4,
        2,
        0,
        1,
        1,
        1,
    )
    assert two.in_flight == {"queued": 1} and two.opens == 1
    assert (two.delivery_rate, two.open_rate, two.click_rate) == (0.0, None, None)

    three = rows[("three", "sms")]
    assert (three.created, three.sent, three.skipped, three.in_flight) == (4, 0, 1, {"queued": 3})
    assert three.delivery_rate is None and three.position == 3


def test_enrollment_funnel(history, factory, registry, clock, policy):
    add_and_enroll(factory, clock, registry, policy, campaign="quick", email="eve@example.com")
    with factory() as s:
        f = funnels.enrollment_funnel(s, "quick")
        everything = funnels.enrollment_funnels(s, registry)
    assert (f.enrolled, f.active, f.completed, f.exited, f.paused) == (5, 1, 2, 1, 1)
    assert f.exit_reasons == [("unsubscribed", 1)] and f.pause_reasons == [
        ("asked to be contacted", 1)
    ]
    assert [(k, name) for k, name, _ in everything] == [
        ("quick", "Quick test course"),
        ("tiny", "Tiny test course"),
    ]
    assert everything[1][2].enrolled == 0


def test_date_range_filters_on_message_creation(history, factory, registry, clock, policy):
    clock.advance(days=2)
    add_and_enroll(factory, clock, registry, policy, campaign="quick", email="fay@example.com")
    with transaction(factory) as s:
        claim_due(s, clock, registry, policy)
    later = T0 + timedelta(days=1)
    with factory() as s:
        recent = rows_by_key(funnels.campaign_report(s, registry, "quick", since=later))
        early = rows_by_key(funnels.campaign_report(s, registry, "quick", until=later))
        recent_enrollments = funnels.enrollment_funnel(s, "quick", since=later)
    # fay has no phone: her first step reached her by email, so it has no text row
    assert (recent[("one", "email")].created, recent[("one", "sms")].created) == (1, 0)
    assert recent[("one", "sms")].skip_reasons == []
    assert recent[("two", "email")].created == 0 and recent[("one", "email")].opens == 0
    assert recent[("one", "email")].delivery_rate is None
    assert early[("one", "email")].created == 4 and early[("one", "email")].opens == 1
    assert recent_enrollments.enrolled == 1


def test_steps_no_longer_in_the_file_come_last(history, factory, registry):
    with transaction(factory) as s:
        m = s.get(Message, history.msg[("ana", "three", "sms")])
        m.step_key = "old_step"
    with factory() as s:
        report = funnels.campaign_report(s, registry, "quick")
    assert report.steps[-1].step_key == "old_step" and report.steps[-1].position is None
    with factory() as s, pytest.raises(LookupError):
        funnels.campaign_report(s, registry, "nope")


def test_provider_health_over_a_window(history, factory, clock):
    with factory() as s:
        health = provider_health(s, clock, 60)
    email, sms = health.channels["email"], health.channels["sms"]
    # email: four accepted (two since bounced or failed by webhook), one refused at the call
    assert (email.attempts, email.sent, email.transient, email.permanent, email.unconfirmed) == (
        5,
        4,
        0,
        1,
        0,
    )
    assert email.error_rate == pytest.approx(0.2)
    assert (sms.attempts, sms.sent, sms.transient, sms.permanent, sms.unconfirmed) == (
        3,
        1,
        1,
        0,
        1,
    )
    assert sms.error_rate == pytest.approx(2 / 3)
    assert (
        health.due_backlog == 0 and health.oldest_due_age_seconds == 0.0
    )  # queued messages due now

    with transaction(factory) as s:
        m = s.get(Message, history.msg[("cy", "two", "email")])
        m.status, m.provider, m.updated_at = MessageStatus.FAILED, "sendgrid", clock.now()
        m.reason_code, m.reason = (
            Reason.RETRIES_EXHAUSTED,
            Reason.RETRIES_EXHAUSTED.text(attempts=6),
        )
        pause(s, clock, "sms", "twilio: 20003 authenticate", by="provider")
    with factory() as s:
        health = provider_health(s, clock, timedelta(minutes=60))
    assert (health.channels["email"].transient, health.channels["email"].permanent) == (1, 1)
    assert health.channels["sms"].paused and "20003" in health.channels["sms"].paused_reason

    clock.advance(hours=2)
    with factory() as s:
        quiet = provider_health(s, clock, 60)
    assert quiet.channels["email"].attempts == 0 and quiet.channels["email"].error_rate is None
    assert quiet.oldest_due_age_seconds == pytest.approx(7200)
    with factory() as s, pytest.raises(ValueError):
        provider_health(s, clock, 0)


# ---------------------------------------------------------------- contact queue


def test_queue_lists_oldest_first_with_real_contact_details(history, factory, clock):
    clock.advance(hours=1)
    with transaction(factory) as s:
        s.add(
            ContactRequest(
                subscriber_id=history.subscribers["cy"],
                status="open",
                preferred_channel="email",
                created_at=clock.now(),
            )
        )
        s.add(
            ContactRequest(subscriber_id=history.subscribers["ben"], status="closed", created_at=T0)
        )
    with factory() as s:
        items = contact_queue.queue(s)
    assert [i.first_name for i in items] == ["Ana", "Cy"]
    ana = items[0]
    assert (ana.phone, ana.email, ana.preferred_time, ana.campaign_key, ana.step_key) == (
        ANA_PHONE,
        ANA_EMAIL,
        "mornings",
        "quick",
        "one",
    )
    assert ANA_PHONE not in repr(ana) and ANA_EMAIL not in repr(ana) and "hip" not in repr(ana)


def test_marking_requests(history, factory, clock, caplog):
    rid = history.request_id
    caplog.set_level(logging.DEBUG)
    with transaction(factory) as s:
        contact_queue.mark(s, clock, rid, "contacted", by="admin:nurse", note="left a voicemail")
    with transaction(factory) as s:
        contact_queue.mark(
            s, clock, str(rid), "contacted", by="admin:nurse"
        )  # a double click: no-op
    with factory() as s:
        req = s.get(ContactRequest, rid)
        assert (req.status, req.handled_at) == ("contacted", T0)
        (audit,) = s.scalars(select(Event).where(Event.type == contact_queue.HANDLED_EVENT)).all()
        assert audit.payload == {
            "request_id": rid,
            "from": "open",
            "to": "contacted",
            "by": "admin:nurse",
            "note": "left a voicemail",
        }
        assert [i.status for i in contact_queue.queue(s)] == ["contacted"]
    with transaction(factory) as s:
        contact_queue.mark(s, clock, rid, "closed", by="admin:nurse")
    with factory() as s:
        assert contact_queue.queue(s) == []
    assert ANA_PHONE not in caplog.text and ANA_EMAIL not in caplog.text

    cases = [
        (rid, "contacted", "already closed"),
        (rid, "open", "must be one of contacted, closed"),
        (99999, "closed", "no contact request 99999"),
        ("abc", "closed", "whole number"),
    ]
    for request_id, status, words in cases:
        with transaction(factory) as s, pytest.raises(ValueError, match=words):
            contact_queue.mark(s, clock, request_id, status, by="admin:nurse")
    with transaction(factory) as s, pytest.raises(ValueError, match="who handled"):
        contact_queue.mark(s, clock, rid, "closed", by=" ")


# ---------------------------------------------------------------- CLI


def test_report_command_prints_the_funnel_table_and_json(history, factory, clock):
    obj = drip_context(factory, clock)
    out = CliRunner().invoke(main, ["report", "quick"], obj=obj)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "Quick test course (quick v1)"
    header = next(i for i, line in enumerate(lines) if line.startswith("#"))
    first = lines[header + 2].split()
    assert first[:6] == ["1", "one", "email", "4", "2", "1"] and first[-4:] == [
        "50.0%",
        "100.0%",
        "100.0%",
        "delivered",
    ]
    # opens and clicks as unique/total, then the machines' events left out
    assert first[11:14] == ["1/2", "1/1", "3"]
    assert "three/sms skipped: no phone number (1)" in out.output
    assert "left out as a machine's: 2 open(s), 1 click(s)" in out.output
    assert "email rates divide by delivered (the provider reports deliveries)" in out.output
    assert "one/email clicks per link u/t: read online 1/1" in out.output

    as_json = CliRunner().invoke(
        main,
        ["report", "quick", "--json", "--since", "2026-03-02", "--until", "2026-03-02"],
        obj=obj,
    )
    data = json.loads(as_json.output)
    assert data["steps"][0]["sent"] == 2 and data["steps"][0]["delivery_rate"] == 0.5
    assert data["enrollments"]["exited"] == 1
    none = json.loads(
        CliRunner()
        .invoke(main, ["report", "quick", "--json", "--since", "2026-03-03"], obj=obj)
        .output
    )
    assert none["steps"][0]["created"] == 0

    missing = CliRunner().invoke(main, ["report", "nope"], obj=obj)
    assert missing.exit_code == 1 and "no campaign 'nope'" in missing.output


def test_contacts_command_lists_masked_and_marks(history, factory, clock):
    obj = drip_context(factory, clock)
    listed = CliRunner().invoke(main, ["contacts"], obj=obj)
    assert listed.exit_code == 0 and "Ana" in listed.output
    assert (
        ANA_PHONE not in listed.output
        and "+***43" in listed.output
        and "a***@example.com" in listed.output
    )
    revealed = CliRunner().invoke(main, ["contacts", "--reveal"], obj=obj)
    assert ANA_PHONE in revealed.output and ANA_EMAIL in revealed.output

    marked = CliRunner().invoke(
        main,
        [
            "contacts",
            "--mark",
            str(history.request_id),
            "--as",
            "closed",
            "--by",
            "kim",
            "--note",
            "called back",
        ],
        obj=obj,
    )
    assert marked.exit_code == 0, marked.output
    with factory() as s:
        assert s.get(ContactRequest, history.request_id).status == "closed"
    assert "nobody is waiting" in CliRunner().invoke(main, ["contacts"], obj=obj).output
    assert CliRunner().invoke(main, ["contacts", "--mark", "1"], obj=obj).exit_code == 2
    bad = CliRunner().invoke(main, ["contacts", "--mark", "99999", "--as", "closed"], obj=obj)
    assert bad.exit_code == 1 and "no contact request 99999" in bad.output
