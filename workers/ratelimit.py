"""Global send rates: one token bucket per provider and sender.

Celery's `rate_limit` counts per worker process, so ten workers send ten times the rate
a long code or a SendGrid plan allows. These buckets hold a rate (tokens per second)
and a burst (the bucket's size); `acquire(n)` returns once n tokens are ours.

Both buckets reserve rather than poll: a caller takes its tokens at once, letting the
count go below zero, and sleeps for as long as the debt takes to refill. Callers are
served in the order they arrived, nobody spins on the store, and over any interval T
at most `burst + rate * T` tokens are handed out. A request larger than the burst is
taken in burst-sized pieces, so one big batch cannot reserve far ahead of the rest.

- `RedisBucket`: shared by every worker process on every machine. The state (tokens and
  the time they were counted) is one Redis hash, and one Lua script refills, takes and
  writes it atomically using the Redis server's TIME, so worker clocks do not matter.
  If Redis cannot be reached the bucket falls back to a per-process one for a while and
  says so once, rather than leave leased messages waiting on a dead store. That fallback
  is a conservative share of the global rate, so the processes together stay within it:
  rate / max(RATE_LIMIT_PROCESSES, the processes this one last saw taking tokens from the
  same bucket). Each call registers its process in a sorted set beside the bucket, so
  every process knows how many shared it in the last minute before Redis went away.
- `LocalBucket`: in process, thread-safe. The embedded default (no REDIS_URL) runs
  several worker processes, each with its own bucket, so there the limit holds per
  process: N processes may together send N times the configured rate.

`build_limiters` gives the local outbox no limit: it is not a remote API with a rate,
and throttling files on disk would only slow demos and tests.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from campaigns.delivery.providers import NoLimit, RateLimiter
from workers.outages import Outage

log = logging.getLogger(__name__)

# KEYS[1] bucket hash, KEYS[2] the processes using it (sorted by last use); ARGV rate
# (tokens/s), burst, n, this process's name. Returns {microseconds to wait, processes
# seen in the last PEER_WINDOW seconds}.
_RESERVE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
tokens = tokens - n
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'ts', string.format('%.6f', ts))
-- Once full again the bucket is the same as no bucket: let the key go.
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]) * 2000)
local peers = redis.call('ZCARD', KEYS[2])
if tokens >= 0 then
  return {0, peers}
end
return {math.ceil(-tokens / rate * 1000000), peers}
"""


FALLBACK_SECONDS = 30.0
PEER_WINDOW = 60  # seconds: a process that took tokens this recently counts as a sender


def _pieces(n: int, burst: int):
    while n > 0:
        piece = min(n, burst)
        yield piece
        n -= piece


class LocalBucket:
    """A token bucket for the threads of one process."""

    def __init__(self, rate: float, burst: int):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = float(rate), int(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _reserve(self, n: int) -> float:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate) - n
            self._stamp = now
            return max(0.0, -self._tokens / self.rate)

    def acquire(self, n: int = 1) -> None:
        for piece in _pieces(n, self.burst):
            wait = self._reserve(piece)
            if wait > 0:
                time.sleep(wait)


class RedisBucket:
    """A token bucket shared through Redis by every process that names the same key."""

    def __init__(self, client: redis.Redis, key: str, rate: float, burst: int, processes: int = 1):
        if rate <= 0 or burst < 1 or processes < 1:
            raise ValueError("rate must be > 0, burst >= 1 and processes >= 1")
        self.client, self.key = client, key
        self.rate, self.burst = float(rate), int(burst)
        self.processes = processes  # the configured floor for the fallback's share
        self.peers = 0  # processes seen sharing the bucket, at the last call that worked
        self._script = client.register_script(_RESERVE)
        self._name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._fallback: LocalBucket | None = None
        self._down_until = 0.0
        self._outage = Outage(f"rate limit store ({key})", log)

    @property
    def share(self) -> int:
        """How many processes the rate is divided among while Redis is away."""
        return max(self.processes, self.peers)

    def _local(self) -> LocalBucket:
        if self._fallback is None:
            share = self.share
            self._fallback = LocalBucket(self.rate / share, max(1, self.burst // share))
            log.warning(
                "%s: limiting this process to %.3g/s (1/%d of %.3g/s) while Redis is away",
                self.key,
                self.rate / share,
                share,
                self.rate,
            )
        return self._fallback

    def acquire(self, n: int = 1) -> None:
        for piece in _pieces(n, self.burst):
            if time.monotonic() < self._down_until:
                self._local().acquire(piece)
                continue
            try:
                wait_us, peers = self._script(
                    keys=[self.key, self.key + ":senders"],
                    args=[self.rate, self.burst, piece, self._name, PEER_WINDOW],
                )
            except redis.RedisError as exc:
                # Don't pay the connect timeout on every piece while Redis is away.
                self._down_until = time.monotonic() + FALLBACK_SECONDS
                self._outage.failed("taking send tokens", exc)
                self._local().acquire(piece)
                continue
            self._outage.ok()
            self._fallback = None  # the next outage divides by the count seen by then
            self.peers = int(peers)
            if int(wait_us) > 0:
                time.sleep(int(wait_us) / 1e6)


def _sender(settings, channel: str) -> str:
    if channel == "email":
        return settings.email_from
    return settings.twilio_messaging_service_sid or settings.twilio_from_number or "-"


def build_limiters(settings) -> dict[str, RateLimiter]:
    """{"email": ..., "sms": ...}: shared through Redis when REDIS_URL is set, else per
    process (see the module docstring); no limit for the local outbox."""
    client = None
    if settings.redis_url:
        # Short timeouts and few retries: a send waits on this while its messages are leased.
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        )
    limiters: dict[str, RateLimiter] = {}
    for channel, provider, rate, burst in (
        (
            "email",
            settings.email_provider,
            settings.email_rate_per_second,
            settings.email_rate_burst,
        ),
        ("sms", settings.sms_provider, settings.sms_rate_per_second, settings.sms_rate_burst),
    ):
        if provider == "outbox":
            limiters[channel] = NoLimit()
        elif client is not None:
            key = f"{settings.redis_key_prefix}ratelimit:{provider}:{_sender(settings, channel)}"
            limiters[channel] = RedisBucket(
                client, key, rate, burst, processes=settings.rate_limit_processes
            )
        else:
            limiters[channel] = LocalBucket(rate, burst)
    return limiters
