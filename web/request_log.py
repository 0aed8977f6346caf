"""One log line per HTTP request: method, path (signed tokens cut short), status, duration
and a request id, which every other line logged while serving it carries too
(workers/logs.py's context) and the response echoes in X-Request-ID.

The id is the caller's X-Request-ID when it is a sane one (a proxy or load balancer that
set it can then join its own logs to ours), otherwise a new one. uvicorn's access log is
off (workers.logs.take_over_uvicorn): it would print every token whole.

A plain ASGI middleware rather than BaseHTTPMiddleware: it wraps streamed and long
responses without buffering them, and the context it sets reaches the routes that run in
the thread pool (Starlette copies the context into it).
"""

from __future__ import annotations

import logging
import os
import re
import time

from workers.logs import context

log = logging.getLogger("drip.web")
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")
# First path segments whose next segment is a signed token (campaigns.links): the open
# pixel, message page, link redirect, unsubscribe, preferences, call request, answers,
# sign-up confirmation and test previews.
TOKEN_PREFIXES = {"o", "m", "l", "u", "p", "c", "a", "confirm", "t"}
KEEP = 6  # characters of a token kept: enough to tell two apart, not to use one


def masked_path(path: str) -> str:
    parts = path.split("/")
    if len(parts) > 2 and parts[1] in TOKEN_PREFIXES and parts[2]:
        parts[2] = parts[2][:KEEP] + "***"
    return "/".join(parts)


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"x-request-id":
            candidate = value.decode("latin-1").strip()
            if _SANE_ID.fullmatch(candidate):
                return candidate
    return os.urandom(16).hex()  # as random as uuid4().hex, without the UUID object


class RequestLog:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope.get("headers") or [])
        token = context.set({"request_id": rid})
        started = time.monotonic()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            ms = round((time.monotonic() - started) * 1000, 1)
            path = masked_path(scope.get("path", ""))
            log.info(
                "%s %s %s %s ms",
                scope.get("method", "-"),
                path,
                status,
                ms,
                extra={
                    "method": scope.get("method"),
                    "path": path,
                    "status": status,
                    "duration_ms": ms,
                },
            )
            context.reset(token)
