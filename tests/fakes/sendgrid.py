"""Fake SendGrid v3 Mail Send API (``POST /v3/mail/send``).

Why: lets tests drive the real ``sendgrid`` 6.x SDK (``python_http_client``
on ``urllib``) over loopback, so the Bearer header, JSON body and the
``python_http_client.exceptions`` mapping are the SDK's own.

Pointing the SDK at the fake (or just use ``fake.client(...)``)::

    from sendgrid import SendGridAPIClient

    sg = SendGridAPIClient(api_key="SG.x", host=fake.url)  # SDK appends /v3
    sg.client.timeout = 0.5   # seconds; no constructor arg, propagates to sub-clients

Errors raise ``python_http_client.exceptions.<Class>`` (BadRequestsError 400,
UnauthorizedError 401, TooManyRequestsError 429, InternalServerError 500, ...)
with ``.status_code``, ``.body`` (bytes), ``.headers`` (http.client.HTTPMessage,
case-insensitive) and ``.to_dict`` (parsed JSON body).

Auth: with ``api_key`` given the Bearer token must match exactly, otherwise any
token starting with "SG." passes (so a missing key, sent as "Bearer None",
fails like it does for real). Accepted sends answer 202, empty body and a
unique ``X-Message-Id`` header.

Flaky answers (``fail_sends(share)``): that share of sends is answered 500 and not
accepted, as SendGrid documents its 5xx answers.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

from .server import FakeServer, Recorded, Response

_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"


def sendgrid_error(
    status: int,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    help: str | None = None,
) -> Response:
    """A Response shaped like SendGrid's error JSON.

    For 429 the X-RateLimit-* headers SendGrid sends are added (reset = now+60s,
    unix epoch seconds) unless overridden via ``headers``.
    """
    hdrs: dict[str, str] = {}
    if status == 429:
        hdrs = {
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + 60),
        }
    hdrs.update(headers or {})
    return Response(
        status, {"errors": [{"field": field, "message": message, "help": help}]}, headers=hdrs
    )


class FakeSendGrid(FakeServer):
    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self._lock = threading.Lock()
        self._mails: list[dict[str, Any]] = []
        self._fail_share = 0.0
        self._rng = random.Random(11)
        self.failed_sends = 0

    def fail_sends(self, share: float, seed: int = 11) -> None:
        """Answer `share` of the sends with a 500, accepting nothing of them."""
        with self._lock:
            self._fail_share, self._rng = share, random.Random(seed)

    def client(self, api_key: str | None = None, timeout: float | None = None):
        """A real ``sendgrid.SendGridAPIClient`` wired to this fake."""
        from sendgrid import SendGridAPIClient

        sg = SendGridAPIClient(api_key=api_key or self.api_key or "SG.test-key", host=self.url)
        sg.client.timeout = timeout
        return sg

    # helpers ---------------------------------------------------------------
    def sent_mails(self) -> list[dict[str, Any]]:
        """JSON bodies of every accepted (202) send, in order."""
        with self._lock:
            return list(self._mails)

    def personalizations(self) -> list[dict[str, Any]]:
        """All personalizations of all accepted sends, flattened in order."""
        return [p for mail in self.sent_mails() for p in mail.get("personalizations", [])]

    def _reset_state(self) -> None:
        with self._lock:
            self._mails.clear()
            self._fail_share, self.failed_sends = 0.0, 0

    # API -------------------------------------------------------------------
    def route(self, req: Recorded) -> Response:
        if "Authorization" not in req.headers:
            return sendgrid_error(401, "authorization required")
        token = req.bearer_token or ""
        if (token != self.api_key) if self.api_key else not token.startswith("SG."):
            return sendgrid_error(
                401, "The provided authorization grant is invalid, expired, or revoked"
            )
        if (req.method, req.path) != ("POST", "/v3/mail/send"):
            return sendgrid_error(404, "Not Found")
        mail = req.json
        if not isinstance(mail, dict):
            return sendgrid_error(400, "Bad Request", help=_HELP)
        problem = _validate(mail)
        if problem:
            return sendgrid_error(400, problem[1], field=problem[0], help=_HELP)
        with self._lock:
            if self._fail_share and self._rng.random() < self._fail_share:
                self.failed_sends += 1
                return sendgrid_error(500, "Internal server error")
            self._mails.append(mail)
        return Response(202, None, headers={"X-Message-Id": uuid.uuid4().hex[:22]})


def _validate(mail: dict[str, Any]) -> tuple[str, str] | None:
    """The few checks SendGrid does that a client bug is likely to trip."""
    pers = mail.get("personalizations")
    if not pers:
        return (
            "personalizations",
            ("The personalizations field is required and must have at least one personalization."),
        )
    if any(not p.get("to") for p in pers):
        return (
            "personalizations.0.to",
            (
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address."
            ),
        )
    if not (mail.get("from") or {}).get("email"):
        return ("from.email", "The from email does not contain a valid address.")
    templated = bool(mail.get("template_id"))
    if not templated and not mail.get("subject") and any(not p.get("subject") for p in pers):
        return (
            "subject",
            (
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject defined."
            ),
        )
    if not templated and not mail.get("content"):
        return (
            "content",
            (
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block."
            ),
        )
    return None
