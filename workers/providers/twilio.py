"""Twilio SMS through the official SDK: one `messages.create` per text.

Sent from a Messaging Service when TWILIO_MESSAGING_SERVICE_SID is set (Twilio picks the
sender from its pool), else from TWILIO_FROM_NUMBER. Each text names a status callback
that carries only our opaque reference; the webhook checks Twilio's signature over it.

What can go wrong, and what it means (classified here, at the edge, in `classify`):

    Exception
     ├── TwilioRestException / TwilioServiceException    Twilio answered (.status, .code)
     │    ├── 20429, HTTP 429 ......................... TRANSIENT, retry after Retry-After
     │    ├── HTTP 5xx ................................ TRANSIENT
     │    ├── 21610 ................................... PERMANENT + suppress: the person
     │    │                                             texted STOP to the carrier
     │    ├── 21211 ................................... PERMANENT + suppress: invalid number
     │    ├── 21612, 21614, 21635 ..................... PERMANENT + suppress: not a
     │    │                                             reachable mobile
     │    ├── 20003, 21606, 21608, HTTP 401/403/404 ... CONFIG: credentials, sender or
     │    │                                             account are wrong for every text;
     │    │                                             the channel is paused
     │    └── any other 4xx ........................... PERMANENT, no suppression
     └── requests.RequestException
          ├── ConnectTimeout, ConnectionError whose
          │   cause is a failed connection ............ TRANSIENT: nothing reached Twilio
          ├── ReadTimeout ............................. UNKNOWN: the request went out and
          │                                             may have been acted on; never
          │                                             resent blindly (invariant 2)
          └── any other (connection dropped
              mid-exchange, ...) ...................... UNKNOWN, for the same reason
     anything else ................................... UNKNOWN
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import requests
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import MaxRetryError, NewConnectionError, SSLError

from campaigns.provider_api import Outcome, OutgoingSms, SendResult
from campaigns.redact import mask
from workers.providers import scrub

log = logging.getLogger(__name__)

SUPPRESS = {
    21610: "unsubscribed at carrier (21610)",
    21211: "invalid number (21211)",
    21612: "not a reachable mobile (21612)",
    21614: "not a reachable mobile (21614)",
    21635: "not a reachable mobile (21635)",
}
CONFIG_CODES = {20003, 21606, 21608}


@dataclass
class Verdict:
    outcome: Outcome
    error: str | None = None
    retry_after: float | None = None
    suppress_reason: str | None = None


def classify(exc: BaseException, headers=None) -> Verdict:
    """The one place that decides what a failed `messages.create` means.
    `headers` are the error response's, when there was one (for Retry-After)."""
    if isinstance(exc, (TwilioRestException, TwilioServiceException)):
        status, code = int(exc.status), int(exc.code or exc.status)
        detail = scrub(str(getattr(exc, "msg", None) or getattr(exc, "detail", None) or ""))
        text = f"HTTP {status}, code {code}: {detail}"[:500]
        if code == 20429 or status == 429:
            return Verdict(Outcome.TRANSIENT, text, retry_after=_retry_after(headers))
        if status >= 500:
            return Verdict(Outcome.TRANSIENT, text)
        if code in SUPPRESS:
            return Verdict(Outcome.PERMANENT, text, suppress_reason=SUPPRESS[code])
        if code in CONFIG_CODES or status in (401, 403, 404):
            return Verdict(Outcome.CONFIG, text)
        return Verdict(Outcome.PERMANENT, text)
    if isinstance(exc, requests.ConnectTimeout) or (
        isinstance(exc, requests.ConnectionError) and _never_connected(exc)
    ):
        return Verdict(Outcome.TRANSIENT, f"not sent: {exc!r}"[:500])
    return Verdict(Outcome.UNKNOWN, f"no answer after sending: {exc!r}"[:500])


def _never_connected(exc: requests.ConnectionError) -> bool:
    # urllib3 swallows resets while sending and reports them when reading the answer, so
    # only a connection that never opened proves the request did not reach Twilio.
    cause = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, (NewConnectionError, SSLError))


def _retry_after(headers) -> float | None:
    try:
        value = headers.get("Retry-After") if headers else None
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; backoff with jitter will do


class _HeadersKeepingClient(TwilioHttpClient):
    """The SDK's exceptions drop the response headers; Retry-After lives there."""

    last_headers = None

    def request(self, *args, **kwargs):
        self.last_headers = None
        response = super().request(*args, **kwargs)
        self.last_headers = response.headers
        return response


class TwilioSms:
    name = "twilio"
    max_batch = 1  # one API call per text; a list is accepted and sent in turn

    def __init__(self, account_sid: str, auth_token: str, status_base_url: str,
                 messaging_service_sid: str | None = None, from_number: str | None = None,
                 api_base_url: str | None = None, timeout: float = 10.0, concurrency: int = 8):
        if not (messaging_service_sid or from_number):
            raise ValueError("a messaging service SID or a from number is required")
        self.account_sid, self.auth_token = account_sid, auth_token
        self.status_base_url = status_base_url.rstrip("/")
        self.messaging_service_sid, self.from_number = messaging_service_sid, from_number
        self.api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self.timeout = timeout
        # One client per thread: the header-keeping HTTP client holds per-call state.
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="twilio")
        # The SDK loads the Messages API lazily (tens of ms); do it now rather than between
        # taking rate-limit tokens and the first call, which would bunch the first texts.
        self._client().messages  # noqa: B018

    @classmethod
    def from_settings(cls, settings) -> TwilioSms:
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            status_base_url=settings.public_base_url,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            from_number=settings.twilio_from_number, api_base_url=settings.twilio_api_base_url,
            timeout=settings.twilio_timeout, concurrency=settings.twilio_concurrency,
        )

    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            http = _HeadersKeepingClient(timeout=self.timeout)
            proxies = urllib.request.getproxies()
            if "no" not in proxies:
                # requests re-reads the whole environment for proxies on every call; read
                # it once (when NO_PROXY is set, requests keeps doing it, to honour it).
                http.session.trust_env = False
                http.proxy = {k: v for k, v in proxies.items() if k in ("http", "https")}
            client = Client(self.account_sid, self.auth_token, http_client=http)
            if self.api_base_url:
                client.api.base_url = self.api_base_url
                # Otherwise the SDK rewrites the host for a region/edge (TWILIO_REGION/EDGE).
                client.region = client.edge = None
            self._local.client = client
        return client

    def status_callback(self, reference: str) -> str:
        return f"{self.status_base_url}/webhooks/twilio/status?ref={quote(reference, safe='')}"

    def send_sms(self, texts: list[OutgoingSms]) -> list[SendResult]:
        # One API call per text; a chunk (the rate limiter's burst) goes out concurrently,
        # since each call mostly waits on the network. Each thread has its own client.
        if len(texts) <= 1:
            return [self._send(item) for item in texts]
        return list(self._pool.map(self._send, texts))

    def _send(self, item: OutgoingSms) -> SendResult:
        client = self._client()
        sender = ({"messaging_service_sid": self.messaging_service_sid} if self.messaging_service_sid
                  else {"from_": self.from_number})
        try:
            message = client.messages.create(to=item.to, body=item.body,
                                             status_callback=self.status_callback(item.reference), **sender)
        except Exception as exc:  # noqa: BLE001 - classify decides; unknown types are UNKNOWN
            verdict = classify(exc, client.http_client.last_headers)
            log.warning("twilio: text #%s to %s %s: %s", item.message_id, mask(item.to),
                        verdict.outcome.value, verdict.error)
            return SendResult(item.message_id, verdict.outcome, error=verdict.error,
                              retry_after=verdict.retry_after, suppress_reason=verdict.suppress_reason)
        return SendResult(item.message_id, Outcome.ACCEPTED, message.sid)
