"""SendGrid email through the official SDK (v3 `mail/send`), batched by personalizations.

Recipients that share one rendering (`OutgoingEmail.shared`, see campaigns/batching.py)
go out in one request of up to 1000 personalizations: the body once, each recipient's
name and links as substitutions. Everyone else gets a request of their own.

Each personalization carries our opaque reference in `custom_args` and nothing else
about the person (invariant 8): no name, condition, step topic or campaign, and no
categories. SendGrid's own click/open tracking is off unless SENDGRID_TRACKING, since
it rewrites our signed links.

What can go wrong, and what it means (classified here, at the edge, in `classify`):

    Exception
     ├── python_http_client.exceptions.HTTPError        SendGrid answered
     │    ├── BadRequestsError (400) ............ PERMANENT; when the error's `field` is
     │    │                                       `personalizations.N...` only message N
     │    │                                       fails ("invalid address" when it is about
     │    │                                       the email) and the rest are sent again
     │    ├── UnauthorizedError (401), ForbiddenError (403),
     │    │   NotFoundError (404) ............... CONFIG: key, scope or host is wrong for
     │    │                                       every message; the channel is paused
     │    ├── TooManyRequestsError (429) ........ TRANSIENT, retry after X-RateLimit-Reset
     │    ├── 500, 503 .......................... TRANSIENT: SendGrid documents these as
     │    │                                       not accepted (see below)
     │    ├── 502, 504 .......................... UNKNOWN: not SendGrid's documented
     │    │                                       answers; a gateway in front of it may have
     │    │                                       forwarded the request before failing, so
     │    │                                       the event webhook settles it (a
     │    │                                       `processed` event with our drip_ref)
     │    ├── other 5xx ......................... TRANSIENT
     │    └── any other 4xx ..................... PERMANENT
     ├── urllib.error.URLError ................... TRANSIENT: urllib raises it while
     │                                             connecting or sending, so SendGrid never
     │                                             got a whole request (refused, reset, DNS)
     ├── TimeoutError / ConnectionError /
     │   http.client.HTTPException ............... UNKNOWN: raised while waiting for the
     │                                             answer, after the request went out;
     │                                             never resent blindly (invariant 2)
     └── anything else ........................... UNKNOWN, for the same reason

What SendGrid's answers mean, from its documentation:
- v3 Mail Send: only "202 ACCEPTED: Your message is both valid, and queued to be
  delivered"; "5xx responses indicate an error made by SendGrid: The request you made was
  valid, but an error occurred when SendGrid attempted to process it. 500 SERVER ERROR: An
  error occurred on a SendGrid server. 503 SERVICE NOT AVAILABLE: The SendGrid v3 Web API
  is not available." (https://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html,
  the v3 API overview's response codes)
- v3 API errors: the API "returns an error when your request is malformed or the server
  fails to process it"; 500 "Internal server error"
  (https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors)
So a 500 or 503 is a mail SendGrid did not queue: sending it again later is a retry, not
a second copy. Whatever is accepted shows up on the Event Webhook as `processed` with our
`drip_ref` custom arg, which settles a message left unconfirmed by any other answer.
"""

from __future__ import annotations

import http.client
import logging
import re
import time
import urllib.error
from dataclasses import dataclass, field

from python_http_client import exceptions as sg_exc
from sendgrid import SendGridAPIClient

from campaigns.delivery.providers import Outcome, OutgoingEmail, SendResult
from workers import metrics
from workers.providers import scrub
from workers.providers.sendgrid_webhook import PROVIDER, REF_ARG

log = logging.getLogger(__name__)

# Answers after which the request may have been carried out: never resent blindly. Not
# 500 or 503: SendGrid documents those as the request not processed (module docstring).
MAYBE_DONE = {502, 504}

MAX_PERSONALIZATIONS = 1000  # SendGrid's limit per mail/send request
# Rounds of "drop the personalizations SendGrid named, send the rest again" per request;
# each round removes at least one, so this only bounds a pathological answer.
MAX_ROUNDS = 5
_PERSONALIZATION = re.compile(r"^personalizations\.(\d+)(?:\.(.*))?$")


@dataclass
class Verdict:
    outcome: Outcome
    error: str | None = None
    retry_after: float | None = None
    # 400 naming personalizations: index -> suppression reason ("" for none).
    rejected: dict[int, str] = field(default_factory=dict)


def classify(exc: BaseException) -> Verdict:
    """The one place that decides what a failed `mail/send` call means."""
    if isinstance(exc, sg_exc.HTTPError):
        status = int(exc.status_code)
        text = _error_text(exc)
        if status == 400:
            return Verdict(Outcome.PERMANENT, text, rejected=_rejected(exc))
        if status in (401, 403, 404):
            return Verdict(Outcome.CONFIG, f"HTTP {status}: {text}")
        if status == 429:
            return Verdict(
                Outcome.TRANSIENT, f"HTTP 429: {text}", retry_after=_retry_after(exc.headers)
            )
        if status in MAYBE_DONE:
            # A gateway error or a crash mid-request: the mail may have been accepted.
            return Verdict(Outcome.UNKNOWN, f"HTTP {status}: {text}")
        if status >= 500:
            return Verdict(Outcome.TRANSIENT, f"HTTP {status}: {text}")
        return Verdict(Outcome.PERMANENT, f"HTTP {status}: {text}")
    if isinstance(exc, urllib.error.URLError):
        return Verdict(Outcome.TRANSIENT, f"not sent: {exc.reason!r}")
    if isinstance(exc, (TimeoutError, ConnectionError, http.client.HTTPException)):
        return Verdict(Outcome.UNKNOWN, f"no answer after sending: {exc!r}")
    return Verdict(Outcome.UNKNOWN, f"unexpected error: {exc!r}")


def _errors(exc: sg_exc.HTTPError) -> list[dict]:
    try:
        errors = exc.to_dict.get("errors")
    except (ValueError, AttributeError):
        return []
    return [e for e in errors or [] if isinstance(e, dict)]


def _error_text(exc: sg_exc.HTTPError) -> str:
    errors = _errors(exc)
    if errors:
        return scrub("; ".join(f"{e.get('field') or '-'}: {e.get('message')}" for e in errors))[
            :500
        ]
    return scrub((exc.body or b"").decode("utf-8", "replace"))[:500] or str(exc.status_code)


def _rejected(exc: sg_exc.HTTPError) -> dict[int, str]:
    """Personalizations a 400 names, or {} when any error is about the whole request."""
    rejected: dict[int, str] = {}
    for error in _errors(exc):
        m = _PERSONALIZATION.match(error.get("field") or "")
        if not m:
            return {}
        about_address = (m[2] or "").startswith(("to", "cc", "bcc")) or "email" in (m[2] or "")
        reason = "invalid address" if about_address else ""
        rejected[int(m[1])] = rejected.get(int(m[1])) or reason
    return rejected


def _retry_after(headers) -> float | None:
    reset = headers.get("X-RateLimit-Reset") if headers else None
    try:
        if reset is not None:
            return max(0.0, float(reset) - time.time())  # epoch seconds -> seconds from now
        if headers and headers.get("Retry-After") is not None:
            return max(0.0, float(headers.get("Retry-After")))
    except ValueError:
        pass
    return None


class SendGridEmail:
    name = PROVIDER
    max_batch = MAX_PERSONALIZATIONS

    def __init__(
        self,
        api_key: str,
        from_email: str,
        from_name: str,
        host: str = "https://api.sendgrid.com",
        sandbox: bool = False,
        tracking: bool = False,
        timeout: float = 10.0,
    ):
        self.client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        # No constructor argument; without it urllib waits forever on a stuck socket.
        self.client.client.timeout = timeout
        self.from_email = from_email
        self.from_name = from_name
        self.sandbox = sandbox
        self.tracking = tracking

    @classmethod
    def from_settings(cls, settings) -> SendGridEmail:
        return cls(
            api_key=settings.sendgrid_api_key.get_secret_value(),
            from_email=settings.email_from,
            from_name=settings.brand_name,
            host=settings.sendgrid_api_host,
            sandbox=settings.sendgrid_sandbox,
            tracking=settings.sendgrid_tracking,
            timeout=settings.sendgrid_timeout,
        )

    def send_emails(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        for group in self._requests(emails):
            for result in self._send(group):
                results[result.message_id] = result
        return [results[e.message_id] for e in emails]

    def _requests(self, emails: list[OutgoingEmail]) -> list[list[OutgoingEmail]]:
        """Items that may share one request (same shared body), at most 1000 each, in
        the order they came; an item without a shared body goes alone."""
        groups: dict[object, list[OutgoingEmail]] = {}
        for item in emails:
            key = item.shared.key if item.shared is not None else ("alone", item.message_id)
            groups.setdefault(key, []).append(item)
        return [
            items[i : i + MAX_PERSONALIZATIONS]
            for items in groups.values()
            for i in range(0, len(items), MAX_PERSONALIZATIONS)
        ]

    def _send(self, items: list[OutgoingEmail]) -> list[SendResult]:
        done: list[SendResult] = []
        pending = list(items)
        for _ in range(MAX_ROUNDS):
            started = time.perf_counter()
            try:
                response = self.client.send(self._body(pending))
            except Exception as exc:  # classify decides; unknown types are UNKNOWN
                verdict = classify(exc)
                status = getattr(exc, "status_code", None)
                metrics.record_provider_call(
                    "email",
                    PROVIDER,
                    verdict.outcome.value,
                    int(status) if status is not None else None,
                    time.perf_counter() - started,
                )
            else:
                metrics.record_provider_call(
                    "email",
                    PROVIDER,
                    "accepted",
                    response.status_code,
                    time.perf_counter() - started,
                )
                provider_id = response.headers.get("X-Message-Id") if response.headers else None
                return done + [
                    SendResult(i.message_id, Outcome.ACCEPTED, provider_id) for i in pending
                ]
            named = verdict.rejected
            if not named or any(n >= len(pending) for n in named):
                log.warning(
                    "sendgrid: %d message(s) %s: %s",
                    len(pending),
                    verdict.outcome.value,
                    verdict.error,
                )
                return done + [
                    SendResult(
                        i.message_id,
                        verdict.outcome,
                        error=verdict.error,
                        retry_after=verdict.retry_after,
                    )
                    for i in pending
                ]
            # A 400 rejects the whole request, so nothing went out: safe to send the rest again.
            for n, reason in named.items():
                done.append(
                    SendResult(
                        pending[n].message_id,
                        Outcome.PERMANENT,
                        error=verdict.error,
                        suppress_reason=reason or None,
                    )
                )
            pending = [item for n, item in enumerate(pending) if n not in named]
            if not pending:
                return done
        return done + [
            SendResult(
                i.message_id,
                Outcome.TRANSIENT,
                error=f"batch still rejected after {MAX_ROUNDS} rounds",
            )
            for i in pending
        ]

    def _body(self, items: list[OutgoingEmail]) -> dict:
        first = items[0]
        content = first.shared.content if first.shared is not None else first.content
        return {
            "from": {"email": self.from_email, "name": self.from_name},
            "personalizations": [self._personalization(i) for i in items],
            # SendGrid requires text/plain before text/html.
            "content": [
                {"type": "text/plain", "value": content.text},
                {"type": "text/html", "value": content.html},
            ],
            "mail_settings": {"sandbox_mode": {"enable": self.sandbox}},
            "tracking_settings": {
                "click_tracking": {"enable": self.tracking, "enable_text": self.tracking},
                "open_tracking": {"enable": self.tracking},
                # Our own footer carries the unsubscribe link; SendGrid's would duplicate it.
                "subscription_tracking": {"enable": False},
            },
        }

    def _personalization(self, item: OutgoingEmail) -> dict:
        p = {
            "to": [{"email": item.to}],
            "subject": item.content.subject,  # the real one, never the placeholder version
            "headers": {
                # One-click HTTPS only (RFC 8058): a mailto would go to an inbox
                # nothing reads, and an opt-out sent there would be lost.
                "List-Unsubscribe": f"<{item.unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",  # RFC 8058
            },
            # Opaque; nothing else (invariant 8). The webhook reads it back from each event.
            "custom_args": {REF_ARG: item.reference},
        }
        if item.shared is not None and item.substitutions:
            p["substitutions"] = dict(item.substitutions)
        return p
