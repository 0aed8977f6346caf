"""Request bodies capped before they are read (invariant 12): one ASGI middleware counts
the bytes as they arrive and answers 413 past the route's limit, whatever
Content-Length claims (a chunked body has none). Routes then read bodies as usual.

    /webhooks/sendgrid/...   2 MiB    SendGrid posts a batch every 30 s or at 768 KB
    /webhooks/twilio/...     64 KiB   Twilio's forms are a few hundred bytes
    /admin/campaigns/...     1 MiB    the sequence editor posts a step's copy: every
                                      template body in every locale, each at most 100 KB
    everything else          16 KiB   sign-up, link pages and admin forms: a few fields;
                                      the events API (/api/v1/events): one event of at most
                                      2 KiB of properties

A declared Content-Length over the limit is refused before a byte is read; otherwise
the over-limit chunk raises a 413 HTTPException out of `receive`, which the app's own
exception handling turns into the response (FastAPI re-raises HTTPExceptions met while
reading a form).
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SENDGRID_MAX_BODY = 2 * 1024 * 1024
TWILIO_MAX_BODY = 64 * 1024
FORM_MAX_BODY = 16 * 1024
EDITOR_MAX_BODY = 1024 * 1024
# Path prefix -> limit; the first match wins, FORM_MAX_BODY when none does.
LIMITS: tuple[tuple[str, int], ...] = (
    ("/webhooks/sendgrid/", SENDGRID_MAX_BODY),
    ("/webhooks/twilio/", TWILIO_MAX_BODY),
    ("/admin/campaigns/", EDITOR_MAX_BODY),
)


def limit_for(path: str) -> int:
    return next((limit for prefix, limit in LIMITS if path.startswith(prefix)), FORM_MAX_BODY)


def _too_large(limit: int) -> str:
    return f"body too large (at most {limit} bytes here)"


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        # At most 18 digits: int() of an absurd header must not itself be the crash.
        if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
            await JSONResponse({"detail": _too_large(limit)}, 413)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counted, send)
