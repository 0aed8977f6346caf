"""The open and click pushes of one web process, sent to Redis together.

At a click storm's rates each page's push as a command of its own costs more in the
client (a task, a timeout and a retry wrapper per command in redis.asyncio) than the
page's own work. So the pushes made while the event loop runs one turn wait together,
and go as one pipeline of EVALSHA calls when the turn ends; each page awaits its own
reply and answers only once Redis has it, as before (never lost: workers/hit_queue.py).

One pipeline is out at a time: the pushes made meanwhile wait, and go together as the
next one when it is back. So a slow Redis gets bigger pipelines, not more connections
(and every push still gets its answer within the timeout). A pipeline
that fails or times out fails every push in it, and each of those pages records its hit
itself under its id (a push that lands late is then found as the same hit). A script
Redis does not have (it restarted, or was flushed) is loaded and the pushes it refused
are sent again, and only those: the others already ran.
"""

from __future__ import annotations

import asyncio
import hashlib

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError


class OfferBatch:
    """One event loop's client and the pushes waiting for the end of this turn."""

    def __init__(self, url: str, script: str, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = aioredis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self._waiting: list[tuple[list, list, asyncio.Future]] = []
        self._out: asyncio.Task | None = None  # the pipeline out now (held: not collected)
        self._due = False  # a send is scheduled for the end of this turn

    def run(self, keys: list, args: list) -> asyncio.Future:
        """A future of the script's reply for these keys and args."""
        reply = self.loop.create_future()
        self._waiting.append((keys, args, reply))
        if not self._due and self._out is None:
            self._due = True
            self.loop.call_soon(self._send)
        return reply

    def _send(self) -> None:
        self._due = False
        if self._out is not None or not self._waiting:
            return
        calls, self._waiting = self._waiting, []
        self._out = self.loop.create_task(self._send_all(calls))
        self._out.add_done_callback(self._back)

    def _back(self, _task: asyncio.Task) -> None:
        self._out = None
        if self._waiting:  # what came while it was out goes now
            self._send()

    async def _send_all(self, calls: list[tuple[list, list, asyncio.Future]]) -> None:
        try:
            replies = await self._pipeline([(k, a) for k, a, _ in calls])
            refused = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if refused:
                await self.client.script_load(self.script)
                again = await self._pipeline([calls[i][:2] for i in refused])
                for i, reply in zip(refused, again, strict=True):
                    replies[i] = reply
        except BaseException as exc:  # cancelled too: every waiting page hears of it
            failure = exc if isinstance(exc, Exception) else aioredis.ConnectionError(str(exc))
            for _, _, reply in calls:
                if not reply.done():
                    reply.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, reply), got in zip(calls, replies, strict=True):
            if reply.done():  # the page's request was cancelled meanwhile
                continue
            if isinstance(got, Exception):
                reply.set_exception(got)
            else:
                reply.set_result(got)

    async def _pipeline(self, calls: list[tuple[list, list]]) -> list:
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self.sha, len(keys), *keys, *args)
        return await pipe.execute(raise_on_error=False)

    async def aclose(self) -> None:
        await self.client.aclose()
