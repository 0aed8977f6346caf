"""The CLI's state-changing commands write the same audit entries as the workspace's
buttons (campaigns/staff/audited.py), as `cli:<os user>` with the admin role, origin cli;
a command that changes nothing writes none. On SQLite and PostgreSQL."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from campaigns.db import transaction
from campaigns.models import ApiKey, AuditEntry, InboxItem, Message
from campaigns.states import InboxStatus, MessageStatus
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll, drip_context
from tests.test_contact_queue_web import audit_since, last_audit_id
from tests.test_inbox import PHONE, text
from tests.test_unconfirmed_settle import enroll_texts
from workers.cli import main

USER = "rosa"
ACTOR = f"cli:{USER}"


@pytest.fixture(autouse=True)
def _login_name(monkeypatch):
    # getpass.getuser reads LOGNAME first: the OS user the entries are written as.
    monkeypatch.setenv("LOGNAME", USER)


def drip(factory, clock, *args: str):
    return CliRunner().invoke(main, list(args), obj=drip_context(factory, clock))


def entries_since(factory, first: int) -> list[AuditEntry]:
    found = audit_since(factory, first)
    for e in found:
        assert (e.actor, e.role, e.origin) == (ACTOR, "admin", "cli")
    return found


def unconfirmed(factory, clock, registry, policy, n: int) -> list[int]:
    ids = enroll_texts(factory, clock, registry, policy, n)
    with transaction(factory) as s:
        for message_id in ids:
            msg = s.get(Message, message_id)
            msg.status, msg.updated_at = MessageStatus.UNCONFIRMED, clock.now()
    clock.advance(minutes=1)
    return ids


def test_channels_pause_and_resume_are_audited(factory, clock):
    first = last_audit_id(factory)
    paused = drip(factory, clock, "channels", "pause", "email", "--reason", "SendGrid incident")
    assert paused.exit_code == 0, paused.output
    again = drip(factory, clock, "channels", "pause", "email", "--reason", "again")
    assert again.exit_code == 0, again.output  # already paused: nothing changes
    resumed = drip(factory, clock, "channels", "resume", "email")
    assert resumed.exit_code == 0, resumed.output
    assert drip(factory, clock, "channels", "resume", "email").exit_code == 0  # not paused
    pause, resume = entries_since(factory, first)
    assert (pause.action, pause.target_type, pause.target_id) == (
        "channel.pause",
        "channel",
        "email",
    )
    assert pause.before == {"paused": False}
    assert pause.after == {
        "paused": True,
        "reason": "SendGrid incident",
        "paused_by": f"admin:{ACTOR}",
    }
    assert (resume.action, resume.target_id) == ("channel.resume", "email")
    assert resume.before == pause.after
    assert resume.after == {"paused": False, "requeued": 0}


def test_outbox_settle_is_audited_and_a_refused_one_is_not(factory, clock, registry, policy):
    (message_id,) = unconfirmed(factory, clock, registry, policy, 1)
    first = last_audit_id(factory)
    done = drip(factory, clock, "outbox", "settle", str(message_id), "--as", "failed")
    assert done.exit_code == 0, done.output
    refused = drip(factory, clock, "outbox", "settle", str(message_id), "--as", "sent")
    assert refused.exit_code == 1  # no longer unconfirmed
    (entry,) = entries_since(factory, first)
    assert (entry.action, entry.target_type, entry.target_id) == (
        "message.settle",
        "message",
        str(message_id),
    )
    assert entry.before == {"status": "unconfirmed", "reason_code": None}
    assert entry.after["status"] == "failed" and entry.after["outcome"] == "failed"


def test_outbox_settle_all_is_one_entry_for_the_lot(factory, clock, registry, policy):
    unconfirmed(factory, clock, registry, policy, 2)
    first = last_audit_id(factory)
    done = drip(factory, clock, "outbox", "settle-all", "--as", "sent", "--channel", "sms", "--yes")
    assert done.exit_code == 0 and "2 message(s) settled" in done.output, done.output
    (entry,) = entries_since(factory, first)
    assert (entry.action, entry.target_type, entry.target_id) == (
        "message.settle_all",
        "outbox",
        "sms",
    )
    assert entry.before == {"status": "unconfirmed", "count": 2}
    assert entry.after == {
        "outcome": "sent",
        "count": 2,
        "older_than_minutes": 0,
        "as_of": clock.now().isoformat(),
    }
    with factory() as s:
        statuses = s.scalars(select(Message.status).where(Message.channel == "sms")).all()
        assert set(statuses) == {MessageStatus.SENT}


def test_inbox_done_and_opt_out_are_audited(factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    text(factory, clock, "Can I do these with a bad knee?")
    text(factory, clock, "Is there a video?")
    with factory() as s:
        one, two = s.scalars(select(InboxItem.id).order_by(InboxItem.id)).all()
    first = last_audit_id(factory)
    assert drip(factory, clock, "inbox", "--done", str(one)).exit_code == 0
    assert drip(factory, clock, "inbox", "--done", str(one)).exit_code == 0  # twice: no change
    assert drip(factory, clock, "inbox", "--done", "99999").exit_code == 1
    assert drip(factory, clock, "inbox", "--opt-out", str(two)).exit_code == 0
    done, opted = entries_since(factory, first)
    assert (done.action, done.target_type, done.target_id) == (
        "inbox.handle",
        "inbox_item",
        str(one),
    )
    assert done.before == {"status": InboxStatus.OPEN.value, "handled_by": None}
    assert done.after == {"status": "done", "handled_by": f"admin:{ACTOR}", "action": "done"}
    assert (opted.target_id, opted.after["action"]) == (str(two), "opt_out")
    assert opted.before["status"] == InboxStatus.OPEN.value


def test_inbox_by_names_who_acted(factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, phone=PHONE)
    text(factory, clock, "Can I do these with a bad knee?")
    with factory() as s:
        item_id = s.scalars(select(InboxItem.id)).one()
    first = last_audit_id(factory)
    assert drip(factory, clock, "inbox", "--done", str(item_id), "--by", "nina").exit_code == 0
    (entry,) = audit_since(factory, first)
    assert (entry.actor, entry.origin) == ("cli:nina", "cli")
    assert entry.after["handled_by"] == "admin:cli:nina"


def test_campaigns_promote_is_audited(factory, clock, tmp_path):
    folder = tmp_path / "defs"
    folder.mkdir()
    shutil.copy(FIXTURES / "experiments" / "trial.yaml", folder / "trial.yaml")
    first = last_audit_id(factory)
    args = ["--dir", str(folder), "--templates", str(FIXTURES / "templates")]
    bad = drip(factory, clock, "campaigns", "promote", "trial", "lesson", "gold", *args)
    assert bad.exit_code == 1 and "no variant 'gold'" in bad.output
    done = drip(factory, clock, "campaigns", "promote", "trial", "lesson", "story", *args)
    assert done.exit_code == 0, done.output
    (entry,) = entries_since(factory, first)
    assert (entry.action, entry.target_type, entry.target_id) == (
        "campaign.promote",
        "campaign_step",
        "trial/lesson",
    )
    assert "story" in entry.before["variants"]
    assert entry.after["variants"] == [] and entry.after["promoted"] == "story"


def test_api_keys_create_and_revoke_are_audited_without_the_key(factory, clock):
    first = last_audit_id(factory)
    made = drip(factory, clock, "api-keys", "create", "booking system")
    assert made.exit_code == 0, made.output
    key = made.output.split(": ", 1)[1].split()[0]
    assert key.startswith("drip_")
    with factory() as s:
        row = s.scalars(select(ApiKey)).one()
    assert drip(factory, clock, "api-keys", "create", "").exit_code == 1  # no name: no key
    assert drip(factory, clock, "api-keys", "revoke", str(row.id)).exit_code == 0
    assert drip(factory, clock, "api-keys", "revoke", str(row.id)).exit_code == 0  # already
    created, revoked = entries_since(factory, first)
    assert (created.action, created.target_type, created.target_id) == (
        "api_key.create",
        "api_key",
        str(row.id),
    )
    assert created.before is None
    assert created.after == {"name": "booking system", "prefix": row.prefix}
    assert (revoked.action, revoked.target_id) == ("api_key.revoke", str(row.id))
    assert revoked.before == {"prefix": row.prefix, "revoked_at": None}
    assert revoked.after["revoked_at"] is not None
    for entry in (created, revoked):
        assert key not in repr((entry.before, entry.after))
