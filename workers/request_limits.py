"""How often one client, address or phone may ask for something from the public edge:
sign-ups per client and per address, JOIN texts per number, events API calls per key and
failed API logins per client. Beyond it the request gets a 429 with Retry-After and
changes nothing.

Built on the `limits` library's moving-window limiter: with REDIS_URL the counts are
shared by every web process on every machine (keys under REDIS_KEY_PREFIX); on the
embedded default they are per process. If Redis cannot be reached the request is let
through and the failure logged once per outage (and its end once): a sign-up must not
fail because a counter is down.
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


class RequestLimits:
    def __init__(self, rules: dict[str, str], storage: Storage | None = None):
        # rules: a name ("signup_client") and its limits, e.g. "5/minute;20/hour"
        self.rules: dict[str, list[RateLimitItem]] = {k: parse_many(v) for k, v in rules.items()}
        self.limiter = MovingWindowRateLimiter(storage or MemoryStorage())
        self.outage = Outage("request limit store", log)

    def hit(self, rule: str, key: str) -> float | None:
        """Count one request; None when allowed, else the seconds until it would be."""
        return self._ask(rule, key, self.limiter.hit)

    def blocked(self, rule: str, key: str) -> float | None:
        """Like `hit`, without counting: would one more be refused? (Failed API logins
        are counted only when they fail, but a client over the limit is refused first.)"""
        return self._ask(rule, key, self.limiter.test)

    def _ask(self, rule: str, key: str, ask) -> float | None:
        # Keys are hashed: an address or a phone number never sits in Redis in clear.
        ident = hashlib.sha256(key.strip().lower().encode()).hexdigest()[:32]
        try:
            for item in self.rules[rule]:
                if not ask(item, rule, ident):
                    reset = self.limiter.get_window_stats(item, rule, ident).reset_time
                    return max(1.0, reset - time.time())
        except Exception as exc:  # a down counter must not take the sign-up down with it
            self.outage.failed(f"checking {rule} (requests let through)", exc)
            return None
        self.outage.ok()
        return None


def build_request_limits(settings) -> RequestLimits:
    rules = {
        "signup_client": settings.signup_limit_per_client,
        "signup_address": settings.signup_limit_per_address,
        "join_number": settings.join_limit_per_number,
        "api_key": settings.api_limit_per_key,
        "api_auth_client": settings.api_auth_failures_per_client,
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
