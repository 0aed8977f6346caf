"""/healthz and /metrics through the real FastAPI app: the database and schema decide
health, the broker is only reported; metrics parse as Prometheus text and match the DB."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from campaigns.clock import SystemClock
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.delivery.leadership import record_tick, take_turn
from campaigns.delivery.pauses import pause
from campaigns.models import ContactRequest, Message
from campaigns.reporting.overview import read_status
from tests.test_admin import AUTH, basic, make_app
from tests.test_reports import script_history
from workers.app import QUEUES

LOOPBACK = ("127.0.0.1", 40000)


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape by (name, labels), read by prometheus_client's own parser;
    a sample twice is an error."""
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def app(factory, clock, tmp_path):
    return make_app(factory, clock, tmp_path)


def _broker_down(_settings):
    return {q: "unavailable (OperationalError)" for q in QUEUES}


# ---------------------------------------------------------------- /healthz


def test_healthz_ok_when_the_database_answers_and_the_schema_is_current(app):
    answer = TestClient(app).get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "scheduler": {
            "leader": False,
            "heartbeat_age_seconds": None,
            "last_tick_age_seconds": None,
            "standby": 0,
        },
    }


def test_healthz_reports_the_scheduler_without_naming_its_host(app, factory):
    wall = SystemClock()
    with transaction(factory) as s:
        take_turn(s, wall, "sched-host-a", 11, 10.0)
        take_turn(s, wall, "sched-host-b", 12, 10.0)
        record_tick(s, wall, "sched-host-a", 11)
    answer = TestClient(app).get("/healthz")
    assert answer.status_code == 200
    sched = answer.json()["scheduler"]
    assert sched["leader"] is True and sched["standby"] == 1
    assert 0 <= sched["heartbeat_age_seconds"] < 5 and 0 <= sched["last_tick_age_seconds"] < 5
    assert "sched-host" not in answer.text


def test_broker_trouble_is_reported_but_does_not_fail_health(app):
    app.state.queue_depths = _broker_down
    answer = TestClient(app).get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["broker"] == "unreachable: unavailable (OperationalError)"

    def raises(_settings):
        raise RuntimeError("boom")

    app.state.queue_depths = raises
    answer = TestClient(app).get("/healthz")
    assert (
        answer.status_code == 200
        and answer.json()["broker"] == "unreachable: unavailable (RuntimeError)"
    )


def test_healthz_503_on_an_unmigrated_sqlite_file(tmp_path, clock):
    path = tmp_path / "empty.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    try:
        app = make_app(make_session_factory(engine), clock, tmp_path)
        answer = TestClient(app).get("/healthz")
    finally:
        engine.dispose()
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "error" and "drip db upgrade" in body["reason"]
    assert str(tmp_path) not in answer.text  # the reason names no path or host


def test_healthz_503_when_the_database_does_not_answer(tmp_path, clock):
    engine = make_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    try:
        answer = TestClient(make_app(make_session_factory(engine), clock, tmp_path)).get("/healthz")
    finally:
        engine.dispose()
    assert answer.status_code == 503
    assert answer.json()["reason"] == "database does not answer (OperationalError)"
    assert answer.json()["scheduler"] == "unknown"
    assert "nobody" not in answer.text


# ---------------------------------------------------------------- /metrics


def test_metrics_need_basic_auth_when_a_password_is_set(app):
    client = TestClient(app, client=LOOPBACK)
    assert client.get("/metrics").status_code == 401  # loopback is not enough then
    assert client.get("/metrics", headers=basic("admin", "nope")).status_code == 401
    ok = client.get("/metrics", headers=AUTH)
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_metrics_without_a_password_only_from_loopback(factory, clock, tmp_path):
    app = make_app(factory, clock, tmp_path, admin_password=None)
    assert TestClient(app, client=LOOPBACK).get("/metrics").status_code == 200
    assert TestClient(app, client=("::1", 40000)).get("/metrics").status_code == 200
    assert TestClient(app, client=("10.1.2.3", 40000)).get("/metrics").status_code == 403
    proxied = TestClient(app, client=LOOPBACK).get(
        "/metrics", headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert proxied.status_code == 403


def test_metrics_parse_and_match_the_database(app, factory, clock, registry, policy):
    script_history(factory, clock, registry, policy)
    with transaction(factory) as s:
        pause(s, clock, "sms", 'twilio: bad "key"\nline two', by="provider")
    clock.advance(minutes=10)
    client = TestClient(app, client=LOOPBACK)
    answer = client.get("/metrics", headers=AUTH)
    samples = parse_prometheus(answer.text)

    with factory() as s:
        st = read_status(s, clock)
        by_channel = s.execute(
            select(Message.status, Message.channel, func.count()).group_by(
                Message.status, Message.channel
            )
        ).all()
        open_requests = s.scalar(
            select(func.count()).select_from(ContactRequest).where(ContactRequest.status == "open")
        )
    assert value(samples, "drip_due_backlog") == st.due_backlog
    assert (
        value(samples, "drip_oldest_due_age_seconds")
        == pytest.approx(600)
        == st.oldest_due_age_seconds
    )
    for status, channel, n in by_channel:
        assert value(samples, "drip_messages", status=status, channel=channel) == n
    db_total = sum(n for *_, n in by_channel)
    assert (
        sum(v for (name, _), v in samples.items() if name == "drip_messages") == db_total == 15
    )  # the scripted history (test_reports) writes 15 outbox rows
    assert (
        value(samples, "drip_messages", status="bounced", channel="sms") == 0
    )  # zeros are samples too
    for status in ("active", "paused", "completed", "exited"):
        assert value(samples, "drip_enrollments", status=status) == st.enrollments.get(status, 0)
    assert value(samples, "drip_enrollments", status="completed") == 2
    assert value(samples, "drip_channel_paused", channel="sms") == 1
    assert value(samples, "drip_channel_paused", channel="email") == 0
    assert value(samples, "drip_contact_requests_open") == open_requests == 1
    assert value(samples, "drip_contact_request_oldest_open_age_seconds") == pytest.approx(600)
    assert value(samples, "drip_provider_outcomes", channel="email", outcome="sent") == 4
    assert value(samples, "drip_provider_outcomes", channel="sms", outcome="unconfirmed") == 1
    assert value(samples, "drip_database_up") == 1 and value(samples, "drip_broker_up") == 1
    for queue in QUEUES:  # the embedded broker in tmp_path: empty queues
        assert value(samples, "drip_queue_depth", queue=queue) == 0


def test_metrics_when_the_broker_is_down(app):
    app.state.queue_depths = _broker_down
    samples = parse_prometheus(TestClient(app).get("/metrics", headers=AUTH).text)
    assert value(samples, "drip_broker_up") == 0
    assert not [k for k in samples if k[0] == "drip_queue_depth"]
    assert value(samples, "drip_due_backlog") == 0


def test_metrics_when_the_database_is_down(tmp_path, clock):
    engine = make_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    try:
        app = make_app(make_session_factory(engine), clock, tmp_path)
        answer = TestClient(app).get("/metrics", headers=AUTH)
    finally:
        engine.dispose()
    samples = parse_prometheus(answer.text)
    assert answer.status_code == 200 and value(samples, "drip_database_up") == 0
    assert ("drip_due_backlog", frozenset()) not in samples
