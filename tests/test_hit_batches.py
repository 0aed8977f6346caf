"""A batch of queued opens and clicks (campaigns.tracking.queued_hits.record_hits) ends
exactly as the same hits recorded one by one as the pages record them in the request
(portal.engage per hit): every event (kind, machine verdict and reason, payload, times)
and every column of the messages, people and enrollments they touch. On SQLite
and PostgreSQL, with hits drawn by hypothesis: people and machines (Apple's proxy, scanners,
HEAD requests, prefetches, clicks seconds after sending or delivery, bursts of clicks on
several links, within a batch and across batches), repeats of one hit id, erased people,
unknown messages, waits that an open or a click ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, update

from campaigns.clock import FixedClock
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.models import Enrollment, Event, Message, Subscriber
from campaigns.states import EventType, MessageStatus
from campaigns.tracking import portal
from campaigns.tracking.machine import Rules
from campaigns.tracking.queued_hits import Outcome, QueuedHit, record_hits
from tests.helpers import add_and_enroll

BASE = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
NOW = BASE + timedelta(minutes=2)  # when the hits are recorded
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0"
AGENTS = [BROWSER, BROWSER, "", "Mozilla/5.0", "python-requests/2.31", "GoogleImageProxy"]
CLIENTS = [None, "203.0.113.7", "17.0.0.9"]  # the last in the Apple ranges below
LINKS = ["o", "m", "l:1", "l:2", "l:3"]
# Per message: (seconds before BASE it went out, seconds after BASE of a delivery report
# or None, erased, waits for "opened"/"clicked" or None).
SHAPES = [
    (3600, None, False, "opened"),
    (3, None, False, None),  # hits in the first seconds are too soon
    (3600, 8, False, "clicked"),  # a late delivery report
    (3600, None, True, None),  # an erased person
    (3600, None, False, None),
    (5, 20, False, "opened"),
]
UNKNOWN = "unknown-token-000000"


@pytest.fixture
def people(factory, registry, policy, tmp_path):
    """One message each of SHAPES, sent; their tokens and the rules (Apple's ranges
    from a file)."""
    clock = FixedClock(BASE - timedelta(days=1))
    for i in range(len(SHAPES)):
        add_and_enroll(factory, clock, registry, policy, email=f"p{i}@x.org")
    with transaction(factory) as s:
        ids = sorted(claim_due(s, clock, registry, policy, limit=50).email)
        assert len(ids) == len(SHAPES)
        tokens = []
        for message_id, (ago, delivered, erased, waits) in zip(ids, SHAPES, strict=True):
            m = s.get(Message, message_id)
            m.status, m.sent_at = MessageStatus.SENT, BASE - timedelta(seconds=ago)
            tokens.append(m.public_token)
            if delivered is not None:
                s.execute(insert(Event).values(**_delivery(m, BASE + timedelta(seconds=delivered))))
            if erased:
                s.execute(
                    update(Subscriber)
                    .where(Subscriber.id == m.subscriber_id)
                    .values(erased_at=BASE - timedelta(hours=1))
                )
            e = s.get(Enrollment, m.enrollment_id)
            if waits:
                e.waiting_for = f"{waits}:{m.step_key}>{e.next_step_key}"
                e.next_due_at = NOW + timedelta(days=2)
    ranges = tmp_path / "egress.csv"
    ranges.write_text("17.0.0.0/8,US,US-CA,Cupertino,\n")
    return tokens, Rules(apple_ranges_file=ranges)


def _delivery(m: Message, at: datetime) -> dict:
    return dict(
        message_id=m.id,
        subscriber_id=m.subscriber_id,
        type=EventType.DELIVERED,
        provider="sendgrid",
        provider_event_id=f"d{m.id}",
        occurred_at=at,
        received_at=at,
        payload={},
    )


@st.composite
def hits(draw, tokens: list[str]) -> list[QueuedHit]:
    out: list[QueuedHit] = []
    for _ in range(draw(st.integers(1, 40))):
        if out and draw(st.integers(0, 9)) == 0:  # the same hit again (a redelivery)
            out.append(draw(st.sampled_from(out)))
            continue
        link = draw(st.sampled_from(LINKS))
        route = link.split(":")[0]
        detail = {"route": route}
        if route == "l":
            detail |= {"link": link[2:], "url": f"https://example.org/{link[2:]}"}
        out.append(
            QueuedHit(
                token=draw(st.sampled_from([*tokens, UNKNOWN])),
                kind=EventType.OPENED if link == "o" else EventType.CLICKED,
                link=link,
                # Bursts are 2 s: hits a fraction of a second to many seconds apart.
                at=BASE + timedelta(milliseconds=draw(st.integers(0, 30_000))),
                method=draw(st.sampled_from(["GET", "GET", "GET", "HEAD"])),
                user_agent=draw(st.sampled_from(AGENTS)),
                purpose=draw(st.sampled_from(["", "", "", "prefetch"])),
                client=draw(st.sampled_from(CLIENTS)),
                detail=detail,
            )
        )
    return out


def one_by_one(session, clock, hits: list[QueuedHit], rules: Rules, done: set) -> None:
    """As the pages record hits in the request: each resolved, locked, judged, recorded;
    a hit id in `done` is skipped (the queue's exactly once)."""
    for hit in sorted(hits, key=lambda h: h.at):
        found = session.execute(
            select(Message, Subscriber)
            .join(Subscriber, Subscriber.id == Message.subscriber_id)
            .where(Message.public_token == hit.token)
        ).first()
        if found is None or hit.id in done:
            continue
        done.add(hit.id)
        visit = portal.Visit(*found)
        detail = dict(hit.detail)
        portal.engage(
            session, clock, visit, hit.machine_hit(), rules, detail, at=hit.at, event_id=hit.id
        )


def state(session) -> dict:
    """Every row the hits may touch, ids of events left out (they differ by path)."""
    session.flush()
    session.expire_all()

    def rows(model, key, skip=()):
        cols = [c for c in model.__table__.columns if c.name not in skip]
        got = session.execute(select(*cols).order_by(*key)).all()
        return [tuple(r) for r in got]

    return {
        "events": rows(Event, [Event.provider, Event.provider_event_id], skip=("id",)),
        "messages": rows(Message, [Message.id]),
        "subscribers": rows(Subscriber, [Subscriber.id]),
        "enrollments": rows(Enrollment, [Enrollment.id]),
    }


def run_both(factory, hits: list[QueuedHit], rules: Rules, batch: int):
    """The state after each path, each in a transaction rolled back after; the hits come
    `batch` at a time (in the order they are queued, each batch in the order of `at`)."""
    clock = FixedClock(NOW)
    with factory() as s:
        done: set[str] = set()
        for i in range(0, len(hits), batch):
            one_by_one(s, clock, hits[i : i + batch], rules, done)
        before = state(s)
        s.rollback()
    outcomes = []
    with factory() as s:
        for i in range(0, len(hits), batch):
            outcomes += record_hits(s, clock, hits[i : i + batch], rules)
        after = state(s)
        s.rollback()
    return before, after, outcomes


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_batch_ends_as_the_hits_recorded_one_by_one(factory, people, data):
    tokens, rules = people
    drawn = data.draw(hits(tokens))
    batch = data.draw(st.integers(1, len(drawn)))
    before, after, outcomes = run_both(factory, drawn, rules, batch)
    assert after["events"] == before["events"]
    assert after == before
    assert len(outcomes) == len(drawn)


def test_every_kind_of_verdict_and_a_woken_wait_are_covered(factory, people):
    """One batch with each case named: the comparison above is not vacuous."""
    tokens, rules = people
    at = BASE + timedelta(seconds=30)

    def hit(token, link, dt=0.0, **kw):
        route = link.split(":")[0]
        detail = {"route": route} | ({"link": link[2:]} if route == "l" else {})
        kind = EventType.OPENED if link == "o" else EventType.CLICKED
        return QueuedHit(token, kind, link, at + timedelta(seconds=dt), detail=detail, **kw)

    person = {"user_agent": BROWSER}
    drawn = [
        hit(tokens[0], "o", **person),  # a person's open: wakes the wait for it
        hit(tokens[0], "o", 0.5, user_agent="Mozilla/5.0"),  # Apple's proxy
        hit(tokens[4], "l:1", 0, **person),
        hit(tokens[4], "l:2", 1.0, **person),  # a burst: both clicks a machine's
        hit(tokens[1], "o", -28.0, **person),  # 2 s after sending
        hit(tokens[2], "l:1", -21.0, **person),  # 1 s after the delivery report
        hit(tokens[3], "o", **person),  # erased
        hit(UNKNOWN, "o", **person),
        hit(tokens[5], "m", 5, method="HEAD", **person),
    ]
    drawn.append(drawn[0])  # twice in the batch
    before, after, outcomes = run_both(factory, drawn, rules, len(drawn))
    assert after == before
    reasons = {(e[2], e[9]) for e in after["events"] if e[3] == "tracking"}
    assert reasons >= {
        ("opened", None),
        ("opened", "apple_privacy_proxy"),
        ("clicked", "many_links_at_once"),
        ("opened", "seconds_after_send"),
        ("clicked", "seconds_after_send"),
        ("clicked", "head_request"),
    }
    assert outcomes.count(Outcome.ERASED) == 1
    assert outcomes.count(Outcome.UNKNOWN_MESSAGE) == 1
    assert outcomes.count(Outcome.DUPLICATE) == 1
    cols = [c.name for c in Enrollment.__table__.columns]
    woke = [r for r in after["enrollments"] if r[cols.index("next_due_at")] == NOW]
    assert len(woke) == 1


def test_a_hit_without_a_time_zone_is_refused_as_the_database_would(factory, people):
    """The drainer keeps it in `hits:failed` (workers/hit_queue.py) and records the rest."""
    tokens, rules = people
    naive = QueuedHit(tokens[0], EventType.OPENED, "o", BASE.replace(tzinfo=None))
    with factory() as s, pytest.raises(ValueError, match="naive"):
        record_hits(s, FixedClock(NOW), [naive], rules)
