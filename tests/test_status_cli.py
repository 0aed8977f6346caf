"""`drip status` on SQLite and PostgreSQL: paused channels, open contact requests and
how many are over the target, unconfirmed messages (all, and those for ops), the inbox,
and the schedulers; the same figures in `--json`."""

from __future__ import annotations

import json

from click.testing import CliRunner

from campaigns.clock import SystemClock
from campaigns.db import transaction
from campaigns.delivery.leadership import record_tick, take_turn
from campaigns.delivery.sending import send_batch
from campaigns.delivery.unconfirmed import flag_undecided
from tests.helpers import drip_context
from tests.test_contact_queue_web import requests  # noqa: F401
from tests.test_inbox import text
from tests.test_unconfirmed_settle import POLICY, Unknown, enroll_texts
from workers.cli import main


def status(factory, clock, *args):
    result = CliRunner().invoke(main, ["status", *args], obj=drip_context(factory, clock))
    assert result.exit_code == 0, result.output
    return result.output


def test_an_empty_deployment_says_so_line_by_line(factory, clock):
    out = status(factory, clock)
    for line in (
        "paused:      no channel is paused",
        "contacts:    no open request",
        "unconfirmed: 0 in all, 0 waiting for ops",
        "inbox:       nothing waits",
        "scheduler:   no leader (no scheduler holds the lease): is `drip beat` running?",
        "last tick:   never published",
    ):
        assert line in out.splitlines(), out
    data = json.loads(status(factory, clock, "--json"))
    assert data["scheduler"] == {
        "leader": None,
        "term": None,
        "leader_heartbeat_age_seconds": None,
        "last_tick_age_seconds": None,
        "instances": [],
    }
    assert data["paused_channels"] == [] and data["contact_requests_open"] == 0


def test_status_shows_what_waits_for_a_person_and_who_schedules(
    send_ctx,
    factory,
    clock,
    registry,
    policy,
    requests,  # noqa: F811
):
    runner = CliRunner()
    paused = runner.invoke(
        main,
        ["channels", "pause", "email", "--reason", "key rotation"],
        obj=drip_context(factory, clock),
    )
    assert paused.exit_code == 0, paused.output
    text(factory, clock, "Is there a video for the stretches?", sender="+12025550143")
    send_ctx.sms_provider = Unknown()
    sent = send_batch(send_ctx, "sms", enroll_texts(factory, clock, registry, policy, 2))
    assert sent.unconfirmed >= 2
    wall = SystemClock()
    with transaction(factory) as s:
        take_turn(s, wall, "host-a", 11, 10.0)
        take_turn(s, wall, "host-b", 12, 10.0)
        record_tick(s, wall, "host-a", 11)

    data = json.loads(status(factory, clock, "--json"))
    assert [(p["channel"], p["reason"]) for p in data["paused_channels"]] == [
        ("email", "key rotation")
    ]
    # Open: ana (30 h), ben (20 h), cy (1 h); over the 24 h target: ana only.
    assert data["contact_requests_open"] == 3
    assert data["oldest_contact_request_age_seconds"] == 30 * 3600
    assert data["contact_requests_over_target"] == 1
    assert (data["unconfirmed"], data["unconfirmed_for_ops"]) == (sent.unconfirmed, 0)
    assert data["inbox_waiting"] == 1
    sched = data["scheduler"]
    assert sched["leader"] == "host-a:11" and sched["term"] == 1
    assert sched["last_tick_age_seconds"] < 5
    assert {i["holder"]: i["role"] for i in sched["instances"]} == {
        "host-a:11": "leading",
        "host-b:12": "standby",
    }

    clock.advance(minutes=20)
    with transaction(factory) as s:
        flag_undecided(s, clock, POLICY)
    out = status(factory, clock).splitlines()
    assert any(
        line.startswith("paused:      email since ") and "key rotation" in line for line in out
    )
    assert (
        "contacts:    3 open request(s), oldest 30h20m; 1 over the 24h target: drip contacts" in out
    )
    assert f"unconfirmed: {sent.unconfirmed} in all, {sent.unconfirmed} waiting for ops" in out
    assert "inbox:       1 text(s) wait for a person, oldest 20m" in out
    assert any(line.startswith("scheduler:   host-a:11 leads (term 1), heartbeat ") for line in out)
    assert any(line.strip().startswith("host-b:12 standby, heartbeat ") for line in out)
    assert any(line.startswith("last tick:   ") and line.endswith(" ago") for line in out)
