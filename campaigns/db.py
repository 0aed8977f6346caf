"""Engine and session set-up for SQLite (embedded default) and PostgreSQL.

SQLite: every transaction starts with BEGIN IMMEDIATE, which takes the database write
lock up front. Two schedulers claiming the same due rows are then serialised instead of
both reading them and racing; this stands in for PostgreSQL's FOR UPDATE SKIP LOCKED.
WAL keeps readers (the status page, the demo) from blocking on writers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import ARRAY, any_, bindparam, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

# How long a SQLite statement waits for another connection's write lock.
SQLITE_BUSY_TIMEOUT_MS = 30000


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        # hide_parameters: an IntegrityError traceback must not log addresses or names.
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            hide_parameters=True,
            **kwargs,
        )
        _sqlite_setup(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)


def make_scheduler_engine(url: str, renew_seconds: float) -> Engine:
    """The scheduler's engine. On PostgreSQL the server ends any of its sessions left idle
    inside a transaction for `renew_seconds`: a scheduler frozen mid-turn (SIGSTOP, a
    paused VM) would otherwise hold the lease row's lock for as long as its connection
    lives, and every standby's turn would wait on it instead of taking the expired lease.
    A live scheduler's turn is a few statements in a row, never idle that long."""
    if url.startswith("sqlite"):
        return make_engine(url)
    ms = max(int(renew_seconds * 1000), 1)
    return make_engine(
        url, connect_args={"options": f"-c idle_in_transaction_session_timeout={ms}"}
    )


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def reader(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for look-ups that only read (the link pages'): in autocommit, so a look-up
    is one round trip to the database, not BEGIN, SELECT and ROLLBACK."""
    bind = factory.kw.get("bind")
    if bind is None:
        return factory
    autocommit = bind.execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(bind=autocommit, expire_on_commit=False, info=factory.kw.get("info", {}))


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def impatient_transaction(factory: sessionmaker[Session], wait_seconds: float) -> Iterator[Session]:
    """`transaction`, but waiting at most `wait_seconds` for a lock another transaction
    holds; past that the driver's OperationalError is raised and nothing is written.

    For work that must never hang (a release in a signal handler while the interrupted
    code holds the row). PostgreSQL: `lock_timeout` for this transaction only. SQLite:
    the write lock is taken at BEGIN, so the connection's busy timeout is shortened before
    it and put back after."""
    ms = max(int(wait_seconds * 1000), 1)
    engine = factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        with transaction(factory) as session:
            session.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{ms}ms"})
            yield session
        return
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection  # no BEGIN yet: that comes with the session
        raw.execute(f"PRAGMA busy_timeout={ms}")
        try:
            with transaction(sessionmaker(conn, expire_on_commit=False)) as session:
                yield session
        finally:
            raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def database_problem(exc: BaseException) -> str | None:
    """How to name an error if the database raised it: "unreachable" (refused, timed out,
    dropped), "error" (it answered with one: a schema not migrated, ...); None when the
    error is not the database's, for callers that must not blame it for everything."""
    if isinstance(exc, OperationalError):
        return "unreachable"
    if isinstance(exc, DBAPIError):
        return "error"
    return None


def ping(factory: sessionmaker[Session]) -> Engine:
    """Ask the database for one row; its engine when it answers, else the driver's error."""
    with factory() as session:
        session.execute(text("SELECT 1"))
        return session.get_bind()


def id_in(session: Session, column, values):
    """`column IN values`, as `= ANY(array)` on PostgreSQL: one parameter instead of
    hundreds keeps big batches cheap to send and to parse."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def unnest(columns: dict[str, str], rows: list[dict]) -> tuple[str, dict]:
    """`unnest(CAST(:a AS int[]), ...)` over `rows` (PostgreSQL) and its parameters: a
    whole batch written by one small statement, however many rows it has."""
    arrays = ", ".join(f"CAST(:{name} AS {pg_type}[])" for name, pg_type in columns.items())
    return f"unnest({arrays})", {name: [row[name] for row in rows] for name in columns}


def binary_unnest(columns: dict[str, str], rows: list[dict]) -> tuple[str, dict]:
    """Like unnest, but with psycopg's binary placeholders (`%(name)b`), for
    exec_driver_sql: psycopg quotes each element of a text-format array in Python, which
    cost more than the INSERT itself at a thousand rows; binary arrays cost a tenth."""
    arrays = ", ".join(f"%({name})b::{pg_type}[]" for name, pg_type in columns.items())
    return f"unnest({arrays})", {name: [row[name] for row in rows] for name in columns}


def postgres_conninfo(factory: sessionmaker[Session]) -> str | None:
    """The factory's database as libpq reads it (psycopg's own connections,
    web/page_pool.py), or None when it is not PostgreSQL."""
    bind = factory.kw.get("bind")
    if bind is None or bind.url.get_backend_name() != "postgresql":
        return None
    return bind.url.set(drivername="postgresql").render_as_string(hide_password=False)
