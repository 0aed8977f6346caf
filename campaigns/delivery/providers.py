"""The provider interface: what a send hands a provider and what comes back.

One small interface per channel; each provider module (workers/providers/) classifies its
own errors into an Outcome at the edge, and campaigns.delivery.outcomes decides what each outcome
does to a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from campaigns.content.rendering import RenderedEmail
from campaigns.delivery.batching import SharedEmail


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # the provider took it
    TRANSIENT = "transient"  # 429, 5xx, connection refused: safe to try again later
    PERMANENT = "permanent"  # this recipient or message will never work
    CONFIG = "config"  # our credentials or sender are wrong: stop the channel, tell ops
    UNKNOWN = "unknown"  # may or may not have been sent (timeout after the request left)


@dataclass
class SendResult:
    message_id: int
    outcome: Outcome
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    suppress_reason: str | None = None  # add the address to suppressions (21610, 21211, ...)

    @property
    def try_again_later(self) -> bool:
        """For one-off mails outside the outbox (notices, confirmations): a transient error
        or a paused provider hands the mail back for the next pass; an unknown outcome (it
        may have gone out) is not repeated."""
        return self.outcome in (Outcome.TRANSIENT, Outcome.CONFIG)


@dataclass
class OutgoingEmail:
    message_id: int
    to: str
    content: RenderedEmail  # this recipient's own rendering
    unsubscribe_url: str
    # Opaque reference for webhooks; nothing about the person's health (invariant 8).
    reference: str
    # When set, `shared.content` filled in with `substitutions` is exactly `content`, so
    # a batching provider may send everyone with the same `shared.key` in one request.
    shared: SharedEmail | None = None
    substitutions: dict[str, str] = field(default_factory=dict)
    # Not an outbox message (a marketer's test send, a notice to the care team): no row,
    # so providers must not take message_id as a key.
    adhoc: bool = False


@dataclass
class OutgoingSms:
    message_id: int
    to: str
    body: str
    reference: str
    adhoc: bool = False


class EmailProvider(Protocol):
    name: str
    max_batch: int

    def send_emails(self, emails: list[OutgoingEmail]) -> list[SendResult]: ...


class SmsProvider(Protocol):
    name: str
    max_batch: int

    def send_sms(self, texts: list[OutgoingSms]) -> list[SendResult]: ...


class RateLimiter(Protocol):
    def acquire(self, n: int = 1) -> None: ...


class NoLimit:
    def acquire(self, n: int = 1) -> None:
        return None
