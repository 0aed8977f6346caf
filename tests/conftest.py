"""Shared fixtures: real SQLite files and a real PostgreSQL database, a fixed clock.

PostgreSQL and Redis are required: a test that needs one and cannot reach it fails, it
never skips. Where none is configured or answers, the run starts private ones
(tests/services.py). Each run creates its own PostgreSQL database and Redis key prefix, so runs
on one machine do not see each other's rows or queues.
"""

from __future__ import annotations

import atexit
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import text

from campaigns.clock import FixedClock
from campaigns.content.rendering import Renderer, Sender
from campaigns.db import make_engine, make_session_factory
from campaigns.delivery.sending import SendContext
from campaigns.links import Signer
from campaigns.migrate import upgrade
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from tests import services
from workers.providers.outbox import LocalOutbox

FIXTURES = Path(__file__).parent / "fixtures"
# The engine's tests edit campaign files and expect the next tick to run them, so by
# default the processes tests start read sequences from files. The database source (the
# product's default) is what tests/test_sequence_store.py, the editor's tests and the demo
# test ask for by name.
os.environ.setdefault("SEQUENCES_SOURCE", "files")
# Which PostgreSQL and Redis this run uses (tests/services.py): TEST_POSTGRES_URL and
# TEST_REDIS_URL, else the machine's on the default ports, else private ones started
# when a test first needs them.
POSTGRES = services.choose("postgres")
REDIS = services.choose("redis")
# What the session actually used, for the summary line.
USED: dict[str, str] = {}
TABLES = (
    "answers",
    "api_keys",
    "cap_holds",
    "inbox_items",
    "contact_requests",
    "event_rollups",
    "events",
    "messages",
    "enrollments",
    "person_events",
    "consent_records",
    "suppressions",
    "subscribers",
    "channel_pauses",
    "campaign_revisions",
    "audit_log",
    "staff_sessions",
    "staff_accounts",
    "sequence_revisions",
    "sequence_drafts",
    "scheduler_leases",
    "scheduler_instances",
)


def _sa_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def database_url(admin: str, name: str) -> str:
    """SQLAlchemy's URL of database `name` on the server of the admin URL `admin`."""
    return _sa_url(f"{admin.rsplit('/', 1)[0]}/{name}")


def _private(request, server, kind: str):
    """Start a private server for the session; stopped when the session ends, also on
    Ctrl-C or a failure (pytest tears session fixtures down then too), and at exit if
    pytest itself is killed before its teardown."""
    try:
        server.start()
    except services.ServiceError as exc:
        pytest.fail(f"{kind} is required and none answers, and a private one failed: {exc}")
    request.addfinalizer(server.stop)
    atexit.register(server.stop)
    USED[kind] = f"{server.url} (private: {server.version})"
    return server.url


@pytest.fixture(scope="session")
def pg_admin(request) -> str:
    """An admin URL of the run's PostgreSQL server, allowed to create databases."""
    if POSTGRES.url:
        USED["PostgreSQL"] = POSTGRES.describe()
        return POSTGRES.url
    return _private(request, services.PrivatePostgres(), "PostgreSQL")


@pytest.fixture(scope="session")
def pg_url(pg_admin):
    name = f"drip_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(pg_admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {pg_admin} (TEST_POSTGRES_URL): {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(pg_admin, name)
    upgrade(url)
    yield url
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def redis_url(request):
    if REDIS.url:
        url = REDIS.url
        USED["Redis"] = REDIS.describe()
    else:
        url = _private(request, services.PrivateRedis(), "Redis")
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required at {url} (TEST_REDIS_URL): {exc}")
    finally:
        client.close()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'drip.sqlite3'}"
        upgrade(url)
        return url
    return request.getfixturevalue("clean_pg_url")


@pytest.fixture
def clean_pg_url(pg_url):
    """The run's PostgreSQL database, emptied for this test (the schema stays)."""
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return pg_url


@pytest.fixture
def pg_factory(clean_pg_url):
    """A session factory on the run's emptied PostgreSQL database."""
    engine = make_engine(clean_pg_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def factory(engine):
    return make_session_factory(engine)


# Monday 2 March 2026, 15:00 UTC = 10:00 in New York, before the DST change on 8 March.
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return FixedClock(T0)


@pytest.fixture
def registry():
    return Registry(FIXTURES / "definitions", FIXTURES / "templates")


@pytest.fixture
def policy():
    return Policy(default_timezone="America/New_York", requeue_after=timedelta(minutes=10))


@pytest.fixture
def outbox(tmp_path):
    return LocalOutbox(tmp_path / "outbox")


@pytest.fixture
def send_ctx(factory, clock, registry, policy, outbox):
    return SendContext(
        factory=factory,
        clock=clock,
        registry=registry,
        renderer=Renderer(FIXTURES / "templates", Sender("Lunara", "1 Test Street, Springfield")),
        signer=Signer(b"test-secret-key-for-links-0123456789"),
        policy=policy,
        base_url="https://care.example",
        email_provider=outbox,
        sms_provider=outbox,
    )


def pytest_report_header(config):
    """Which PostgreSQL and Redis the run uses, before it starts."""
    return [f"PostgreSQL: {POSTGRES.describe()}", f"Redis: {REDIS.describe()}"]


def pytest_terminal_summary(terminalreporter):
    """Which servers the run used (private ones with their address and version); and the
    property test's figure in every run's summary (CI included): how many generated
    requests reached the public routes, and how many got a 5xx."""
    for kind in ("PostgreSQL", "Redis"):
        used = USED.get(kind, "not needed by the tests that ran")
        terminalreporter.write_line(f"{kind} used: {used}")

    from tests import test_edge_property

    sent = test_edge_property.SENT["count"]
    if sent:
        crashes = test_edge_property.SENT.get("crashes", 0)
        terminalreporter.write_line(
            f"edge property test: {sent} generated requests to the public routes, "
            f"{crashes} got a 5xx"
        )
