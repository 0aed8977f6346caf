"""The send path as a plain function: re-checks at send time, leases, outcomes."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from campaigns.audience.opt_outs import unsubscribe
from campaigns.audience.suppression import suppress
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.outcomes import backoff
from campaigns.delivery.providers import Outcome, SendResult
from campaigns.delivery.reaper import reap
from campaigns.delivery.sending import send_batch
from campaigns.delivery.unconfirmed import settle_unconfirmed
from campaigns.models import Enrollment, Message, Subscriber, Suppression
from campaigns.reasons import Reason
from campaigns.states import MessageStatus
from tests.helpers import add_and_enroll, messages


def claim(factory, clock, registry, policy):
    with transaction(factory) as s:
        return claim_due(s, clock, registry, policy)


class Scripted:
    """A provider standing in for a remote API: answers with the outcomes it is given."""

    name = "scripted"
    max_batch = 100

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def _answer(self, items):
        self.calls.append([i.message_id for i in items])
        outcome = self.outcomes.pop(0)
        return [SendResult(i.message_id, **outcome) for i in items]

    send_emails = send_sms = _answer


def test_sends_through_outbox_and_records(send_ctx, factory, clock, registry, policy, outbox):
    add_and_enroll(
        factory,
        clock,
        registry,
        policy,
        email="a@example.com",
        phone="+12025550143",
        first_name="Ana",
    )
    work = claim(factory, clock, registry, policy)
    assert send_batch(send_ctx, "email", work.email).sent == 1
    assert send_batch(send_ctx, "sms", work.sms).sent == 1
    assert all(m.status == MessageStatus.SENT and m.provider == "outbox" for m in messages(factory))
    eml = next((outbox.folder / "email").iterdir()).read_text()
    assert (
        "Subject: Welcome, Ana" in eml
        and "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in eml
    )
    assert "a@example.com" not in eml.split("List-Unsubscribe:")[1].split("\n")[0]
    text = next((outbox.folder / "sms").iterdir()).read_text()
    assert "Lunara: Hi Ana, lesson 1 is here: https://care.example/m/" in text
    assert "Reply STOP to opt out" in text  # the first text carries STOP/HELP


def test_duplicate_task_is_a_no_op(send_ctx, factory, clock, registry, policy, outbox):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com")
    work = claim(factory, clock, registry, policy)
    send_batch(send_ctx, "email", work.email)
    again = send_batch(send_ctx, "email", work.email)
    assert again.sent == 0 and again.not_ours == 1
    assert (outbox.folder / "deliveries.log").read_text().count(" written") == 1


def test_unsubscribe_after_queueing_stops_the_message(
    send_ctx, factory, clock, registry, policy, outbox
):
    sid, _ = add_and_enroll(
        factory, clock, registry, policy, email="a@example.com", phone="+12025550143"
    )
    work = claim(factory, clock, registry, policy)
    with transaction(factory) as s:
        unsubscribe(s, clock, s.get(Subscriber, sid), channels=("email",))
    report = send_batch(send_ctx, "email", work.email)
    assert report.suppressed == 1 and report.sent == 0
    assert not (outbox.folder / "email").exists()
    assert send_batch(send_ctx, "sms", work.sms).sent == 1  # texts were not stopped


def test_bounce_suppression_after_queueing_stops_the_message(
    send_ctx, factory, clock, registry, policy
):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com")
    work = claim(factory, clock, registry, policy)
    with transaction(factory) as s:
        suppress(s, clock, "email", "A@Example.com", "bounce", "sendgrid")
    send_batch(send_ctx, "email", work.email)
    (m,) = [m for m in messages(factory) if m.channel == "email"]
    assert (m.status, m.reason_code, m.reason) == (
        MessageStatus.SUPPRESSED,
        Reason.ADDRESS_SUPPRESSED,
        "address suppressed: bounce",
    )


def test_stop_everything_exits_enrollment_and_skips_queued(
    send_ctx, factory, clock, registry, policy
):
    sid, eid = add_and_enroll(factory, clock, registry, policy, email="a@example.com")
    work = claim(factory, clock, registry, policy)
    with transaction(factory) as s:
        unsubscribe(s, clock, s.get(Subscriber, sid))
    send_batch(send_ctx, "email", work.email)
    with factory() as s:
        assert s.get(Enrollment, eid).status == "exited"
    # The person's own opt-out is the cause reports show, not the course it ended.
    (m,) = messages(factory)
    assert (m.status, m.reason_code) == (MessageStatus.SUPPRESSED, Reason.UNSUBSCRIBED)


def exit_course(factory, clock, message_id, why="asked to be contacted"):
    with transaction(factory) as s:
        enrollment = s.get(Enrollment, s.get(Message, message_id).enrollment_id)
        enrollment.status, enrollment.exit_reason = "exited", why


@pytest.mark.parametrize("when", ["before the batch", "while a chunk waits for tokens"])
def test_an_exited_course_reads_the_same_whichever_check_stops_it(
    send_ctx, factory, clock, registry, policy, outbox, when
):
    """Preparing the batch and leasing each chunk share one re-check: one cause, one
    status, code and sentence."""
    ids = five_texts(factory, clock, registry, policy)
    if when == "before the batch":
        exit_course(factory, clock, ids[2])
        send_ctx.limiters = {"sms": Burst2(lambda call: None)}
    else:
        send_ctx.limiters = {
            "sms": Burst2(lambda call: call == 2 and exit_course(factory, clock, ids[2]))
        }
    report = send_batch(send_ctx, "sms", ids)
    assert (report.sent, report.skipped) == (4, 1)
    with factory() as s:
        m = s.get(Message, ids[2])
    assert (m.status, m.reason_code, m.reason) == (
        MessageStatus.SKIPPED,
        Reason.ENROLLMENT_EXITED,
        "enrollment exited: asked to be contacted",
    )


def test_text_outside_hours_at_send_time_is_deferred_not_dropped(
    send_ctx, factory, clock, registry, policy
):
    add_and_enroll(factory, clock, registry, policy, phone="+12025550143")
    work = claim(factory, clock, registry, policy)
    clock.current = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)  # the worker was down until 21:30 NY
    assert send_batch(send_ctx, "sms", work.sms).deferred == 1
    (m,) = [m for m in messages(factory) if m.channel == "sms"]
    assert m.status == MessageStatus.DEFERRED
    assert m.next_attempt_at == datetime(2026, 3, 3, 13, 0, tzinfo=UTC)


def test_transient_error_retries_with_backoff_then_gives_up(
    send_ctx, factory, clock, registry, policy
):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com")
    work = claim(factory, clock, registry, policy)
    send_ctx.email_provider = Scripted(*[{"outcome": Outcome.TRANSIENT, "error": "429"}] * 2)
    send_ctx.max_attempts = 2
    assert send_batch(send_ctx, "email", work.email).retry == 1
    m = messages(factory)[0]
    wait = (m.next_attempt_at - clock.now()).total_seconds()
    assert 15 <= wait <= 30  # attempt 1: between half and all of the 30 s base
    with transaction(factory) as s:
        s.get(Message, m.id).status = MessageStatus.QUEUED
    assert send_batch(send_ctx, "email", work.email).failed == 1
    assert (messages(factory)[0].reason_code, messages(factory)[0].reason) == (
        Reason.RETRIES_EXHAUSTED,
        "gave up after 2 attempts",
    )


def test_retry_after_from_provider_is_honoured(send_ctx, factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com")
    work = claim(factory, clock, registry, policy)
    send_ctx.email_provider = Scripted({"outcome": Outcome.TRANSIENT, "retry_after": 600})
    send_batch(send_ctx, "email", work.email)
    assert (messages(factory)[0].next_attempt_at - clock.now()).total_seconds() == 600


def test_permanent_error_fails_and_suppresses(send_ctx, factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, phone="+12025550143")
    work = claim(factory, clock, registry, policy)
    send_ctx.sms_provider = Scripted(
        {
            "outcome": Outcome.PERMANENT,
            "error": "21610",
            "suppress_reason": "unsubscribed at carrier (21610)",
        }
    )
    send_batch(send_ctx, "sms", work.sms)
    m = next(m for m in messages(factory) if m.channel == "sms")
    assert m.status == MessageStatus.FAILED
    with factory() as s:
        assert s.scalar(select(Suppression.reason)) == "unsubscribed at carrier (21610)"


def test_unknown_outcome_is_unconfirmed_never_resent(send_ctx, factory, clock, registry, policy):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com")
    work = claim(factory, clock, registry, policy)
    scripted = Scripted({"outcome": Outcome.UNKNOWN, "error": "read timeout"})
    send_ctx.email_provider = scripted
    assert send_batch(send_ctx, "email", work.email).unconfirmed == 1
    send_batch(send_ctx, "email", work.email)  # a redelivered task
    clock.advance(hours=2)
    with transaction(factory) as s:
        reap(s, clock, policy)
        settle_unconfirmed(s, clock, {"email": scripted})  # no look-up: stays put
    assert len(scripted.calls) == 1
    assert messages(factory)[0].status == MessageStatus.UNCONFIRMED


def test_lookup_settles_unconfirmed(send_ctx, factory, clock, registry, policy, outbox):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com", phone="+12025550143")
    work = claim(factory, clock, registry, policy)
    send_batch(send_ctx, "email", work.email)
    with transaction(factory) as s:  # as if two workers died after leasing
        for m in s.scalars(select(Message)):
            m.status = MessageStatus.UNCONFIRMED
    with transaction(factory) as s:  # too soon: the provider's records may lag the call
        assert settle_unconfirmed(s, clock, {"email": outbox, "sms": outbox})[1]["resent"] == 0
    clock.advance(minutes=1)
    with transaction(factory) as s:
        requeue, counts = settle_unconfirmed(s, clock, {"email": outbox, "sms": outbox})
    assert counts == {"confirmed": 1, "resent": 1, "undecided": 0}
    assert requeue.sms == work.sms


def test_template_error_fails_with_reason_and_sends_nothing(
    send_ctx, factory, clock, registry, policy, outbox, tmp_path
):
    add_and_enroll(factory, clock, registry, policy, email="a@example.com")
    work = claim(factory, clock, registry, policy)
    import shutil

    from campaigns.content.rendering import Renderer, Sender
    from tests.conftest import FIXTURES

    broken = tmp_path / "templates"
    shutil.copytree(FIXTURES / "templates", broken)
    (broken / "tiny/en/hello.html").write_text("<p>{{ diagnosis }}</p>")
    send_ctx.renderer = Renderer(broken, Sender("Lunara", "x"))
    assert send_batch(send_ctx, "email", work.email).failed == 1
    m = messages(factory)[0]
    assert (m.status, m.reason_code, m.reason) == (
        MessageStatus.FAILED,
        Reason.TEMPLATE_ERROR,
        "template error",
    )
    assert "'diagnosis' is undefined" in m.last_error
    assert not (outbox.folder / "email").exists()


@pytest.mark.parametrize("attempt", [1, 3, 10])
def test_backoff_is_capped_and_jittered(attempt):
    lo = backoff(attempt, 30, 600, rng=lambda: 0.0)
    hi = backoff(attempt, 30, 600, rng=lambda: 1.0)
    assert lo == hi / 2 and hi == min(600, 30 * 2 ** (attempt - 1))


class Capturing:
    name = "capturing"
    max_batch = 1000

    def __init__(self):
        self.batches = []

    def send_emails(self, emails):
        self.batches.append(emails)
        return [SendResult(e.message_id, Outcome.ACCEPTED, f"x-{e.message_id}") for e in emails]


def test_batch_shares_one_body_and_substitutions_rebuild_each(
    send_ctx, factory, clock, registry, policy
):
    from campaigns.delivery.batching import fill

    for i, name in enumerate(["Ana", "Bo", None]):
        add_and_enroll(factory, clock, registry, policy, email=f"p{i}@example.com", first_name=name)
    work = claim(factory, clock, registry, policy)
    send_ctx.email_provider = cap = Capturing()
    send_batch(send_ctx, "email", work.email)
    (batch,) = cap.batches
    keys = [e.shared.key for e in batch]
    assert keys[0] == keys[1] != keys[2]  # with a name and without one render differently
    for e in batch:
        assert fill(e.shared.content.html, e.substitutions) == e.content.html
        assert "-drip_" not in e.content.html
    assert "Ana" not in batch[0].shared.content.html


def test_template_that_transforms_a_value_is_sent_alone(
    send_ctx, factory, clock, registry, policy, tmp_path
):
    import shutil

    from campaigns.content.rendering import Renderer, Sender
    from tests.conftest import FIXTURES

    tpl = tmp_path / "templates"
    shutil.copytree(FIXTURES / "templates", tpl)
    (tpl / "tiny/en/hello.html").write_text("<p>Hi {{ (first_name or 'there')|upper }}</p>")
    send_ctx.renderer = Renderer(tpl, Sender("Lunara", "x"))
    add_and_enroll(factory, clock, registry, policy, email="a@example.com", first_name="Ana")
    work = claim(factory, clock, registry, policy)
    send_ctx.email_provider = cap = Capturing()
    send_batch(send_ctx, "email", work.email)
    (item,) = cap.batches[0]
    assert item.shared is None and "Hi ANA" in item.content.html


def test_config_error_pauses_channel_and_keeps_messages(send_ctx, factory, clock, registry, policy):
    from campaigns.delivery.pauses import resume

    for i in range(3):
        add_and_enroll(factory, clock, registry, policy, email=f"p{i}@example.com")
    work = claim(factory, clock, registry, policy)
    send_ctx.email_provider = scripted = Scripted(
        {"outcome": Outcome.CONFIG, "error": "401 bad key"}
    )
    assert send_batch(send_ctx, "email", work.email[:1]).paused == 1
    assert send_batch(send_ctx, "email", work.email[1:]).paused == 2  # no provider call at all
    assert len(scripted.calls) == 1
    rows = [m for m in messages(factory) if m.channel == "email"]
    assert {(m.status, m.attempts) for m in rows} == {(MessageStatus.QUEUED, 0)}
    with transaction(factory) as s:
        again = resume(s, clock, "email")
    assert sorted(again.email) == sorted(work.email)


class Burst2:
    """A limiter handing out two texts at a time; `on_acquire` plays what happens while
    a worker waits for tokens (time passing, Redis failing)."""

    burst = 2

    def __init__(self, on_acquire):
        self.calls = 0
        self.on_acquire = on_acquire

    def acquire(self, n=1):
        self.calls += 1
        self.on_acquire(self.calls)


def five_texts(factory, clock, registry, policy):
    for i in range(5):
        add_and_enroll(factory, clock, registry, policy, phone=f"+1202555{i:04d}")
    return claim(factory, clock, registry, policy).sms


def test_failure_between_chunks_leaves_the_rest_queued_not_unconfirmed(
    send_ctx, factory, clock, registry, policy, outbox
):
    ids = five_texts(factory, clock, registry, policy)

    def redis_goes_away(call):
        if call == 2:
            raise ConnectionError("rate limiter unreachable")

    send_ctx.limiters = {"sms": Burst2(redis_goes_away)}
    with pytest.raises(ConnectionError):
        send_batch(send_ctx, "sms", ids)
    statuses = [m.status for m in messages(factory) if m.channel == "sms"]
    assert statuses == [
        MessageStatus.SENT,
        MessageStatus.SENT,
        MessageStatus.QUEUED,
        MessageStatus.QUEUED,
        MessageStatus.QUEUED,
    ]
    clock.advance(minutes=11)
    with transaction(factory) as s:
        assert reap(s, clock, policy).requeued.sms == ids[2:]  # handed back, never "unconfirmed"


def test_texts_that_wait_past_nine_pm_for_tokens_are_deferred(
    send_ctx, factory, clock, registry, policy, outbox
):
    clock.current = datetime(2026, 3, 3, 1, 58, tzinfo=UTC)  # 20:58 in New York
    ids = five_texts(factory, clock, registry, policy)

    def slow_tokens(call):
        if call == 2:
            clock.advance(minutes=5)  # the wait for tokens crossed 21:00

    send_ctx.limiters = {"sms": Burst2(slow_tokens)}
    report = send_batch(send_ctx, "sms", ids)
    assert (report.sent, report.deferred) == (2, 3)
    deferred = [m for m in messages(factory) if m.status == MessageStatus.DEFERRED]
    assert {m.next_attempt_at for m in deferred} == {
        datetime(2026, 3, 3, 13, 0, tzinfo=UTC)
    }  # 08:00


def test_a_webhook_that_settled_first_is_not_overwritten_or_counted(
    send_ctx, factory, clock, registry, policy
):
    add_and_enroll(factory, clock, registry, policy, phone="+12025550143")
    work = claim(factory, clock, registry, policy)

    class WebhookFirst(Scripted):
        def _answer(self, items):
            with transaction(factory) as s:  # the delivery receipt lands before our write
                msg = s.get(Message, items[0].message_id)
                msg.status, msg.lease_token = MessageStatus.DELIVERED, None
            return [
                SendResult(i.message_id, Outcome.PERMANENT, suppress_reason="invalid number")
                for i in items
            ]

        send_sms = _answer

    send_ctx.sms_provider = WebhookFirst()
    report = send_batch(send_ctx, "sms", work.sms)
    assert (report.failed, report.not_ours) == (0, 1)
    with factory() as s:
        assert s.get(Message, work.sms[0]).status == MessageStatus.DELIVERED
        assert s.scalar(select(Suppression.id)) is None


def test_stop_while_a_chunk_waits_for_tokens_stops_that_text(
    send_ctx, factory, clock, registry, policy, outbox
):
    ids = five_texts(factory, clock, registry, policy)

    def stop_arrives(call):
        if call == 2:  # texts 3 and 4 are next; the person behind text 3 replies STOP now
            with transaction(factory) as s:
                msg = s.get(Message, ids[2])
                unsubscribe(
                    s,
                    clock,
                    s.get(Subscriber, msg.subscriber_id),
                    channels=("sms",),
                    source="sms_keyword",
                )

    send_ctx.limiters = {"sms": Burst2(stop_arrives)}
    report = send_batch(send_ctx, "sms", ids)
    assert (report.sent, report.suppressed) == (4, 1)
    with factory() as s:
        assert s.get(Message, ids[2]).status == MessageStatus.SUPPRESSED


def test_tokens_are_taken_only_for_texts_still_queued(
    send_ctx, factory, clock, registry, policy, outbox
):
    ids = five_texts(factory, clock, registry, policy)
    limiter = Burst2(lambda call: None)

    class DuplicateTaskFirst:
        name = "outbox"
        max_batch = 100

        def send_sms(self, items):
            if items[0].message_id == ids[0]:  # meanwhile a duplicate task sent texts 3 and 4
                with transaction(factory) as s:
                    for mid in ids[2:4]:
                        s.get(Message, mid).status = MessageStatus.SENT
            return [SendResult(i.message_id, Outcome.ACCEPTED, "x") for i in items]

    send_ctx.sms_provider, send_ctx.limiters = DuplicateTaskFirst(), {"sms": limiter}
    assert send_batch(send_ctx, "sms", ids).sent == 3  # 1, 2 and 5 by this task
    assert limiter.calls == 2  # chunk (1, 2) and chunk (5): none wasted on (3, 4)


def test_a_definite_answer_after_the_lease_ran_out_still_counts(
    send_ctx, factory, clock, registry, policy
):
    add_and_enroll(factory, clock, registry, policy, phone="+12025550143")
    work = claim(factory, clock, registry, policy)

    class VerySlow(Scripted):
        def _answer(self, items):
            clock.advance(minutes=10)  # the call outlasted the lease; the reaper ran
            with transaction(factory) as s:
                assert reap(s, clock, policy).unconfirmed == [items[0].message_id]
            return [
                SendResult(
                    i.message_id,
                    Outcome.PERMANENT,
                    suppress_reason="unsubscribed at carrier (21610)",
                )
                for i in items
            ]

        send_sms = _answer

    send_ctx.sms_provider = VerySlow()
    assert send_batch(send_ctx, "sms", work.sms).failed == 1
    with factory() as s:
        assert s.get(Message, work.sms[0]).status == MessageStatus.FAILED
        assert s.scalar(select(Suppression.reason)) == "unsubscribed at carrier (21610)"
