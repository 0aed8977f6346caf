"""Signed, opaque link tokens (invariant 7).

A token is the message's (or subscriber's) random public token plus a truncated
HMAC-SHA256 over the purpose and that token. It names no id and no address, cannot be
forged without SECRET_KEY, and is short enough for a text message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

SIG_LEN = 12
# Our tokens are under 60 characters; a longer one is not ours and is not worth hashing.
MAX_SIGNED_LEN = 200
PURPOSES = {
    "m": "read_online",
    "c": "contact",
    "p": "preferences",
    "u": "unsubscribe",
    "o": "open",
    "l": "link",  # our redirect to a page a lesson links to (campaigns.content.tracked_links)
    # A check-in question's answer: one link per value, each signed for its value
    # ("a0".."a10"), so the URL names the message and the value only to us: nobody who
    # reads the address (a proxy's log, a browser's history) can tell which answer it is.
    "a": "answer",
}


class BadToken(ValueError):
    pass


def new_public_token() -> str:
    return secrets.token_urlsafe(12)  # 16 characters, 96 random bits


def new_public_tokens(count: int) -> list[str]:
    """`count` tokens like new_public_token's, from one read of the system's randomness (a
    claim makes a thousand; a system call each cost more than the rest of the token)."""
    # 12 bytes are exactly 16 base64 characters, so the whole string splits evenly.
    text = base64.urlsafe_b64encode(secrets.token_bytes(12 * count)).decode()
    return [text[i : i + 16] for i in range(0, len(text), 16)]


@dataclass(frozen=True)
class Signer:
    secret: bytes

    def _sig(self, purpose: str, token: str) -> str:
        mac = hmac.new(self.secret, f"{purpose}:{token}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode()[:SIG_LEN]

    def sign(self, purpose: str, token: str) -> str:
        return f"{token}.{self._sig(purpose, token)}"

    def unsign(self, purpose: str, signed: str) -> str:
        # Every token we sign is URL-safe ASCII; anything else is refused here, before
        # hmac.compare_digest, which raises TypeError on non-ASCII text.
        if not signed.isascii() or len(signed) > MAX_SIGNED_LEN:
            raise BadToken("link is not one of ours")
        token, _, sig = signed.rpartition(".")
        if not token or not hmac.compare_digest(sig, self._sig(purpose, token)):
            raise BadToken("link signature does not match")
        return token

    def sign_answer(self, token: str, value: int, kind: str = "") -> str:
        return self.sign(f"{kind}a{value}", token)

    def unsign_answer(self, signed: str, values: Iterable[int], kind: str = "") -> tuple[str, int]:
        """The message token and the value an answer link stands for: each value's link
        carries its own signature, so the value is found by trying the scale's few.
        `kind`: TEST for a test message's answer links."""
        if not signed.isascii() or len(signed) > MAX_SIGNED_LEN:
            raise BadToken("link is not one of ours")
        token, _, sig = signed.rpartition(".")
        if token:
            for value in values:
                if hmac.compare_digest(sig, self._sig(f"{kind}a{value}", token)):
                    return token, value
        raise BadToken("link signature does not match")


@dataclass(frozen=True)
class Links:
    read_online: str
    contact: str
    preferences: str
    unsubscribe: str
    open: str  # the 1x1 image that records an open
    # Not a link itself: every other page a lesson links to becomes `{redirect}/{link id}`
    # (campaigns.content.tracked_links), so clicks are counted per link.
    redirect: str = ""
    # A check-in question's answer links, one per value of its scale (empty for a step
    # that asks nothing): made only when asked for, as most messages ask nothing.
    answers: tuple[str, ...] = ()

    def own(self) -> tuple[str, ...]:
        """The message's own links: already ours, never sent through the redirect."""
        return (
            self.read_online,
            self.contact,
            self.preferences,
            self.unsubscribe,
            self.open,
            *self.answers,
        )


def links_for(
    base_url: str,
    signer: Signer,
    message_token: str,
    answers: Iterable[int] = (),
    kind: str = "",
) -> Links:
    """The message's links; `answers`: the values of the question its step asks, if any;
    `kind`: TEST for a test message's (sample_links_for)."""
    root = f"{base_url}/{kind}" if kind else base_url

    def url(short: str) -> str:
        return f"{root}/{short}/{signer.sign(kind + short, message_token)}"

    return Links(
        read_online=url("m"),
        contact=url("c"),
        preferences=url("p"),
        unsubscribe=url("u"),
        open=url("o"),
        redirect=url("l"),
        answers=tuple(f"{root}/a/{signer.sign_answer(message_token, v, kind)}" for v in answers),
    )


# ---------------------------------------------------------------- test messages
# A test message (campaigns.delivery.testsend) belongs to no subscriber and is stored
# nowhere, so its links name what to show instead: a Sample. They are signed for purposes
# of their own, TEST and the page's letter ("tm", "tu", "ta3"...), and served under /t/:
# a test link never opens a real message's page, and a real link never opens a preview.
TEST = "t"
_SAMPLE_FIELDS = 6


@dataclass(frozen=True)
class Sample:
    """What a test message's link stands for: a step's copy, never a person. `channels`:
    those the test went to (the pages offer them); `via`: the channel of the message the
    link is in (what a one-click unsubscribe would stop)."""

    campaign: str
    step: str
    locale: str
    channels: tuple[str, ...]
    variant: str | None = None
    via: str = "email"

    def token(self) -> str:
        raw = "|".join(
            (self.campaign, self.step, self.locale, ",".join(self.channels), self.variant or "")
            + (self.via,)
        )
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Sample:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            raise BadToken("not a test link") from None
        parts = raw.split("|")
        if len(parts) != _SAMPLE_FIELDS or not all(parts[:4]):
            raise BadToken("not a test link")
        campaign, step, locale, channels, variant, via = parts
        return cls(campaign, step, locale, tuple(channels.split(",")), variant or None, via)


def sample_links_for(
    base_url: str, signer: Signer, sample: Sample, answers: Iterable[int] = ()
) -> Links:
    """A test message's links: the same pages as a real message's, as previews."""
    return links_for(base_url, signer, sample.token(), answers, TEST)
