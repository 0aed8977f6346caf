"""Fake Twilio Programmable Messaging API (2010-04-01 Messages resource).

Why: lets tests drive the real ``twilio`` 9.x SDK (``requests`` under the
hood) over loopback, so auth, form encoding and TwilioRestException mapping
are the SDK's own.

Pointing the SDK at the fake (or just use ``fake.client(...)``)::

    from twilio.rest import Client
    from twilio.http.http_client import TwilioHttpClient

    client = Client(sid, token, http_client=TwilioHttpClient(timeout=0.5))
    client.api.base_url = fake.url   # ApiBase is a Domain; base_url is read per request
    client.region = client.edge = None  # else get_hostname() rewrites "127.0.0.1:PORT"

Caveat: ``TwilioHttpClient(max_retries=...)`` only mounts its adapter for
``https://``, so retries configured that way do NOT apply against this
``http://`` fake.

Realism notes: ``From`` + ``To`` -> status "queued"; ``MessagingServiceSid``
without ``From`` -> status "accepted" and ``from: null`` (as Twilio does).
Missing To/From/Body and non-E.164 ``To`` get Twilio's 400 errors
(21604/21603/21602/21211). If the fake is built with ``auth_token``, a wrong
token gets 401/20003; otherwise any Basic credentials are accepted.

Listing (``GET .../Messages.json``, ``client.messages.list``): filtered by ``To`` and
``DateSent>`` (a message Twilio still queues has no date_sent, so that filter leaves it
out, as Twilio's does), newest first, one page of ``PageSize``.

Flaky answers (``fail_creates(share, created_share)``): that share of create requests
is answered 500, and of those, ``created_share`` were created before the 500 (Twilio
holds them: a look-up finds them); the rest never were.
"""

from __future__ import annotations

import random
import re
import threading
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from .server import FakeServer, Recorded, Response

_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
_MESSAGE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$")
_E164 = re.compile(r"^(whatsapp:)?\+[1-9]\d{1,14}$")
_GSM = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = "^{}\\[~]|€\f"


def twilio_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """A Response shaped like Twilio's legacy error JSON (what the SDK parses)."""
    return Response(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        headers=dict(headers or {}),
    )


def num_segments(body: str) -> int:
    """SMS segment count: GSM-7 160/153 chars, else UCS-2 70/67 code units."""
    if all(c in _GSM or c in _GSM_EXT for c in body):
        n, single, multi = sum(2 if c in _GSM_EXT else 1 for c in body), 160, 153
    else:
        n, single, multi = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if n <= single else -(-n // multi)


class FakeTwilio(FakeServer):
    def __init__(
        self, account_sid: str | None = None, auth_token: str | None = None, clock=None
    ) -> None:
        super().__init__()
        # What "now" is for date_created and the DateSent filter: the tests' virtual clock,
        # so a look-up's window (computed on that clock) lines up as it does in production.
        self.now = clock or (lambda: datetime.now(UTC))
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._lock = threading.Lock()
        self._messages: dict[str, dict[str, Any]] = {}  # sid -> resource
        self._forms: list[dict[str, Any]] = []
        self._created_at: dict[str, datetime] = {}
        self._flaky: tuple[float, float] | None = None
        self._rng = random.Random(7)
        self.failed_creates: list[tuple[dict[str, Any], bool]] = []  # (form, created)

    def fail_creates(self, share: float, created_share: float = 0.5, seed: int = 7) -> None:
        """Answer `share` of create requests with a 500; `created_share` of those create
        the message first (see the module docstring)."""
        with self._lock:
            self._flaky = (share, created_share)
            self._rng = random.Random(seed)

    def client(
        self,
        account_sid: str | None = None,
        auth_token: str | None = None,
        timeout: float | None = None,
    ):
        """A real ``twilio.rest.Client`` wired to this fake."""
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        sid = account_sid or self.account_sid or "AC" + "0" * 32
        token = auth_token or self.auth_token or "test-auth-token"
        client = Client(sid, token, http_client=TwilioHttpClient(timeout=timeout))
        client.api.base_url = self.url
        client.region = client.edge = None
        return client

    # helpers ---------------------------------------------------------------
    def sent_messages(self) -> list[dict[str, Any]]:
        """Form fields of every message the fake accepted (201), in order."""
        with self._lock:
            return [dict(f) for f in self._forms]

    def message(self, sid: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._messages[sid])

    def update_message(self, sid: str, **fields: Any) -> None:
        """Simulate Twilio progressing a message, e.g. status="delivered"."""
        with self._lock:
            self._messages[sid].update(fields)

    def _reset_state(self) -> None:
        with self._lock:
            self._messages.clear()
            self._forms.clear()
            self._created_at.clear()
            self.failed_creates.clear()
            self._flaky = None

    # API -------------------------------------------------------------------
    def route(self, req: Recorded) -> Response:
        auth = req.basic_auth
        if (
            not auth
            or not auth[0]
            or not auth[1]
            or (
                self.auth_token is not None
                and auth != (self.account_sid or auth[0], self.auth_token)
            )
        ):
            return twilio_error(
                401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        if req.method == "POST" and (m := _MESSAGES.match(req.path)):
            return self._create(m["account"], req.form or {})
        if req.method == "GET" and (m := _MESSAGES.match(req.path)):
            return self._list(m["account"], req)
        if req.method == "GET" and (m := _MESSAGE.match(req.path)):
            with self._lock:
                found = self._messages.get(m["sid"])
            if found and found["account_sid"] == m["account"]:
                return Response(200, dict(found))
        return twilio_error(404, 20404, f"The requested resource {req.path} was not found")

    def _list(self, account: str, req: Recorded) -> Response:
        to = req.query.get("To")
        after = req.query.get("DateSent>")
        size = int(req.query.get("PageSize") or 50)
        since = datetime.fromisoformat(after.replace("Z", "+00:00")) if after else None
        with self._lock:
            found = [
                dict(r)
                for sid, r in sorted(
                    self._messages.items(), key=lambda kv: self._created_at[kv[0]], reverse=True
                )
                if r["account_sid"] == account
                and (to is None or r["to"] == to)
                and (since is None or (r["date_sent"] and self._created_at[sid] >= since))
            ]
        uri = f"/2010-04-01/Accounts/{account}/Messages.json"
        return Response(
            200,
            {
                "messages": found[:size],
                "end": min(size, len(found)) - 1,
                "first_page_uri": f"{uri}?PageSize={size}&Page=0",
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": f"{uri}?PageSize={size}&Page=0",
            },
        )

    def _create(self, account: str, form: dict[str, Any]) -> Response:
        with self._lock:
            flaky = self._flaky
            roll, kept = self._rng.random(), self._rng.random()
        if flaky is not None and roll < flaky[0]:
            created = kept < flaky[1]
            if created:
                self._create_ok(account, form)
            with self._lock:
                self.failed_creates.append((dict(form), created))
            return twilio_error(500, 20500, "Internal Server Error")
        return self._create_ok(account, form)

    def _create_ok(self, account: str, form: dict[str, Any]) -> Response:
        to, from_, service = form.get("To"), form.get("From"), form.get("MessagingServiceSid")
        body = form.get("Body", "")
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not (from_ or service):
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not (body or form.get("MediaUrl") or form.get("ContentSid")):
            return twilio_error(400, 21602, "Message body is required.")
        if not _E164.match(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        sid = "SM" + uuid.uuid4().hex
        created_at = self.now()
        now = format_datetime(created_at)
        uri = f"/2010-04-01/Accounts/{account}/Messages/{sid}.json"
        media = form.get("MediaUrl") or []
        resource = {
            "account_sid": account,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": service,
            "num_media": str(len(media) if isinstance(media, list) else 1),
            "num_segments": str(num_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if from_ else "accepted",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
        }
        with self._lock:
            self._messages[sid] = resource
            self._created_at[sid] = created_at
            self._forms.append(dict(form))
        return Response(201, dict(resource))
