"""Order per person (invariant 10), on SQLite and PostgreSQL, through the real tick and
send path: on each channel a person never gets step N+1 before step N has reached a
final state, and step N+1 comes its full delay after step N actually went out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event, select

from campaigns.db import transaction
from campaigns.delivery import scheduler
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.providers import Outcome, SendResult
from campaigns.delivery.sending import send_batch
from campaigns.delivery.unconfirmed import settle
from campaigns.models import Enrollment, Message
from campaigns.states import MessageStatus
from tests.helpers import add_and_enroll, messages

PERSON = {"email": "ana@example.com", "phone": "+12025550143", "first_name": "Ana"}


class Scripted:
    """A provider standing in for a remote API: gives the answers it is given, in
    order, then accepts everything."""

    name = "scripted"
    max_batch = 100

    def __init__(self, *answers: dict):
        self.answers = list(answers)
        self.calls: list[list[int]] = []

    def _answer(self, items):
        self.calls.append([i.message_id for i in items])
        answer = self.answers.pop(0) if self.answers else {"outcome": Outcome.ACCEPTED}
        return [SendResult(i.message_id, provider_message_id=f"p{i.message_id}", **answer)
                for i in items]  # fmt: skip

    send_emails = send_sms = _answer


def tick(ctx, factory, clock, registry, policy, send=("email", "sms")):
    """One scheduler tick, then its send tasks for the channels in `send`; returns the
    tick's totals and the work it did not send."""
    dispatched = []
    total = scheduler.tick(factory, clock, registry, policy, dispatched.append)
    kept = {"email": [], "sms": []}
    for work in dispatched:
        for channel in ("email", "sms"):
            ids = getattr(work, channel)
            if channel in send:
                send_batch(ctx, channel, ids)
            else:
                kept[channel] += ids
    return total, kept


def sent_order(factory, eid) -> dict[str, list[tuple[str, datetime]]]:
    """Per channel, the steps that went out, in the order they went out."""
    out: dict[str, list] = {"email": [], "sms": []}
    for m in sorted(
        (m for m in messages(factory) if m.enrollment_id == eid and m.sent_at is not None),
        key=lambda m: (m.sent_at, m.id),
    ):
        out[m.channel].append((m.step_key, m.sent_at))
    return out


def cursor(factory, eid) -> Enrollment:
    with factory() as s:
        return s.get(Enrollment, eid)


def row(factory, eid, step, channel) -> Message:
    (m,) = [
        m
        for m in messages(factory)
        if (m.enrollment_id, m.step_key, m.channel) == (eid, step, channel)
    ]
    return m


def test_a_text_deferred_overnight_holds_the_next_step_and_its_delay_counts_from_it(
    send_ctx, factory, clock, registry, policy
):
    # Monday 2 March, 20:59:30 in New York: lesson one is claimed inside the text hours,
    # its email goes at once, its text waits for rate-limit tokens until after 21:00.
    clock.current = datetime(2026, 3, 3, 1, 59, 30, tzinfo=UTC)
    _, eid = add_and_enroll(factory, clock, registry, policy, **PERSON)
    _, kept = tick(send_ctx, factory, clock, registry, policy, send=("email",))
    clock.advance(minutes=1)  # 21:00:30
    assert send_batch(send_ctx, "sms", kept["sms"]).deferred == 1
    morning = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # Tuesday 08:00 in New York
    assert row(factory, eid, "hello", "sms").next_attempt_at == morning

    # The text goes at 08:00 on Tuesday; 'second' (one day after 'hello') was due at
    # 20:59:30 on Tuesday by the claim's clock, and is due a day after the text instead.
    clock.current = morning
    tick(send_ctx, factory, clock, registry, policy)
    assert row(factory, eid, "hello", "sms").sent_at == morning
    clock.current = datetime(2026, 3, 4, 1, 59, 30, tzinfo=UTC)  # Tuesday 20:59:30
    total, _ = tick(send_ctx, factory, clock, registry, policy)
    assert (total.claimed, total.held, len(total)) == (1, 1, 0)
    assert cursor(factory, eid).next_due_at == morning + timedelta(days=1)
    clock.current = morning + timedelta(days=1) - timedelta(seconds=1)
    assert tick(send_ctx, factory, clock, registry, policy)[0].claimed == 0  # not read
    clock.current = morning + timedelta(days=1)
    tick(send_ctx, factory, clock, registry, policy)
    assert sent_order(factory, eid)["email"] == [
        ("hello", datetime(2026, 3, 3, 1, 59, 30, tzinfo=UTC)),
        ("second", morning + timedelta(days=1)),  # its full day after the text
    ]


def test_a_retried_text_holds_every_later_step_and_the_person_is_not_reread_each_tick(
    send_ctx, factory, clock, registry, policy
):
    # `quick`: one (email + text), two (email), three (text), all 0 minutes apart.
    send_ctx.sms_provider = Scripted({"outcome": Outcome.TRANSIENT, "retry_after": 600})
    _, eid = add_and_enroll(factory, clock, registry, policy, campaign="quick", **PERSON)
    tick(send_ctx, factory, clock, registry, policy)
    assert row(factory, eid, "one", "sms").status == MessageStatus.RETRY
    retry_at = clock.now() + timedelta(seconds=600)

    clock.advance(seconds=5)
    total, _ = tick(send_ctx, factory, clock, registry, policy)
    assert (total.claimed, total.held) == (1, 1)  # read once, and held
    # Again a moment after the retry can go (the text was claimed 5 s ago: one tick).
    assert cursor(factory, eid).next_due_at == retry_at + policy.order_slack
    reads = 0
    while clock.now() < retry_at - timedelta(seconds=5):
        clock.advance(seconds=5)
        reads += tick(send_ctx, factory, clock, registry, policy)[0].claimed
    assert reads == 0  # 119 ticks, and the held person was never read again
    clock.current = retry_at
    tick(send_ctx, factory, clock, registry, policy)
    assert row(factory, eid, "one", "sms").sent_at == retry_at
    for _ in range(20):
        clock.advance(seconds=5)
        tick(send_ctx, factory, clock, registry, policy)
    order = sent_order(factory, eid)
    assert [k for k, _ in order["email"]] == ["one", "two"]
    assert [k for k, _ in order["sms"]] == ["one", "three"]
    assert order["email"][1][1] > retry_at  # two waited for one's text to go
    assert cursor(factory, eid).status == "completed"


def test_a_text_waiting_for_rate_limit_tokens_pushes_the_next_step_its_full_delay(
    send_ctx, factory, clock, registry, policy
):
    _, eid = add_and_enroll(factory, clock, registry, policy, **PERSON)
    _, kept = tick(send_ctx, factory, clock, registry, policy, send=("email",))
    clock.advance(hours=3)  # the text's send task waited three hours for tokens
    send_batch(send_ctx, "sms", kept["sms"])
    went = row(factory, eid, "hello", "sms").sent_at
    assert went == clock.now()

    clock.current = went - timedelta(hours=3) + timedelta(days=1)  # due by the claim's clock
    total, _ = tick(send_ctx, factory, clock, registry, policy)
    assert (total.held, len(total)) == (1, 0)
    clock.current = went + timedelta(days=1)
    tick(send_ctx, factory, clock, registry, policy)
    assert sent_order(factory, eid)["email"][-1] == ("second", went + timedelta(days=1))


def test_a_text_still_queued_when_the_next_step_falls_due_holds_it(
    send_ctx, factory, clock, registry, policy
):
    _, eid = add_and_enroll(factory, clock, registry, policy, **PERSON)
    _, kept = tick(send_ctx, factory, clock, registry, policy, send=("email",))
    clock.advance(days=1, minutes=1)  # 'second' is due; hello's text has still not gone
    total, _ = tick(send_ctx, factory, clock, registry, policy, send=())
    assert (total.claimed, total.held, len(total)) == (1, 1, 0)
    assert cursor(factory, eid).next_due_at == clock.now() + policy.order_recheck
    for _ in range(11):  # a minute of ticks: not read again
        clock.advance(seconds=5)
        assert tick(send_ctx, factory, clock, registry, policy, send=())[0].claimed == 0
    send_batch(send_ctx, "sms", kept["sms"])
    went = clock.now()
    clock.advance(days=1)
    tick(send_ctx, factory, clock, registry, policy)
    assert sent_order(factory, eid)["email"][-1] == ("second", went + timedelta(days=1))


def test_an_unconfirmed_text_holds_its_person_until_it_is_settled(
    send_ctx, factory, clock, registry, policy
):
    send_ctx.sms_provider = Scripted({"outcome": Outcome.UNKNOWN, "error": "read timeout"})
    _, eid = add_and_enroll(factory, clock, registry, policy, campaign="quick", **PERSON)
    tick(send_ctx, factory, clock, registry, policy)
    text = row(factory, eid, "one", "sms")
    assert text.status == MessageStatus.UNCONFIRMED
    reads = 0
    for _ in range(120):  # ten minutes of ticks
        clock.advance(seconds=5)
        reads += tick(send_ctx, factory, clock, registry, policy)[0].claimed
    assert [m.step_key for m in messages(factory)] == ["one", "one"]  # nothing after it
    assert reads <= 15  # less and less often, then once a minute; not every tick
    with transaction(factory) as s:
        settle(s, clock, text.id, "sent")
    for _ in range(30):
        clock.advance(seconds=5)
        tick(send_ctx, factory, clock, registry, policy)
    order = sent_order(factory, eid)
    assert [k for k, _ in order["sms"]] == ["one", "three"]
    assert [k for k, _ in order["email"]] == ["one", "two"]


def test_a_failed_step_lets_the_next_one_go_from_the_claim(
    send_ctx, factory, clock, registry, policy
):
    send_ctx.sms_provider = Scripted({"outcome": Outcome.PERMANENT, "error": "HTTP 400"})
    _, eid = add_and_enroll(factory, clock, registry, policy, campaign="quick", **PERSON)
    for _ in range(4):
        tick(send_ctx, factory, clock, registry, policy)
    assert row(factory, eid, "one", "sms").status == MessageStatus.FAILED
    assert [k for k, _ in sent_order(factory, eid)["sms"]] == ["three"]
    assert cursor(factory, eid).status == "completed"


def test_one_claim_reads_a_batch_with_the_same_statements_however_many_are_held(
    engine, factory, clock, registry, policy
):
    def claim_statements(people: int) -> tuple[int, int, int]:
        eids = [
            add_and_enroll(
                factory,
                clock,
                registry,
                policy,
                email=f"p{people}-{i}@example.com",
                phone=f"+1202555{people:02d}{i:02d}",
            )[1]
            for i in range(people)
        ]
        with transaction(factory) as s:
            claim_due(s, clock, registry, policy)  # 'hello' for all, queued
        with transaction(factory) as s:  # half of them have had it go out
            for m in s.scalars(select(Message).where(Message.enrollment_id.in_(eids[::2]))):
                m.status, m.sent_at = MessageStatus.SENT, clock.now()
        clock.advance(days=1)
        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            with transaction(factory) as s:
                work = claim_due(s, clock, registry, policy)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert work.claimed == people and work.held == people // 2
        with transaction(factory) as s:  # out of the way of the next batch
            for e in s.scalars(select(Enrollment).where(Enrollment.id.in_(eids))):
                e.status = "exited"
        return len(statements), len(work.email), work.held

    small = claim_statements(4)
    large = claim_statements(40)
    assert small[1:] == (2, 2) and large[1:] == (20, 20)
    assert small[0] == large[0]  # one query per batch, not per person


class Chaos:
    """A provider standing in for a flaky remote API: a seeded mix of accepted, transient
    (with Retry-After up to three hours) and unknown answers."""

    name = "chaos"
    max_batch = 1000

    def __init__(self, rng):
        self.rng = rng

    def _answer(self, items):
        out = []
        for i in items:
            roll = self.rng.random()
            if roll < 0.2:
                retry = self.rng.uniform(0, 3 * 3600)
                out.append(SendResult(i.message_id, Outcome.TRANSIENT, retry_after=retry))
            elif roll < 0.3:
                out.append(SendResult(i.message_id, Outcome.UNKNOWN, error="read timeout"))
            else:
                out.append(SendResult(i.message_id, Outcome.ACCEPTED, f"p{i.message_id}"))
        return out

    send_emails = send_sms = _answer


def test_order_holds_through_a_week_of_retries_deferrals_delays_and_unconfirmed_answers(
    send_ctx, factory, clock, registry, policy
):
    """Eight people in four zones on both courses; the provider fails a third of the time,
    send tasks are sometimes late by hours (rate limits), unconfirmed messages are settled
    by ops later. Afterwards, for every person: on each channel the steps went out in
    course order; each step was claimed only after every message of the one before was
    final, and no sooner than its delay after the latest of them went out; every text
    went out inside the text hours."""
    import random
    from zoneinfo import ZoneInfo

    from campaigns.sequences.timing import TEXT_HOURS
    from campaigns.sequences.windows import is_allowed

    rng = random.Random(10)
    send_ctx.email_provider = send_ctx.sms_provider = Chaos(rng)
    zones = ["America/New_York", "Asia/Dhaka", "America/Los_Angeles", "Asia/Kolkata"]
    for i in range(8):
        add_and_enroll(
            factory,
            clock,
            registry,
            policy,
            campaign=("tiny", "quick")[i % 2],
            email=f"p{i}@example.com",
            phone=f"+120255501{i:02d}",
            timezone=zones[i % 4],
        )
    late: list[tuple[str, int]] = []  # send tasks waiting (rate limits, a busy queue)
    held = 0
    end = clock.now() + timedelta(days=7)
    while clock.now() < end:
        dispatched = []
        held += scheduler.tick(factory, clock, registry, policy, dispatched.append).held
        pending = [(ch, m) for w in dispatched for ch in ("email", "sms") for m in getattr(w, ch)]
        pending += late
        late = []
        for channel, mid in pending:
            if rng.random() < 0.2:
                late.append((channel, mid))
            else:
                send_batch(send_ctx, channel, [mid])
        with transaction(factory) as s:
            waiting = s.scalars(
                select(Message.id).where(Message.status == MessageStatus.UNCONFIRMED)
            ).all()
        for mid in waiting:
            if rng.random() < 0.1:
                with transaction(factory) as s:
                    work = settle(s, clock, mid, rng.choice(["sent", "resend"]))
                late += [("email", m) for m in work.email] + [("sms", m) for m in work.sms]
        clock.advance(minutes=rng.choice([5, 15, 45]))

    with factory() as s:
        rows = s.scalars(select(Message)).all()
        enrollments = s.scalars(select(Enrollment)).all()
        zone_of = {e.id: ZoneInfo(e.subscriber.timezone) for e in enrollments}
    campaigns = registry.campaigns()
    by_enrollment: dict[int, list[Message]] = {}
    for m in rows:
        by_enrollment.setdefault(m.enrollment_id, []).append(m)
    handed_over = 0
    for eid, msgs in by_enrollment.items():
        campaign = campaigns[msgs[0].campaign_key]
        index = {s.key: s.index for s in campaign.steps}
        for channel in ("email", "sms"):
            went = sorted(
                (m for m in msgs if m.channel == channel and m.sent_at), key=lambda m: m.sent_at
            )
            assert [index[m.step_key] for m in went] == sorted(index[m.step_key] for m in went)
        steps = sorted({m.step_key for m in msgs}, key=index.get)
        for before, after in zip(steps, steps[1:], strict=False):
            prior = [m for m in msgs if m.step_key == before]
            claimed = min(m.created_at for m in msgs if m.step_key == after)
            assert all(m.updated_at <= claimed for m in prior)  # final before the claim
            sent = [m.sent_at for m in prior if m.sent_at]
            if sent:
                delay = campaign.step(after).delay
                assert claimed >= max(sent) + delay - policy.order_slack
        for m in msgs:
            if m.sent_at:
                handed_over += 1
                if m.channel == "sms":
                    assert is_allowed(m.sent_at, TEXT_HOURS, zone_of[eid])
    assert handed_over > 30 and held > 5
