"""How often one client, address or phone may ask for something from the public edge:
sign-ups per client and per address, JOIN texts per number, events API calls per key and
failed API logins per client. Beyond it the request gets a 429 with Retry-After and
changes nothing.

Built on the `limits` library's moving-window limiter: with REDIS_URL the counts are
shared by every web process on every machine (keys under REDIS_KEY_PREFIX); on the
embedded default they are per process. If Redis cannot be reached the counts go on in
this process's memory for a while (FALLBACK_SECONDS, so a dead store costs no connect
timeout on every request) and the failure is logged once per outage (and its end once):
a sign-up or a staff sign-in must not fail because a counter is down, and a password
guesser must not get unlimited tries because it is.
"""

from __future__ import annotations

import hashlib
import logging
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from workers.outages import Outage

log = logging.getLogger(__name__)


FALLBACK_SECONDS = 30.0


class RequestLimits:
    def __init__(self, rules: dict[str, str], storage: Storage | None = None):
        # rules: a name ("signup_client") and its limits, e.g. "5/minute;20/hour"
        self.rules: dict[str, list[RateLimitItem]] = {k: parse_many(v) for k, v in rules.items()}
        self.limiter = MovingWindowRateLimiter(storage or MemoryStorage())
        self.fallback = MovingWindowRateLimiter(MemoryStorage())
        self.outage = Outage("request limit store", log)
        self._down_until = 0.0

    def hit(self, rule: str, key: str) -> float | None:
        """Count one request; None when allowed, else the seconds until it would be."""
        return self._ask(rule, key, "hit")

    def blocked(self, rule: str, key: str) -> float | None:
        """Like `hit`, without counting: would one more be refused? (Failed API logins
        are counted only when they fail, but a client over the limit is refused first.)"""
        return self._ask(rule, key, "test")

    def clear(self, rule: str, key: str) -> None:
        """Forget the counts (a staff member who signed in is not one typo from a lock)."""
        ident = _ident(key)
        for limiter in (self.fallback, self._primary()):
            if limiter is None:
                continue
            try:
                for item in self.rules[rule]:
                    limiter.clear(item, rule, ident)
            except Exception as exc:  # reported, never raised
                self._failed(rule, exc)

    def _primary(self) -> MovingWindowRateLimiter | None:
        return None if time.monotonic() < self._down_until else self.limiter

    def _failed(self, rule: str, exc: Exception) -> None:
        self._down_until = time.monotonic() + FALLBACK_SECONDS
        self.outage.failed(f"checking {rule} (counted in this process meanwhile)", exc)

    def _ask(self, rule: str, key: str, ask_name: str) -> float | None:
        # Keys are hashed: an address or a phone number never sits in Redis in clear.
        ident = _ident(key)
        limiter = self._primary()
        if limiter is not None:
            try:
                wait = _check(limiter, ask_name, self.rules[rule], rule, ident)
            except Exception as exc:  # a down counter must not take the request down with it
                self._failed(rule, exc)
            else:
                self.outage.ok()
                return wait
        return _check(self.fallback, ask_name, self.rules[rule], rule, ident)


def _ident(key: str) -> str:
    return hashlib.sha256(key.strip().lower().encode()).hexdigest()[:32]


def _check(
    limiter: MovingWindowRateLimiter, ask_name: str, items: list[RateLimitItem], *keys: str
) -> float | None:
    ask = getattr(limiter, ask_name)
    for item in items:
        if not ask(item, *keys):
            reset = limiter.get_window_stats(item, *keys).reset_time
            return max(1.0, reset - time.time())
    return None


def build_request_limits(settings) -> RequestLimits:
    rules = {
        "signup_client": settings.signup_limit_per_client,
        "signup_address": settings.signup_limit_per_address,
        "join_number": settings.join_limit_per_number,
        "api_key": settings.api_limit_per_key,
        "api_auth_client": settings.api_auth_failures_per_client,
        "login_name": settings.login_failures_per_name,
        "login_client": settings.login_failures_per_client,
    }
    storage = None
    if settings.redis_url:
        storage = RedisStorage(
            settings.redis_url,
            key_prefix=f"{settings.redis_key_prefix}limits",
            socket_timeout=2,
            socket_connect_timeout=2,
        )
    return RequestLimits(rules, storage)
