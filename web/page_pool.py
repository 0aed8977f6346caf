"""The link pages' own reads from PostgreSQL, made on the event loop, many at a time.

The lesson read online and a link's redirect read one message and its person per request
(campaigns.tracking.page_reads). Through a SQLAlchemy session in a worker thread that read
cost about 0.4 ms of CPU; on a psycopg async connection, 0.15 ms, and in a busy process
still about twice that in waiting on the socket. So the reads asked for while the event
loop runs one turn wait together and go as one query (`public_token = ANY(...)`) on one
connection of a small pool (psycopg_pool, in autocommit, opened on first use); each page
awaits its own row. At a storm's rates a query then answers tens of pages.

Any failure (the database away, no free connection within WAIT_SECONDS) fails every read
of that query, and each page reads the usual way instead, in a thread through the session
factory, which knows how to wait for and report a database that is down. After a failure
the pool is left alone for RETRY_AFTER seconds (the pages read the usual way at once,
rather than each waiting for it), and the outage is logged when it starts and ends.

SQLite (the embedded defaults) has no async driver here: no pool, the pages read in a
thread as before.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from campaigns.db import postgres_conninfo
from campaigns.tracking.page_reads import page_visits_async
from campaigns.tracking.portal import Visit
from workers.outages import Outage

MAX_CONNECTIONS = 4  # per web process; a query answers every read of one loop turn
WAIT_SECONDS = 1.0  # for a free connection, before the pages read the usual way
RETRY_AFTER = 5.0  # seconds the pages read the usual way after the pool failed

log = logging.getLogger(__name__)
outage = Outage("postgresql (the link pages' own connections)", log)

# What a caller treats as "read the usual way instead".
Unavailable = (psycopg.Error, PoolTimeout, OSError)


class _Reads:
    """One event loop's pool and the reads waiting for the end of this turn."""

    def __init__(self, conninfo: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=MAX_CONNECTIONS,
            timeout=WAIT_SECONDS,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": 2},
        )
        self.opened = False
        self.waiting: dict[str, list[asyncio.Future]] = {}
        self.sending: set[asyncio.Task] = set()  # held so they are not collected mid-way

    def read(self, public: str) -> asyncio.Future:
        reply = self.loop.create_future()
        first = not self.waiting
        self.waiting.setdefault(public, []).append(reply)
        if first:
            self.loop.call_soon(self._send)
        return reply

    def _send(self) -> None:
        asked, self.waiting = self.waiting, {}
        task = self.loop.create_task(self._query(asked))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _query(self, asked: dict[str, list[asyncio.Future]]) -> None:
        try:
            if not self.opened:
                self.opened = True
                await self.pool.open(wait=False)
            async with self.pool.connection() as conn:
                found = await page_visits_async(conn, list(asked))
        except BaseException as exc:  # cancelled too: every waiting page hears of it
            failure = exc if isinstance(exc, Exception) else PoolTimeout(str(exc))
            for replies in asked.values():
                for reply in replies:
                    if not reply.done():
                        reply.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for public, replies in asked.items():
            for reply in replies:
                if not reply.done():  # the page's request was cancelled meanwhile
                    reply.set_result(found.get(public))


class PagePool:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._reads: _Reads | None = None
        self._skip_until = 0.0

    async def visit(self, public: str) -> Visit | None:
        """The message with this public token and its person, or None; raises one of
        `Unavailable` when the pool cannot answer (or failed less than RETRY_AFTER ago)."""
        if time.monotonic() < self._skip_until:
            raise PoolTimeout("the pages' pool failed a moment ago")
        # A pool belongs to the loop that opened it (one per web process; a test's client
        # may run several loops in turn).
        if self._reads is None or self._reads.loop is not asyncio.get_running_loop():
            self._reads = _Reads(self.conninfo)
        try:
            found = await self._reads.read(public)
        except Unavailable as exc:
            self._skip_until = time.monotonic() + RETRY_AFTER
            outage.failed("reading a message for a link page", exc)
            raise
        outage.ok()
        return found

    async def close(self) -> None:
        reads, self._reads = self._reads, None
        if reads is not None and reads.opened and reads.loop is asyncio.get_running_loop():
            await reads.pool.close()


def build_page_pool(factory) -> PagePool | None:
    """A pool to the session factory's database if it is PostgreSQL; None otherwise."""
    conninfo = postgres_conninfo(factory)
    return None if conninfo is None else PagePool(conninfo)
