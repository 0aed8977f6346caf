"""Exact windows (invariant 5): the send window and the 08:00-21:00 text hours are
[start, end) to the microsecond, judged at the moment of the provider call, per chunk.

Times are checked with a FixedClock; where the clock must move between composing a
message and calling the provider, it moves with the database: every commit advances it
(a slow database is what made a text go out at 21:00:00.87 in Dhaka)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select

from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.providers import Outcome, OutgoingSms, SendResult
from campaigns.delivery.sending import Candidate, _Judge, send_batch
from campaigns.models import Message
from campaigns.reasons import Reason
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.sequences.windows import Window, is_allowed, next_allowed
from campaigns.states import MessageStatus
from tests.conftest import FIXTURES
from tests.helpers import add_and_enroll
from workers.ratelimit import LocalBucket

NY = ZoneInfo("America/New_York")
DHAKA = ZoneInfo("Asia/Dhaka")  # UTC+6, no daylight saving
TEXT_HOURS = Window.every_day(8, 21)
US = timedelta(microseconds=1)


def local(zone, *args) -> datetime:
    return datetime(*args, tzinfo=zone).astimezone(UTC)


# -- the windows themselves ----------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        ((2026, 3, 2, 7, 59, 59, 999999), False),
        ((2026, 3, 2, 8, 0, 0), True),
        ((2026, 3, 2, 20, 59, 59, 999999), True),
        ((2026, 3, 2, 21, 0, 0), False),
        ((2026, 3, 2, 21, 0, 0, 1), False),
        ((2026, 3, 2, 21, 0, 0, 870000), False),  # the fault run's 21:00:00.87
    ],
)
def test_text_hours_are_closed_at_eight_and_open_at_nine_pm_to_the_microsecond(at, inside):
    for zone in (NY, DHAKA):
        t = local(zone, *at)
        assert is_allowed(t, TEXT_HOURS, zone) is inside
        expected = t if inside else local(zone, 2026, 3, 3 if at[3] >= 21 else 2, 8, 0)
        assert next_allowed(t, TEXT_HOURS, zone) == expected


def test_a_window_to_midnight_ends_before_the_next_day_begins():
    monday_all_day = Window(frozenset({0}), time(0), time(0))
    assert is_allowed(local(NY, 2026, 3, 2, 23, 59, 59, 999999), monday_all_day, NY)
    assert not is_allowed(local(NY, 2026, 3, 3, 0, 0), monday_all_day, NY)
    assert next_allowed(local(NY, 2026, 3, 3, 0, 0), monday_all_day, NY) == local(
        NY, 2026, 3, 9, 0, 0
    )
    assert Window.every_day(0, 24).always_open and not monday_all_day.always_open


def test_a_narrowed_window_keeps_its_end_exclusive():
    narrowed = Window.every_day(6, 23).intersect(TEXT_HOURS)
    assert is_allowed(local(NY, 2026, 3, 2, 20, 59, 59, 999999), narrowed, NY)
    assert not is_allowed(local(NY, 2026, 3, 2, 21, 0), narrowed, NY)


# -- at the send -------------------------------------------------------------------


class Recording:
    """A provider standing in for a remote API: accepts everything and notes the
    clock's reading at each call."""

    name = "recording"
    max_batch = 1000

    def __init__(self, clock):
        self.clock = clock
        self.calls: list[tuple[datetime, list[int]]] = []

    def _send(self, items):
        self.calls.append((self.clock.now(), [i.message_id for i in items]))
        return [SendResult(i.message_id, Outcome.ACCEPTED, f"p{i.message_id}") for i in items]

    send_emails = send_sms = _send


def queue_texts(factory, clock, registry, policy, zone: str, n: int = 1) -> list[int]:
    ids = []
    for _ in range(n):
        number = f"+1202555{len(queue_texts.numbers):04d}"
        queue_texts.numbers.append(number)
        add_and_enroll(factory, clock, registry, policy, phone=number, timezone=zone)
    with transaction(factory) as s:
        ids = claim_due(s, clock, registry, policy).sms
    assert len(ids) == n
    return ids


queue_texts.numbers = []


def message(factory, mid) -> Message:
    with factory() as s:
        return s.get(Message, mid)


def test_a_text_at_the_last_microsecond_goes_and_one_at_nine_pm_waits_for_morning(
    send_ctx, factory, clock, registry, policy
):
    provider = send_ctx.sms_provider = Recording(clock)
    clock.current = local(NY, 2026, 3, 2, 20, 50)
    early, late = queue_texts(factory, clock, registry, policy, "America/New_York", n=2)

    clock.current = local(NY, 2026, 3, 2, 21, 0) - US  # 20:59:59.999999
    assert send_batch(send_ctx, "sms", [early]).sent == 1
    assert message(factory, early).sent_at == clock.current

    clock.current = local(NY, 2026, 3, 2, 21, 0)  # 21:00:00 sharp
    assert send_batch(send_ctx, "sms", [late]).deferred == 1
    held = message(factory, late)
    assert (held.status, held.reason_code, held.attempts) == (
        MessageStatus.DEFERRED,
        Reason.OUTSIDE_TEXT_HOURS,
        0,
    )
    assert held.next_attempt_at == local(NY, 2026, 3, 3, 8, 0)
    assert [ids for _, ids in provider.calls] == [[early]]


@pytest.fixture
def windowed(tmp_path):
    """The tiny course with a weekday 09:00-19:00 send window."""
    folder = tmp_path / "definitions"
    shutil.copytree(FIXTURES / "definitions", folder)
    path = folder / "tiny.yaml"
    text = path.read_text()
    old = text.split("send_window: ")[1].split("\n")[0]
    weekdays = '{days: [mon, tue, wed, thu, fri], start: "09:00", end: "19:00"}'
    path.write_text(text.replace(old, weekdays))
    return Registry(folder, FIXTURES / "templates")


def test_an_email_is_held_to_the_course_window_at_the_send_too(
    send_ctx, factory, clock, windowed, policy
):
    send_ctx.registry = windowed
    provider = send_ctx.email_provider = Recording(clock)
    clock.current = local(NY, 2026, 3, 6, 18, 0)  # Friday 18:00
    ids = []
    for name in ("a", "b"):
        add_and_enroll(factory, clock, windowed, policy, email=f"{name}@example.com")
    with transaction(factory) as s:
        ids = claim_due(s, clock, windowed, policy).email

    clock.current = local(NY, 2026, 3, 6, 19, 0) - US
    assert send_batch(send_ctx, "email", ids[:1]).sent == 1
    clock.current = local(NY, 2026, 3, 6, 19, 0)
    assert send_batch(send_ctx, "email", ids[1:]).deferred == 1
    held = message(factory, ids[1])
    assert (held.status, held.reason_code) == (MessageStatus.DEFERRED, Reason.OUTSIDE_SEND_WINDOW)
    assert held.next_attempt_at == local(NY, 2026, 3, 9, 9, 0)  # Monday 09:00
    assert len(provider.calls) == 1


def slow_database(factory, clock, step: timedelta):
    """Every commit moves the clock on by `step`: what a slow database does to the time
    between deciding to send and the provider call."""

    def on_commit(session):
        clock.advance(seconds=step.total_seconds())

    event.listen(factory, "after_commit", on_commit)
    return lambda: event.remove(factory, "after_commit", on_commit)


def test_the_window_is_judged_at_the_provider_call_when_the_clock_moves_past_nine_pm(
    send_ctx, engine, factory, clock, registry, policy
):
    """For start times from 3 s before 21:00 in Dhaka, with each commit taking 0.35 s:
    every provider call happens before 21:00 (and sent_at is that moment); every text
    not sent waits for 08:00 with nothing charged. Some of them were leased inside the
    window and found outside it only at the call."""
    provider = send_ctx.sms_provider = Recording(clock)
    nine_pm = local(DHAKA, 2026, 3, 2, 21, 0)
    seen_leased = set()

    def note_leases(session):
        with engine.connect() as c:
            seen_leased.update(
                c.scalars(select(Message.id).where(Message.status == MessageStatus.SENDING))
            )

    sent = held = 0
    for tenths in range(-30, 3):
        clock.current = local(DHAKA, 2026, 3, 2, 20, 50)
        (mid,) = queue_texts(factory, clock, registry, policy, "Asia/Dhaka")
        clock.current = nine_pm + timedelta(seconds=tenths / 10)
        stop = slow_database(factory, clock, timedelta(milliseconds=350))
        event.listen(factory, "after_commit", note_leases)
        try:
            report = send_batch(send_ctx, "sms", [mid])
        finally:
            stop()
            event.remove(factory, "after_commit", note_leases)
        m = message(factory, mid)
        if report.sent:
            sent += 1
            (at,) = [at for at, ids in provider.calls if ids == [mid]]
            assert at < nine_pm and m.sent_at == at
        else:
            held += 1
            assert report.deferred == 1 and mid not in {i for _, ids in provider.calls for i in ids}
            assert (m.status, m.attempts) == (MessageStatus.DEFERRED, 0)
            assert m.next_attempt_at == local(DHAKA, 2026, 3, 3, 8, 0)
            assert m.lease_token is None
    assert all(at < nine_pm for at, _ in provider.calls)
    assert sent and held
    leased_then_held = {
        mid for mid in seen_leased if message(factory, mid).status == MessageStatus.DEFERRED
    }
    assert leased_then_held  # the call-time judgement is what stopped these


def test_each_chunk_is_judged_at_its_own_call(send_ctx, factory, clock, registry, policy):
    """Texts go in chunks of the limiter's burst; the clock passes 21:00 partway through
    a batch: the chunks before go, the chunks after wait for the morning."""
    provider = send_ctx.sms_provider = Recording(clock)
    send_ctx.limiters = {"sms": LocalBucket(rate=10_000, burst=1)}
    clock.current = local(DHAKA, 2026, 3, 2, 20, 50)
    ids = queue_texts(factory, clock, registry, policy, "Asia/Dhaka", n=6)
    nine_pm = local(DHAKA, 2026, 3, 2, 21, 0)
    clock.current = nine_pm - timedelta(seconds=3)
    stop = slow_database(factory, clock, timedelta(milliseconds=350))
    try:
        report = send_batch(send_ctx, "sms", ids)
    finally:
        stop()
    assert len(provider.calls) == report.sent and all(len(c) == 1 for _, c in provider.calls)
    assert all(at < nine_pm for at, _ in provider.calls)
    assert report.sent >= 1 and report.deferred >= 1 and report.sent + report.deferred == 6
    rows = [message(factory, mid) for mid in ids]
    assert [r.status for r in rows] == ["sent"] * report.sent + ["deferred"] * report.deferred
    assert all(r.sent_at < nine_pm for r in rows if r.status == "sent")


def test_with_the_shipped_margin_no_chunk_starts_in_a_windows_last_seconds():
    """SEND_WINDOW_MARGIN_SECONDS (5 by default): a chunk judged 3 s before 21:00 waits for
    the morning, so none of its calls can land after nine; 6 s before, it goes."""
    from settings import load_settings

    margin = Policy.from_settings(load_settings()).call_margin
    assert margin == timedelta(seconds=5)
    late = _Judge(local(NY, 2026, 3, 2, 21, 0) - timedelta(seconds=3), margin)
    early = _Judge(local(NY, 2026, 3, 2, 21, 0) - timedelta(seconds=6), margin)
    window = Policy().sms_window
    text = Candidate(OutgoingSms(1, "+12025550100", "x", "ref"), NY, window)
    assert late.closed(text) and not early.closed(text)
    # The opening is not moved: at 08:00:00 a chunk goes.
    assert not _Judge(local(NY, 2026, 3, 3, 8, 0), margin).closed(text)
