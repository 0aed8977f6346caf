"""Twilio SMS through the official SDK: one `messages.create` per text.

Sent from a Messaging Service when TWILIO_MESSAGING_SERVICE_SID is set (Twilio picks the
sender from its pool), else from TWILIO_FROM_NUMBER. Each text names a status callback
that carries only our opaque reference; the webhook checks Twilio's signature over it.

What can go wrong, and what it means (classified here, at the edge, in `classify`):

    Exception
     ├── TwilioRestException / TwilioServiceException    Twilio answered (.status, .code)
     │    ├── 20429, HTTP 429 ......................... TRANSIENT, retry after Retry-After
     │    ├── HTTP 500, 502, 504 ...................... UNKNOWN: Twilio may have created
     │    │                                             the message before failing; the
     │    │                                             reaper asks Twilio (`look_up`)
     │    ├── other HTTP 5xx (503) .................... TRANSIENT: Twilio's API docs
     │    │                                             ("503 Service Unavailable: We are
     │    │                                             temporarily unable to service the
     │    │                                             request. Please wait for a bit and
     │    │                                             try again.")
     │    ├── 21610 ................................... PERMANENT + suppress: the person
     │    │                                             texted STOP to the carrier
     │    ├── 21211 ................................... PERMANENT + suppress: invalid number
     │    ├── 21612, 21614, 21635 ..................... PERMANENT + suppress: not a
     │    │                                             reachable mobile
     │    ├── 20003, 21606, 21608, HTTP 401/403/404 ... CONFIG: credentials, sender or
     │    │                                             account are wrong for every text;
     │    │                                             the channel is paused
     │    └── any other 4xx ........................... PERMANENT, no suppression
     └── aiohttp.ClientError / asyncio.TimeoutError      no usable answer
          ├── ClientConnectorError,
          │   ConnectionTimeoutError .................. TRANSIENT: the connection never
          │                                             opened, nothing reached Twilio
          ├── a read timeout .......................... UNKNOWN: the request went out and
          │                                             may have been acted on; never
          │                                             resent blindly (invariant 2)
          └── any other (connection dropped
              mid-exchange, ...) ...................... UNKNOWN, for the same reason
     anything else ................................... UNKNOWN

The SDK's async client (aiohttp) is used: on one event loop per process, the texts of a
chunk go out concurrently at about a third of the CPU that `requests` costs per call.

Unconfirmed texts (`look_up`, called by the reaper through
campaigns.delivery.unconfirmed): Twilio keeps every Message it created, listed by the
Message resource's Read operation filtered by `To` and `DateSent`
(https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources,
https://www.twilio.com/docs/messaging/tutorials/how-to-retrieve-and-modify-message-history).
Ours is the one whose body carries the message's public token (in every link we put in a
text). Found: sent, with its SID. Nothing of ours to that number in the window the call
could have happened in: never received, so it is queued again. Anything else (a text in
the window without our links, an API error, a page too full to see back that far):
undecided, asked again later. A text Twilio still holds in its own queue has no
`date_sent` yet, so a miss under the DateSent filter is checked again without it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
import time
import urllib.request
import weakref
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from campaigns.audience.suppression import Cause
from campaigns.delivery.providers import Outcome, OutgoingSms, SendResult
from campaigns.delivery.unconfirmed import LookupAnswer, LookupRequest
from campaigns.redact import mask
from workers import metrics
from workers.providers import scrub
from workers.providers.twilio_webhook import OPTED_OUT_ERRORS, PROVIDER

log = logging.getLogger(__name__)

SUPPRESS = {
    # The person opted out with their carrier: theirs to take back (a waivable cause).
    **{int(code): f"{Cause.UNSUBSCRIBED} at carrier ({code})" for code in OPTED_OUT_ERRORS},
    21211: "invalid number (21211)",
    21612: "not a reachable mobile (21612)",
    21614: "not a reachable mobile (21614)",
    21635: "not a reachable mobile (21635)",
}
CONFIG_CODES = {20003, 21606, 21608}
# Clocks differ (ours, Twilio's date_created); widen the call's window by this much.
LOOKUP_SLACK = timedelta(minutes=1)
LOOKUP_PAGE = 50


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
        if status in (500, 502, 504):
            # A gateway error or a crash mid-request: the text may already be created.
            return Verdict(Outcome.UNKNOWN, text)
        if status >= 500:
            return Verdict(Outcome.TRANSIENT, text)
        if code in SUPPRESS:
            return Verdict(Outcome.PERMANENT, text, suppress_reason=SUPPRESS[code])
        if code in CONFIG_CODES or status in (401, 403, 404):
            return Verdict(Outcome.CONFIG, text)
        return Verdict(Outcome.PERMANENT, text)
    # Only a connection that never opened proves the request did not reach Twilio.
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return Verdict(Outcome.TRANSIENT, f"not sent: {type(exc).__name__}")
    return Verdict(Outcome.UNKNOWN, f"no answer after sending: {type(exc).__name__}")


def _retry_after(headers) -> float | None:
    try:
        value = headers.get("Retry-After") if headers else None
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; backoff with jitter will do


# The SDK's exceptions drop the response headers, and Retry-After lives there; each send
# runs in its own asyncio task, so the headers of its last response are kept per task.
_last_headers: contextvars.ContextVar = contextvars.ContextVar("twilio_last_headers", default=None)
# And its status, for the request counter's code class (None: no answer came).
_last_status: contextvars.ContextVar = contextvars.ContextVar("twilio_last_status", default=None)


class _AsyncClient(AsyncTwilioHttpClient):
    """The SDK's aiohttp client with a real aiohttp timeout (connect and total) and the
    answer's headers kept for `classify`."""

    def __init__(self, timeout: float, concurrency: int):
        super().__init__(pool_connections=False, timeout=timeout)
        # Proxies from the environment only when some are set: reading them costs per call.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            trust_env=bool(urllib.request.getproxies()),
        )

    async def request(
        self,
        method,
        url,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ) -> Response:
        limit = timeout or self.timeout
        _last_headers.set(None)
        _last_status.set(None)
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        async with self.session.request(
            method.upper(),
            url,
            params=params,
            data=data,
            headers=headers,
            # A short connect timeout: a connection that never opened is safely retried.
            timeout=aiohttp.ClientTimeout(total=limit, sock_connect=min(3.0, limit)),
            allow_redirects=allow_redirects,
        ) as answer:
            text = await answer.text()
            _last_headers.set(answer.headers)
            _last_status.set(answer.status)
            return Response(answer.status, text, answer.headers)


class _Loop:
    """One event loop per process, in a daemon thread (Celery's prefork children each get
    their own: a loop must not cross a fork)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pid: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self, coro):
        with self._lock:
            if self._pid != os.getpid():
                self.loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self.loop.run_forever, name="twilio-loop", daemon=True
                ).start()
                self._pid = os.getpid()
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class TwilioSms:
    name = PROVIDER
    max_batch = 1  # one API call per text; a list is accepted and its texts sent at once

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        status_base_url: str,
        messaging_service_sid: str | None = None,
        from_number: str | None = None,
        api_base_url: str | None = None,
        timeout: float = 10.0,
        concurrency: int = 8,
    ):
        if not (messaging_service_sid or from_number):
            raise ValueError("a messaging service SID or a from number is required")
        self.account_sid, self.auth_token = account_sid, auth_token
        self.status_base_url = status_base_url.rstrip("/")
        self.messaging_service_sid, self.from_number = messaging_service_sid, from_number
        self.api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self.timeout = timeout
        self.concurrency = concurrency
        self._loop = _Loop()
        self._clients: dict[int, Client] = {}  # per process (pid): the session lives on its loop
        # Built now (the SDK loads the Messages API lazily, tens of ms) rather than between
        # taking rate-limit tokens and the first call, which would bunch the first texts.
        self._client()
        weakref.finalize(self, _close, self._loop, self._clients)

    @classmethod
    def from_settings(cls, settings) -> TwilioSms:
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            status_base_url=settings.public_base_url,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            from_number=settings.twilio_from_number,
            api_base_url=settings.twilio_api_base_url,
            timeout=settings.twilio_timeout,
            concurrency=settings.twilio_concurrency,
        )

    def _client(self) -> Client:
        client = self._clients.get(os.getpid())
        if client is None:

            async def build() -> Client:  # aiohttp sessions belong to the loop they are made on
                made = Client(
                    self.account_sid,
                    self.auth_token,
                    http_client=_AsyncClient(self.timeout, self.concurrency),
                )
                if self.api_base_url:
                    made.api.base_url = self.api_base_url
                    # Otherwise the SDK rewrites the host for a region/edge (TWILIO_REGION/EDGE).
                    made.region = made.edge = None
                # The SDK builds its Messages API lazily: build it now, once per client,
                # rather than on a first send.
                made.messages  # noqa: B018
                return made

            client = self._clients[os.getpid()] = self._loop.run(build())
        return client

    def status_callback(self, reference: str) -> str:
        return f"{self.status_base_url}/webhooks/twilio/status?ref={quote(reference, safe='')}"

    def send_sms(self, texts: list[OutgoingSms]) -> list[SendResult]:
        # One API call per text; a chunk (the rate limiter's burst) goes out concurrently,
        # since each call mostly waits on the network.
        client = self._client()
        return self._loop.run(self._send_all(client, texts))

    async def _send_all(self, client: Client, texts: list[OutgoingSms]) -> list[SendResult]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(item: OutgoingSms) -> SendResult:
            async with gate:
                return await self._send(client, item)

        return list(await asyncio.gather(*(one(item) for item in texts)))

    async def _send(self, client: Client, item: OutgoingSms) -> SendResult:
        sender = (
            {"messaging_service_sid": self.messaging_service_sid}
            if self.messaging_service_sid
            else {"from_": self.from_number}
        )
        started = time.perf_counter()
        try:
            message = await client.messages.create_async(
                to=item.to,
                body=item.body,
                status_callback=self.status_callback(item.reference),
                **sender,
            )
        except Exception as exc:  # classify decides; unknown types are UNKNOWN
            verdict = classify(exc, _last_headers.get())
            metrics.record_provider_call(
                "sms",
                PROVIDER,
                verdict.outcome.value,
                _last_status.get(),
                time.perf_counter() - started,
            )
            log.warning(
                "twilio: text #%s to %s %s: %s",
                item.message_id,
                mask(item.to),
                verdict.outcome.value,
                verdict.error,
            )
            return SendResult(
                item.message_id,
                verdict.outcome,
                error=verdict.error,
                retry_after=verdict.retry_after,
                suppress_reason=verdict.suppress_reason,
            )
        metrics.record_provider_call(
            "sms", PROVIDER, "accepted", _last_status.get(), time.perf_counter() - started
        )
        return SendResult(item.message_id, Outcome.ACCEPTED, message.sid)

    def look_up(self, requests: list[LookupRequest]) -> dict[int, LookupAnswer]:
        """Whether Twilio holds each unconfirmed text (see the module docstring)."""
        client = self._client()
        return self._loop.run(self._look_up_all(client, requests))

    async def _look_up_all(self, client: Client, requests: list[LookupRequest]):
        gate = asyncio.Semaphore(self.concurrency)

        async def one(req: LookupRequest) -> tuple[int, LookupAnswer]:
            async with gate:
                return req.message_id, await self._look_up(client, req)

        return dict(await asyncio.gather(*(one(r) for r in requests)))

    async def _look_up(self, client: Client, req: LookupRequest) -> LookupAnswer:
        if not req.to or not req.mark:
            return LookupAnswer(None)
        try:
            listed = await client.messages.list_async(
                to=req.to,
                date_sent_after=req.since - LOOKUP_SLACK,
                limit=LOOKUP_PAGE,
                page_size=LOOKUP_PAGE,
            )
            answer = self._match(req, listed)
            if answer.found is False:
                # Still queued at Twilio: no date_sent, so not under the filter above.
                listed = await client.messages.list_async(
                    to=req.to, limit=LOOKUP_PAGE, page_size=LOOKUP_PAGE
                )
                answer = self._match(req, listed)
        except Exception as exc:  # any failure to ask is "can't tell": asked again later
            log.warning(
                "twilio: look-up of text #%s failed: %s", req.message_id, type(exc).__name__
            )
            return LookupAnswer(None)
        log.info(
            "twilio: look-up of unconfirmed text #%s to %s: %s",
            req.message_id,
            mask(req.to),
            {True: "found", False: "never received", None: "undecided"}[answer.found],
        )
        return answer

    def _match(self, req: LookupRequest, listed) -> LookupAnswer:
        earliest, latest = req.since - LOOKUP_SLACK, req.until + LOOKUP_SLACK
        in_window = [
            m
            for m in listed
            if str(m.direction or "").startswith("outbound")
            and m.date_created is not None
            and earliest <= m.date_created <= latest
        ]
        for m in in_window:
            if req.mark in (m.body or ""):
                return LookupAnswer(True, m.sid)
        if any(self.status_base_url not in (m.body or "") for m in in_window):
            return LookupAnswer(None)  # a text without our links: it could be this one
        oldest = min((m.date_created for m in listed if m.date_created), default=None)
        if len(listed) >= LOOKUP_PAGE and oldest is not None and oldest > earliest:
            return LookupAnswer(None)  # the page does not reach back to the window
        return LookupAnswer(False)


def _close(loop: _Loop, clients: dict[int, Client]) -> None:
    client = clients.pop(os.getpid(), None)
    if client is not None and loop.loop is not None and loop.loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(client.http_client.session.close(), loop.loop).result(
                timeout=2
            )
        except Exception:
            log.debug("twilio session not closed cleanly", exc_info=True)
