"""Every text a patient writes is acted on or put in front of a person (invariant 12):
what is neither a keyword nor an opt-out waits in the inbox until someone handles it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from campaigns.audience.consent import has_consent
from campaigns.audience.suppression import suppression_for
from campaigns.db import transaction
from campaigns.models import InboxItem
from campaigns.states import InboxStatus
from campaigns.tracking import inbox
from campaigns.tracking.inbound import KINDS, InboundText, handle_inbound_sms
from tests.helpers import add_and_enroll, drip_context
from tests.test_admin import AUTH, POST, make_app
from workers.cli import main

PHONE = "+12025550143"
STRANGER = "+12025550199"


def text(factory, clock, body, sender=PHONE, sid=None, seen=None):
    with transaction(factory) as s:
        return handle_inbound_sms(
            s,
            clock,
            InboundText("twilio", sender, body, sid or f"SM{abs(hash(body))}"),
            seen=seen,
        )


def items(factory):
    with factory() as s:
        return s.scalars(select(InboxItem).order_by(InboxItem.id)).all()


def test_a_question_waits_in_the_inbox_once_and_keywords_never_do(factory, clock, registry, policy):
    sid, _ = add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    assert text(factory, clock, "Is there a video for the stretches?", sid="SM1") is None
    text(factory, clock, "Is there a video for the stretches?", sid="SM1")  # a retry
    text(factory, clock, "HELP")
    text(factory, clock, "please stop texting me")  # an opt-out, acted on at once
    (item,) = items(factory)
    assert (item.subscriber_id, item.phone, item.status) == (sid, PHONE, InboxStatus.OPEN)
    assert item.body == "Is there a video for the stretches?"
    with factory() as s:
        assert inbox.waiting(s).count == 1


def test_each_text_is_told_as_one_kind_for_the_counters(factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    kinds: list[str] = []
    for body, sid, sender in (
        ("Is there a video?", "SM1", PHONE),
        ("Is there a video?", "SM1", PHONE),  # the provider's retry
        ("HELP", "SM2", PHONE),
        ("STOP", "SM3", PHONE),
        ("START", "SM4", PHONE),
        ("hello", "SM5", "LUNARA"),  # an alphanumeric sender: nothing to act on
    ):
        text(factory, clock, body, sender=sender, sid=sid, seen=kinds.append)
    assert kinds == ["inbox", "duplicate", "help", "opt_out", "opt_in", "no_sender"]
    assert set(kinds) <= set(KINDS)


def test_treating_a_text_as_an_opt_out_stops_texts(factory, clock, registry, policy):
    sid, _ = add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    text(factory, clock, "I'm in hospital, leave it for now")
    (item,) = items(factory)
    with transaction(factory) as s:
        inbox.handle(s, clock, item.id, "opt_out", by="admin:nina")
        inbox.handle(s, clock, str(item.id), "opt_out", by="admin:nina")  # a double click
    with factory() as s:
        assert not has_consent(s, sid, "sms")
        assert inbox.waiting(s).count == 0
    (item,) = items(factory)
    assert (item.status, item.handled_by) == (InboxStatus.OPTED_OUT, "admin:nina")
    with pytest.raises(inbox.InboxError, match="already handled"), transaction(factory) as s:
        inbox.handle(s, clock, item.id, "done", by="admin:nina")


def test_a_stranger_s_text_treated_as_an_opt_out_suppresses_the_number(factory, clock):
    text(factory, clock, "who is this?", sender=STRANGER)
    (item,) = items(factory)
    assert item.subscriber_id is None
    with transaction(factory) as s:
        inbox.handle(s, clock, item.id, "opt_out", by="cli")
    with factory() as s:
        assert suppression_for(s, "sms", STRANGER).reason == "stop"


@pytest.mark.parametrize(
    ("item_id", "action", "message"),
    [
        ("abc", "done", "whole number"),
        ("0", "done", "no text"),
        (str(2**31), "done", "no text"),
        (str(2**70), "done", "no text"),
        ("1", "delete", "action must be one of"),
    ],
)
def test_bad_requests_say_why_and_change_nothing(factory, clock, item_id, action, message):
    text(factory, clock, "hello?")
    with pytest.raises(inbox.InboxError, match=message), transaction(factory) as s:
        inbox.handle(s, clock, item_id, action, by="cli")
    assert [i.status for i in items(factory)] == [InboxStatus.OPEN]


def test_drip_inbox_lists_masked_and_marks_done(factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, phone=PHONE, first_name="Ana")
    text(factory, clock, "Can I do these with a bad knee?")
    (item,) = items(factory)
    obj = drip_context(factory, clock)
    listed = CliRunner().invoke(main, ["inbox"], obj=obj)
    assert listed.exit_code == 0, listed.output
    assert "Ana" in listed.output and "bad knee" in listed.output and PHONE not in listed.output
    revealed = CliRunner().invoke(main, ["inbox", "--reveal"], obj=obj)
    assert PHONE in revealed.output
    done = CliRunner().invoke(main, ["inbox", "--done", str(item.id), "--by", "nina"], obj=obj)
    assert done.exit_code == 0 and "done" in done.output
    bad = CliRunner().invoke(main, ["inbox", "--done", "nope"], obj=obj)
    assert bad.exit_code == 1 and "whole number" in bad.output
    assert "Nothing waits." in CliRunner().invoke(main, ["inbox"], obj=obj).output
    status = CliRunner().invoke(main, ["status"], obj=obj)
    assert "inbox:       nothing waits" in status.output


def test_the_admin_inbox_page_shows_texts_escaped_and_handles_them(
    factory, clock, registry, policy, tmp_path
):
    sid, _ = add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    text(factory, clock, "<b>why</b> so many texts?")
    (item,) = items(factory)
    client = TestClient(make_app(factory, clock, tmp_path))
    page = client.get("/admin/inbox", headers=AUTH)
    assert page.status_code == 200 and PHONE in page.text
    assert "&lt;b&gt;why&lt;/b&gt;" in page.text and "<b>why" not in page.text
    assert "drip_inbox_open 1" in client.get("/metrics", headers=AUTH).text
    cross = client.post(f"/admin/inbox/{item.id}", data={"action": "opt_out"}, headers=AUTH)
    assert cross.status_code == 403  # no Origin: a form posted from elsewhere
    bad = client.post("/admin/inbox/abc", data={"action": "done"}, headers=POST)
    assert bad.status_code == 400
    done = client.post(f"/admin/inbox/{item.id}", data={"action": "opt_out"}, headers=POST)
    assert done.status_code == 200
    with factory() as s:
        assert not has_consent(s, sid, "sms")
        assert (
            s.scalar(
                select(func.count())
                .select_from(InboxItem)
                .where(InboxItem.status == InboxStatus.OPEN)
            )
            == 0
        )
    assert "drip_inbox_open 0" in client.get("/metrics", headers=AUTH).text


def test_a_text_with_control_characters_still_reaches_the_inbox(factory, clock):
    text(factory, clock, "hi\x00 there\x07, is this\nLunara?")
    (item,) = items(factory)
    assert item.body == "hi there, is this\nLunara?"
