"""Unconfirmed messages settle themselves where the provider can tell (a Twilio look-up
through the real SDK against the fake), what is left is flagged for ops once with its
age, and ops settle in bulk from the CLI and the admin page after a confirmation step.
On SQLite and PostgreSQL."""

from __future__ import annotations

import collections
from datetime import timedelta
from urllib.parse import unquote

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.providers import Outcome, SendResult
from campaigns.delivery.sending import send_batch
from campaigns.delivery.unconfirmed import (
    Selection,
    SettlePolicy,
    flag_undecided,
    preview_many,
    settle_many,
    settle_unconfirmed,
    undecided,
)
from campaigns.models import Message
from campaigns.reasons import Reason
from campaigns.states import MessageStatus
from tests.fakes import FakeTwilio
from tests.helpers import add_and_enroll, drip_context, messages
from workers.cli import main
from workers.providers.twilio import TwilioSms

SID, TOKEN = "AC" + "5" * 32, "twilio-test-token"
POLICY = SettlePolicy(
    lookup_after=timedelta(seconds=30),
    alert_after=timedelta(minutes=15),
    lease=timedelta(minutes=5),
)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def enroll_texts(factory, clock, registry, policy, n: int) -> list[int]:
    for i in range(n):
        add_and_enroll(factory, clock, registry, policy, campaign="quick", phone=f"+1202555{i:04d}")
    with transaction(factory) as s:
        return claim_due(s, clock, registry, policy).sms


def refs(fake) -> list[str]:
    """The public token of every text the fake created (from its status-callback ref)."""
    return [
        unquote(f["StatusCallback"].rsplit("ref=", 1)[1]).rpartition(".")[0]
        for f in fake.sent_messages()
    ]


class Unknown:
    """A provider that answers every call with an unknown outcome and cannot be asked."""

    name, max_batch = "mystery", 100

    def send_emails(self, items):
        return [SendResult(i.message_id, Outcome.UNKNOWN, error="HTTP 502") for i in items]

    send_sms = send_emails


def test_texts_after_500s_are_found_at_twilio_or_sent_again_once(
    send_ctx, factory, clock, registry, policy
):
    with FakeTwilio(account_sid=SID, auth_token=TOKEN, clock=clock.now) as fake:
        twilio = TwilioSms(
            SID,
            TOKEN,
            status_base_url="https://care.example",
            from_number="+15557650002",
            api_base_url=fake.url,
            timeout=5.0,
        )
        send_ctx.sms_provider = twilio
        ids = enroll_texts(factory, clock, registry, policy, 12)
        fake.fail_creates(1.0, created_share=0.5)  # every call a 500; half were created
        assert send_batch(send_ctx, "sms", ids).unconfirmed == 12
        created = {form["To"] for form, made in fake.failed_creates if made}
        assert 0 < len(created) < 12
        with transaction(factory) as s:  # too soon: Twilio's records may lag the call
            assert settle_unconfirmed(s, clock, {"sms": twilio}, POLICY)[1]["confirmed"] == 0
        clock.advance(minutes=1)
        with transaction(factory) as s:
            work, counts = settle_unconfirmed(s, clock, {"sms": twilio}, POLICY)
        assert counts == {"confirmed": len(created), "resent": 12 - len(created), "undecided": 0}
        by_id = {m.id: m for m in messages(factory)}
        sids = {m["sid"] for m in (fake.message(sid) for sid in fake._messages)}
        for m in by_id.values():
            if m.status == MessageStatus.SENT:
                assert m.reason_code == Reason.CONFIRMED_BY_LOOKUP and m.provider_message_id in sids
            else:
                assert (m.status, m.reason_code) == (MessageStatus.QUEUED, Reason.NOT_RECEIVED)
        assert sorted(work.sms) == sorted(i for i, m in by_id.items() if m.status == "queued")
        fake.fail_creates(0.0)
        send_batch(send_ctx, "sms", work.sms)
        assert {m.status for m in messages(factory)} == {MessageStatus.SENT}
        counted = collections.Counter(refs(fake))
        assert len(counted) == 12 and set(counted.values()) == {1}  # each person texted once


def test_a_text_in_the_window_without_our_links_leaves_it_undecided(
    send_ctx, factory, clock, registry, policy
):
    with FakeTwilio(account_sid=SID, auth_token=TOKEN, clock=clock.now) as fake:
        twilio = TwilioSms(
            SID, TOKEN, "https://care.example", from_number="+15557650002", api_base_url=fake.url
        )
        send_ctx.sms_provider = twilio
        ids = enroll_texts(factory, clock, registry, policy, 1)
        fake.fail_creates(1.0, created_share=0.0)  # not created
        send_batch(send_ctx, "sms", ids)
        fake.fail_creates(0.0)
        # Another text of ours reached the person in the same minutes (a HELP reply, say).
        fake.client().messages.create(to="+12025550000", from_="+15557650002", body="HELP: call")
        clock.advance(minutes=1)
        with transaction(factory) as s:
            _, counts = settle_unconfirmed(s, clock, {"sms": twilio}, POLICY)
        assert counts == {"confirmed": 0, "resent": 0, "undecided": 1}
        (msg,) = messages(factory)
        assert msg.status == MessageStatus.UNCONFIRMED and msg.next_attempt_at > clock.now()


def test_what_nobody_can_answer_is_flagged_once_then_settled_in_bulk(
    send_ctx, factory, clock, registry, policy
):
    send_ctx.sms_provider = Unknown()
    ids = enroll_texts(factory, clock, registry, policy, 3)
    send_batch(send_ctx, "sms", ids)
    clock.advance(minutes=10)
    with transaction(factory) as s:
        assert flag_undecided(s, clock, POLICY) == 0  # not yet old enough to tell ops
    clock.advance(minutes=6)
    with transaction(factory) as s:
        assert flag_undecided(s, clock, POLICY) == 3
    with transaction(factory) as s:
        assert flag_undecided(s, clock, POLICY) == 0  # said once, not every pass
    with factory() as s:
        count, oldest = undecided(s, clock)
    assert count == 3 and oldest == pytest.approx(16 * 60)
    # One more turns up after ops looked: a bulk settle as of then leaves it alone.
    as_of = clock.now()
    clock.advance(minutes=1)
    with transaction(factory) as s:
        s.get(Message, ids[0]).updated_at = clock.now()  # "became unconfirmed" just now
    selection = Selection(channel="sms", as_of=as_of)
    with factory() as s:
        assert preview_many(s, clock, selection)[0] == 2
    with transaction(factory) as s:
        settled, work = settle_many(s, clock, selection, "resend")
    assert settled == 2 and sorted(work.sms) == sorted(ids[1:])
    statuses = {m.id: (m.status, m.reason_code) for m in messages(factory)}
    assert statuses[ids[0]] == (MessageStatus.UNCONFIRMED, Reason.NEEDS_OPS)
    assert {statuses[i] for i in ids[1:]} == {(MessageStatus.QUEUED, Reason.SETTLED_RESEND)}


def test_cli_bulk_settle_asks_first(send_ctx, factory, clock, registry, policy):
    send_ctx.sms_provider = Unknown()
    ids = enroll_texts(factory, clock, registry, policy, 2)
    send_batch(send_ctx, "sms", ids)
    clock.advance(minutes=20)
    with transaction(factory) as s:
        flag_undecided(s, clock, POLICY)
    drip = drip_context(factory, clock)
    runner = CliRunner()
    status = runner.invoke(main, ["status"], obj=drip)
    assert "unconfirmed: 2 wait for ops" in status.output and "oldest 20m" in status.output
    listed = runner.invoke(main, ["outbox", "list"], obj=drip)
    assert listed.output.count("age=20m") == 2
    refused = runner.invoke(main, ["outbox", "settle-all", "--as", "failed"], obj=drip, input="n\n")
    assert refused.exit_code == 1 and "2 unconfirmed message(s), oldest 20m" in refused.output
    assert {m.status for m in messages(factory)} == {MessageStatus.UNCONFIRMED}
    done = runner.invoke(
        main, ["outbox", "settle-all", "--as", "failed", "--channel", "sms"], obj=drip, input="y\n"
    )
    assert done.exit_code == 0 and "2 message(s) settled: failed" in done.output, done.output
    assert {(m.status, m.reason_code) for m in messages(factory)} == {
        (MessageStatus.FAILED, Reason.SETTLED_FAILED)
    }
    nothing = runner.invoke(main, ["outbox", "settle-all", "--as", "sent", "--yes"], obj=drip)
    assert "no unconfirmed messages match" in nothing.output


def test_admin_bulk_settle_shows_the_count_then_settles_only_those(
    send_ctx, factory, clock, registry, policy, tmp_path
):
    from tests.test_admin import POST, make_app

    send_ctx.sms_provider = Unknown()
    ids = enroll_texts(factory, clock, registry, policy, 3)
    send_batch(send_ctx, "sms", ids)
    clock.advance(minutes=20)
    client = TestClient(make_app(factory, clock, tmp_path))
    page = client.get("/admin/outbox?status=unconfirmed", headers=POST)
    assert 'action="/admin/outbox/settle-all"' in page.text and "20m 0s" in page.text
    asked = client.post(
        "/admin/outbox/settle-all",
        data={"outcome": "sent", "channel": "sms", "older_than": "10"},
        headers=POST,
    )
    assert asked.status_code == 200 and "3 unconfirmed message(s) on sms" in asked.text
    assert 'name="confirm" value="yes"' in asked.text
    as_of = asked.text.split('name="as_of" value="', 1)[1].split('"', 1)[0]
    assert {m.status for m in messages(factory)} == {MessageStatus.UNCONFIRMED}  # only asked
    with transaction(factory) as s:  # one turns unconfirmed (again) after the count
        s.get(Message, ids[0]).updated_at = clock.now() + timedelta(seconds=1)
    clock.advance(seconds=5)
    confirmed = client.post(
        "/admin/outbox/settle-all",
        data={"outcome": "sent", "channel": "sms", "as_of": as_of, "confirm": "yes"},
        headers=POST,
    )
    assert "2 unconfirmed message(s) settled: sent." in confirmed.text
    statuses = {m.id: m.status for m in messages(factory)}
    assert statuses[ids[0]] == MessageStatus.UNCONFIRMED
    assert {statuses[i] for i in ids[1:]} == {MessageStatus.SENT}
    for bad in (
        {"outcome": "maybe"},
        {"outcome": "sent", "channel": "fax"},
        {"outcome": "sent", "older_than": "-1"},
        {"outcome": "sent", "as_of": "yesterday", "confirm": "yes"},
        {"outcome": "sent", "as_of": "2026-03-02T10:00:00", "confirm": "yes"},
    ):
        assert client.post("/admin/outbox/settle-all", data=bad, headers=POST).status_code == 400
    with factory() as s:
        assert s.scalar(select(Message.status).where(Message.id == ids[0])) == "unconfirmed"
