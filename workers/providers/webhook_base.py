"""What every provider's webhook module shares: the ways a request is refused, and
reading a header from any mapping.

A webhook module (`sendgrid_webhook`, `twilio_webhook`) takes plain bytes and mappings and
returns the domain's neutral events; it raises one of these, and web/webhooks.py maps
each kind onto one HTTP status:

    WebhookError
     ├── NotConfigured ...... 503: our secret is missing or unusable. Never "accept
     │                        unsigned": the provider retries, and ops sees the error.
     ├── Rejected ........... 403: missing or bad signature, a stale or future timestamp.
     │                        Nothing in the request is acted on.
     └── BadPayload ......... 400: correctly signed, but not the shape the provider
                              documents (not JSON, not a batch).

An event we do not map is not an error: it is logged and left out, and the provider
gets a 200 so it stops retrying.
"""

from __future__ import annotations

from collections.abc import Mapping


class WebhookError(Exception):
    """A webhook request we will not act on; str() is a short reason, safe to log."""


class NotConfigured(WebhookError):
    pass


class Rejected(WebhookError):
    pass


class BadPayload(WebhookError):
    pass


def header(headers: Mapping[str, str], name: str) -> str | None:
    """`name` from `headers`, ignoring case as HTTP does, for a plain dict as well as a
    framework's case-insensitive headers object."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value
