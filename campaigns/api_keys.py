"""Keys for the events API (`POST /api/v1/events`): made, listed, checked and revoked.

A key is `drip_` and 43 characters of `secrets.token_urlsafe(32)`: 256 random bits, shown
once when it is made. The database keeps only its SHA-256 (hex), a short prefix to tell
keys apart in a listing, and when it was made, last used and revoked.

Why a plain SHA-256 and not a password hash (bcrypt, argon2) or an HMAC: a slow hash
protects guessable secrets that people choose; a 256-bit random key cannot be guessed
whatever the hash costs, so a slow hash would only make every request slower. A fast
hash also lets the key be found by an indexed equality look-up on its hash, so checking
a key compares no secret in Python (nothing to time). An HMAC under SECRET_KEY would add
nothing a 256-bit key lacks and would tie every key to SECRET_KEY: rotating that secret
(which signs links) would silently revoke every integration. GitHub and PyPI keep their
tokens the same way.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.models import ApiKey, is_row_id
from campaigns.text import UncleanText, clean_text

KEY_PREFIX = "drip_"
PREFIX_SHOWN = len(KEY_PREFIX) + 6  # "drip_" and 6 characters: enough to tell keys apart
MAX_KEY_LEN = 100  # ours are 48; a longer header value is not worth hashing
# last_used_at is written at most this often per key: a write per request would make a
# busy integration's every event cost two writes.
TOUCH_EVERY = timedelta(minutes=1)


class ApiKeyError(ValueError):
    """A key command that cannot be done; the message says why."""


@dataclass(frozen=True)
class NewKey:
    id: int
    name: str
    prefix: str
    key: str  # shown once; never stored


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, clock: Clock, name: str) -> NewKey:
    name = (name or "").strip()
    if not name:
        raise ApiKeyError("name the key (who or what will use it)")
    try:
        clean_text(name, "name", max_len=80)
    except UncleanText as exc:
        raise ApiKeyError(str(exc)) from None
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        prefix=key[:PREFIX_SHOWN],
        key_hash=hash_key(key),
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return NewKey(row.id, row.name, row.prefix, key)


def list_keys(session: Session) -> list[KeyInfo]:
    return [
        KeyInfo(k.id, k.name, k.prefix, k.created_at, k.revoked_at, k.last_used_at)
        for k in session.scalars(select(ApiKey).order_by(ApiKey.id))
    ]


def revoke_key(session: Session, clock: Clock, key_id: int | str) -> tuple[KeyInfo, bool]:
    """Revoke a key at once; (the key, False) when it was already revoked."""
    try:
        kid = int(key_id)
    except (TypeError, ValueError):
        raise ApiKeyError(f"a key id is a whole number, not {key_id!r}") from None
    row = session.get(ApiKey, kid) if is_row_id(kid) else None
    if row is None:
        raise ApiKeyError(f"no API key {kid}")
    changed = row.revoked_at is None
    if changed:
        row.revoked_at = clock.now()
        session.flush()
    return KeyInfo(
        row.id, row.name, row.prefix, row.created_at, row.revoked_at, row.last_used_at
    ), (changed)


def authenticate(session: Session, clock: Clock, key: str) -> KeyInfo | None:
    """The live key `key` is, or None (unknown, malformed or revoked: the caller answers
    all three alike). Records when the key was last used."""
    if not key or len(key) > MAX_KEY_LEN or not key.isascii() or not key.startswith(KEY_PREFIX):
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        return None
    now = clock.now()
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        row.last_used_at = now
        session.flush()
    return KeyInfo(row.id, row.name, row.prefix, row.created_at, row.revoked_at, row.last_used_at)
