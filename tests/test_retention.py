"""Retention: old raw events rolled up and deleted, old messages' detail cleared, and every
report (funnel, links, machines, trend, cohorts, the results page) and every branch
condition reads the same figures before and after; batches, a second run, a run cut
short; `drip retention run [--dry-run]` and its audit entries; the settings."""

from __future__ import annotations

import random
import re
import secrets
from dataclasses import asdict
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from campaigns.audience.eligibility import Facts
from campaigns.clock import FixedClock
from campaigns.db import transaction
from campaigns.models import (
    AuditEntry,
    Enrollment,
    Event,
    EventRollup,
    InboxItem,
    Message,
    Subscriber,
)
from campaigns.reporting import retention
from campaigns.reporting.filters import Filters
from campaigns.reporting.results import results
from campaigns.reporting.timelines import course_timelines
from campaigns.sequences.situations import read_situations
from campaigns.states import EventType, MessageStatus
from settings import SettingsError, load_settings
from tests.conftest import T0
from tests.helpers import add_and_enroll, drip_context
from workers.cli import main

E = EventType
STEPS = (("one", "email"), ("one", "sms"), ("two", "email"), ("three", "sms"))
DAYS = 40  # history spread over this many days before "now"
LINKS = [
    {"route": "l", "link": "exercises", "url": "https://care.example/exercises"},
    {"route": "l", "link": "video", "url": "https://care.example/video?" + "x" * 3000},
    {"route": "m"},
    {"event": "click", "url": "https://provider.example/track"},
]
MACHINE = ["scanner_burst", "too_soon", None]


def _message(s, enrollment, step, channel, at, status) -> Message:
    m = Message(
        enrollment_id=enrollment.id,
        subscriber_id=enrollment.subscriber_id,
        campaign_key="quick",
        campaign_version=1,
        step_key=step,
        channel=channel,
        public_token=secrets.token_urlsafe(16)[:22],
        status=status,
        due_at=at,
        created_at=at,
        updated_at=at,
        sent_at=at if status in (MessageStatus.SENT, MessageStatus.DELIVERED) else None,
        provider="outbox",
        provider_message_id=f"p-{secrets.token_hex(6)}",
        last_error="550 mailbox full" if status == MessageStatus.FAILED else None,
        lease_token="lease-left-behind",
    )
    s.add(m)
    s.flush()
    return m


def _event(s, m, kind, at, payload=None, automated=False, why=None) -> Event:
    ev = Event(
        message_id=m.id,
        subscriber_id=m.subscriber_id,
        type=kind,
        provider="tracking",
        occurred_at=at,
        received_at=at,
        payload=payload,
        automated=automated,
        automated_reason=why,
    )
    s.add(ev)
    return ev


def build_history(factory, clock, registry, policy, people=24, seed=7) -> None:
    """People on `quick` over the last DAYS days: messages in every state, opens (some
    repeated over several days, some a machine's), clicks on four kinds of link,
    unsubscribes, delivery receipts and an inbound text with its inbox item."""
    rng = random.Random(seed)
    now = clock.now()
    for n in range(people):
        add_and_enroll(
            factory,
            clock,
            registry,
            policy,
            campaign="quick",
            email=f"p{n}@example.com",
            phone=f"+1202555{n:04d}",
            first_name=f"P{n}",
        )
    with transaction(factory) as s:
        # The course's own first claims are not part of this history.
        s.query(Message).delete()
        for enrollment in s.scalars(select(Enrollment).order_by(Enrollment.id)):
            start = now - timedelta(days=rng.randint(1, DAYS), hours=rng.randint(0, 23))
            enrollment.created_at = start
            for i, (step, channel) in enumerate(STEPS):
                at = start + timedelta(hours=6 * i)
                status = rng.choice(
                    [MessageStatus.DELIVERED] * 5
                    + [MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.BOUNCED]
                )
                m = _message(s, enrollment, step, channel, at, status)
                _event(s, m, E.DELIVERED, at + timedelta(seconds=5), {"event": "delivered"})
                if channel == "email" and rng.random() < 0.3:
                    # A scanner fetching everything seconds after delivery.
                    why = rng.choice(MACHINE)
                    _event(s, m, E.OPENED, at + timedelta(seconds=7), automated=True, why=why)
                    _event(s, m, E.CLICKED, at + timedelta(seconds=8), LINKS[0], True, why)
                for _ in range(rng.choice([0, 0, 1, 2, 4])):  # opens over the following days
                    later = at + timedelta(days=rng.randint(0, 6), minutes=rng.randint(1, 900))
                    if later < now:
                        _event(s, m, E.OPENED, later, {"route": "o"})
                for _ in range(rng.choice([0, 1, 3])):
                    later = at + timedelta(days=rng.randint(0, 3), minutes=rng.randint(1, 900))
                    if later < now:
                        _event(s, m, E.CLICKED, later, rng.choice(LINKS))
                if rng.random() < 0.08:
                    _event(s, m, E.UNSUBSCRIBED, at + timedelta(hours=3), {"event": "unsubscribe"})
        # A text someone sent, in front of a person: never pruned.
        m = s.scalars(select(Message).where(Message.channel == "sms")).first()
        text = _event(s, m, E.INBOUND, now - timedelta(days=DAYS), {"body": "is this right?"})
        s.flush()
        s.add(
            InboxItem(
                event_id=text.id,
                subscriber_id=m.subscriber_id,
                phone="+12025550000",
                body="is this right?",
                created_at=now - timedelta(days=DAYS),
            )
        )


def read_everything(factory, registry) -> dict:
    """Every figure the reports show, and what branch conditions see."""
    with factory() as s:
        out = {}
        for f in (Filters(), Filters(channel="email"), Filters(since=(T0 - timedelta(20)).date())):
            r = results(s, registry, "quick", f)
            out[repr(f)] = {
                "report": asdict(r.report),
                "trend": asdict(r.trend),
                "cohorts": asdict(r.cohorts),
            }
        campaign = registry.get("quick")
        enrollments = s.scalars(select(Enrollment).order_by(Enrollment.id)).all()
        subs = {sub.id: sub for sub in s.scalars(select(Subscriber))}
        people = [(e.id, subs[e.subscriber_id], campaign) for e in enrollments]
        situations = read_situations(s, people, Facts(s, list(subs.values())), {"engagement"})
        out["situations"] = {k: (v.opened, v.clicked) for k, v in situations.items()}
        return out


def what_people_did(factory, registry, policy) -> dict[int, set[str]]:
    """Each person's actions in their course timeline, without how many times: a pruned
    open is one action for all its times, at the first."""
    with factory() as s:
        return {
            t.subscriber_id: {re.sub(r" \(\d+ times\)$", "", a.what) for a in t.actions}
            for t in course_timelines(s, registry, policy, "quick", "US")
        }


def _count(factory, *where, model=Event) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_reports_read_the_same_after_a_prune(factory, clock, registry, policy):
    build_history(factory, clock, registry, policy)
    before = read_everything(factory, registry)
    assert before[repr(Filters())]["report"]["steps"][0]["opens"] > 0  # the history has opens
    did = what_people_did(factory, registry, policy)
    assert any(w.startswith("opened") for acts in did.values() for w in acts)
    total = _count(factory)
    later = FixedClock(clock.now())
    policy_ = retention.Policy(event_days=14, message_days=20, batch_size=137)
    cutoff = later.now() - timedelta(days=14)
    old = _count(factory, Event.occurred_at < cutoff, Event.type.in_(retention.PRUNED))
    old_opens = _count(factory, Event.occurred_at < cutoff, Event.type.in_(retention.ROLLED))
    assert 0 < old < total

    with factory() as s:
        planned = retention.plan(s, later, policy_)
    assert (planned.events_deleted, planned.events_rolled) == (old, old_opens)

    with factory() as s:
        out = retention.prune(s, later, policy_)
    assert out.events_deleted == old
    assert out.events_rolled == old_opens
    assert out.batches > old // 137  # bounded batches, not one statement
    assert _count(factory) == total - old
    assert _count(factory, Event.occurred_at < cutoff, Event.type.in_(retention.PRUNED)) == 0
    # The person's own text and its inbox item stay; so do unsubscribes.
    assert _count(factory, Event.type == E.INBOUND) == 1
    assert _count(factory, Event.type == E.UNSUBSCRIBED, Event.occurred_at < cutoff) > 0
    with factory() as s:
        rolled = s.scalar(select(func.sum(EventRollup.events)))
    assert rolled == old_opens

    assert read_everything(factory, registry) == before
    assert what_people_did(factory, registry, policy) == did

    # Messages: every row stays; old finished ones lost their error text and lease only.
    detail_cut = later.now() - timedelta(days=20)
    with factory() as s:
        old_msgs = s.scalars(select(Message).where(Message.updated_at < detail_cut)).all()
        assert old_msgs and all(m.last_error is None and m.lease_token is None for m in old_msgs)
        assert all(m.provider_message_id and m.status for m in old_msgs)
        young = s.scalars(select(Message).where(Message.updated_at >= detail_cut)).all()
        assert young and all(m.lease_token == "lease-left-behind" for m in young)

    # A second run finds nothing; the figures still hold.
    with factory() as s:
        again = retention.prune(s, later, policy_)
    assert (again.events_deleted, again.messages_cleared, again.batches) == (0, 0, 0)
    assert read_everything(factory, registry) == before

    # A week on, the next prune adds into the same rollups: still the same figures.
    with factory() as s:
        week_on = retention.prune(s, FixedClock(later.now() + timedelta(days=7)), policy_)
    assert week_on.events_deleted > 0
    assert read_everything(factory, registry) == before


def test_a_run_cut_short_is_finished_by_the_next(factory, clock, registry, policy):
    build_history(factory, clock, registry, policy, people=10, seed=3)
    before = read_everything(factory, registry)
    policy_ = retention.Policy(event_days=7, message_days=0, batch_size=20)
    with factory() as s:
        first = retention.prune(s, clock, policy_, max_batches=2)
    assert first.batches == 2
    assert read_everything(factory, registry) == before  # half done reads the same
    with factory() as s:
        rest = retention.prune(s, clock, policy_)
    assert rest.events_deleted > 0 and rest.messages_cleared == 0  # 0 days: kept forever
    assert read_everything(factory, registry) == before
    cutoff = clock.now() - timedelta(days=7)
    assert _count(factory, Event.occurred_at < cutoff, Event.type.in_(retention.PRUNED)) == 0


def test_zero_keeps_everything(factory, clock, registry, policy):
    build_history(factory, clock, registry, policy, people=4)
    total = _count(factory)
    with factory() as s:
        out = retention.prune(s, clock, retention.Policy(0, 0))
    assert (out.events_deleted, out.messages_cleared, out.batches) == (0, 0, 0)
    assert _count(factory) == total


def test_cli_dry_run_changes_nothing_and_a_run_is_audited(factory, clock, registry, policy):
    build_history(factory, clock, registry, policy, people=6)
    total = _count(factory)
    drip = drip_context(factory, clock)
    drip._settings = drip.settings.model_copy(
        update={"event_retention_days": 10, "retention_batch_size": 100}
    )
    runner = CliRunner()
    dry = runner.invoke(main, ["retention", "run", "--dry-run"], obj=drip)
    assert dry.exit_code == 0, dry.output
    assert "events: older than 10 days" in dry.output and "would roll up" in dry.output
    assert _count(factory) == total
    assert _count(factory, model=AuditEntry) == 0

    done = runner.invoke(main, ["retention", "run"], obj=drip)
    assert done.exit_code == 0, done.output
    assert "deleted" in done.output and "events/s" in done.output
    with factory() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "retention.prune")).all()
        deleted = sum(e.after["events_deleted"] for e in entries)
    assert entries and entries[0].actor.startswith("cli:")
    assert deleted == total - _count(factory) > 0


def test_cli_unknown_option_is_a_clear_error(factory, clock):
    out = CliRunner().invoke(
        main, ["retention", "run", "--days", "3"], obj=drip_context(factory, clock)
    )
    assert out.exit_code == 2 and "No such option" in out.output


@pytest.mark.parametrize("value", ["3", "-1", "many"])
def test_retention_settings_refuse_bad_values(value):
    with pytest.raises(SettingsError, match="EVENT_RETENTION_DAYS"):
        load_settings(event_retention_days=value)


def test_retention_settings_defaults():
    s = load_settings()
    assert (s.event_retention_days, s.message_detail_retention_days) == (180, 90)
    assert load_settings(message_detail_retention_days="0").message_detail_retention_days == 0


def test_the_daily_task_is_on_the_beat_schedule():
    import workers.tasks  # noqa: F401 (registers the tasks)
    from workers.app import app

    entry = app.conf.beat_schedule["retention"]
    assert entry["task"] == "drip.retention" and "drip.retention" in app.tasks
    assert entry["schedule"].hour == {3} and entry["schedule"].minute == {17}
    assert app.conf.task_routes["drip.retention"] == {"queue": "schedule"}
