"""The link pages' own connections to PostgreSQL, used from the event loop.

The lesson read online and a link's redirect read one message and its person per request
(campaigns.tracking.page_reads). Through a SQLAlchemy session in a worker thread that
read cost about 0.4 ms of CPU; on a psycopg async connection, 0.14 ms. So on PostgreSQL
each web process keeps a small pool of async connections (psycopg_pool), in autocommit,
opened on first use. Any failure of it (the database away, the pool exhausted past its
wait) is the caller's cue to read the usual way, in a thread through the session factory,
which knows how to wait for and report a database that is down.

SQLite (the embedded defaults) has no async driver here: no pool, the pages read in a
thread as before.
"""

from __future__ import annotations

import asyncio

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from campaigns.db import postgres_conninfo
from campaigns.tracking.page_reads import page_visit_async
from campaigns.tracking.portal import Visit

MAX_CONNECTIONS = 10  # per web process; each request holds one for one query
WAIT_SECONDS = 2.0  # for a free connection, before the caller reads the usual way

# What a caller treats as "read the usual way instead".
Unavailable = (psycopg.Error, PoolTimeout, OSError)


class PagePool:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def visit(self, public: str) -> Visit | None:
        """The message with this public token and its person, or None; raises one of
        `Unavailable` when the pool cannot answer."""
        pool = await self._opened()
        async with pool.connection() as conn:
            return await page_visit_async(conn, public)

    async def _opened(self) -> AsyncConnectionPool:
        # A pool belongs to the loop that opened it (one per web process; a test's client
        # may run several loops in turn).
        loop = asyncio.get_running_loop()
        if self._pool is None or self._loop is not loop:
            pool = AsyncConnectionPool(
                self.conninfo,
                min_size=1,
                max_size=MAX_CONNECTIONS,
                timeout=WAIT_SECONDS,
                open=False,
                kwargs={"autocommit": True, "connect_timeout": 2},
            )
            self._pool, self._loop = pool, loop
            await pool.open(wait=False)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None and self._loop is asyncio.get_running_loop():
            await self._pool.close()
        self._pool = None


def build_page_pool(factory) -> PagePool | None:
    """A pool to the session factory's database if it is PostgreSQL; None otherwise."""
    conninfo = postgres_conninfo(factory)
    return None if conninfo is None else PagePool(conninfo)
