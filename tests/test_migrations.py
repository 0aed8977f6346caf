"""Migrations on a database that already holds rows: 0006 gives every existing message the
reason code its old sentence stands for, so reports count history by code too."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from alembic import command
from sqlalchemy import text

from campaigns.db import make_engine
from campaigns.migrate import alembic_config, upgrade
from campaigns.reasons import Reason
from tests.conftest import database_url

# Sentences the engine wrote before reason codes existed, and the code each must get.
OLD_REASONS = [
    ("no email address", Reason.NO_ADDRESS),
    ("no phone number", Reason.NO_ADDRESS),
    ("no sms consent", Reason.NO_CONSENT),
    ("subscriber unsubscribed", Reason.UNSUBSCRIBED),
    ("address suppressed: bounce", Reason.ADDRESS_SUPPRESSED),
    ("enrollment exited", Reason.ENROLLMENT_EXITED),
    ("enrollment exited: unsubscribed", Reason.ENROLLMENT_EXITED),
    ("outside text hours in the subscriber's time zone", Reason.OUTSIDE_TEXT_HOURS),
    ("template error", Reason.TEMPLATE_ERROR),
    ("accepted by provider", Reason.ACCEPTED),
    ("temporary provider error", Reason.TEMPORARY_ERROR),
    ("gave up after 6 attempts", Reason.RETRIES_EXHAUSTED),
    ("channel paused: provider configuration error (20003)", Reason.CHANNEL_PAUSED),
    ("provider call outcome unknown; awaiting webhook", Reason.OUTCOME_UNKNOWN),
    ("lease expired during the provider call; it may have been sent", Reason.LEASE_EXPIRED),
    ("confirmed by provider look-up", Reason.CONFIRMED_BY_LOOKUP),
    ("provider never received it; sending again", Reason.NOT_RECEIVED),
    ("settled by ops: provider has it", Reason.SETTLED_SENT),
    ("settled by ops: provider never sent it; not resending", Reason.SETTLED_FAILED),
    ("settled by ops: resending", Reason.SETTLED_RESEND),
    ("twilio webhook: delivered", Reason.WEBHOOK),
    ("sendgrid webhook: bounced, error 550", Reason.WEBHOOK),
    ("invalid number", Reason.REJECTED),
]


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    name = f"drip_migrate_{uuid.uuid4().hex[:8]}"
    pg_admin = request.getfixturevalue("pg_admin")
    admin = psycopg.connect(pg_admin, autocommit=True, connect_timeout=5)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(pg_admin, name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_0006_gives_old_messages_the_code_of_their_sentence(empty_db):
    upgrade(empty_db, "0005")
    now = datetime(2026, 11, 1, tzinfo=UTC)
    engine = make_engine(empty_db)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, status, public_token, created_at, updated_at) "
                "VALUES (1, 'active', 'tok', :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO enrollments (id, subscriber_id, campaign_key, campaign_version, "
                "steps_done, status, source, created_at, updated_at) "
                "VALUES (1, 1, 'c', 1, 0, 'active', 'api', :now, :now)"
            ),
            {"now": now},
        )
        rows = [*OLD_REASONS, (None, None), ("an unforeseen sentence", None)]
        for i, (reason, _) in enumerate(rows, start=1):
            conn.execute(
                text(
                    "INSERT INTO messages (id, enrollment_id, subscriber_id, campaign_key, "
                    "campaign_version, step_key, channel, public_token, status, reason, attempts, "
                    "due_at, created_at, updated_at) VALUES (:id, 1, 1, 'c', 1, :step, 'email', "
                    ":token, :status, :reason, 0, :now, :now, :now)"
                ),
                {
                    "id": i,
                    "step": f"s{i}",
                    "token": f"t{i}",
                    "reason": reason,
                    "now": now,
                    # A sentence nobody foresaw, on a message that did not fail, gets no code.
                    "status": "sent" if reason == "an unforeseen sentence" else "failed",
                },
            )
        conn.execute(
            text(
                "INSERT INTO events (message_id, subscriber_id, type, provider, occurred_at, "
                "received_at) VALUES (1, 1, 'sent', 'twilio', :now, :now)"
            ),
            {"now": now},
        )
    engine.dispose()

    upgrade(empty_db)

    engine = make_engine(empty_db)
    with engine.connect() as conn:
        codes = dict(conn.execute(text("SELECT reason, reason_code FROM messages")).all())
    engine.dispose()
    assert codes == {reason: code.value for reason, code in OLD_REASONS} | {
        None: None,
        "an unforeseen sentence": None,
    }

    # And back: the column goes, the rows and the events that point at them stay.
    command.downgrade(alembic_config(empty_db), "0005")
    engine = make_engine(empty_db)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == len(rows)
        assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 1
    engine.dispose()


def test_0007_marks_events_the_old_payload_flags_called_automated(empty_db):
    upgrade(empty_db, "0006")
    now = datetime(2026, 11, 1, tzinfo=UTC)
    payloads = [
        {"route": "o", "maybe_automated": True},
        {"route": "m", "maybe_automated": False},
        {"event": "open", "sg_machine_open": True},
        {"event": "open"},
        None,
    ]
    engine = make_engine(empty_db)
    with engine.begin() as conn:
        for i, payload in enumerate(payloads, start=1):
            conn.execute(
                text(
                    "INSERT INTO events (id, type, provider, occurred_at, received_at, payload) "
                    "VALUES (:id, 'opened', 'tracking', :now, :now, :payload)"
                ),
                {"id": i, "now": now, "payload": None if payload is None else json.dumps(payload)},
            )
    engine.dispose()

    upgrade(empty_db)

    engine = make_engine(empty_db)
    with engine.connect() as conn:
        flags = [bool(a) for (a,) in conn.execute(text("SELECT automated FROM events ORDER BY id"))]
    engine.dispose()
    assert flags == [True, False, True, False, False]
