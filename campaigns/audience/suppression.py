"""Suppression: per address and channel, outliving the subscriber row, so a bounced
address stays suppressed even if it signs up again. Some opt-outs are the person's to
take back; bounces, complaints and invalid numbers are not.

When a person is erased (campaigns.people.erasure), their suppressions stay, but the
address in each becomes a keyed hash of it (`hashed`): the database then no longer holds
the address, yet the same address typed, imported or texting in again hashes to the same
row. Every check here asks for both forms, so the rest of the engine needs to know
nothing about erasure. The key comes from SECRET_KEY (`address_key`), laid on the session
factory by the composition root (workers/runtime.py) as `session.info[KEY_INFO]`; without
SECRET_KEY a dictionary of every phone number would undo the hash in minutes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.db import id_in
from campaigns.models import Suppression
from campaigns.states import Channel


class Cause(StrEnum):
    """Why an address is suppressed (suppressions.reason). Providers may add a detail
    after the cause ("unsubscribed at carrier (21610)"); other causes a provider reports
    (an invalid number) are kept in its own words."""

    UNSUBSCRIBED = "unsubscribed"  # the person: a link, the preference page, their carrier
    STOP = "stop"  # the person: a STOP keyword
    BOUNCE = "bounce"
    DROPPED = "dropped"
    COMPLAINT = "complaint"


# The causes that are the person's own choice, and so theirs to take back.
WAIVABLE = (Cause.UNSUBSCRIBED, Cause.STOP)


HASH_PREFIX = "hmac:"
KEY_INFO = "address_key"  # where a session carries the hashing key (Session.info)


class NoAddressKey(RuntimeError):
    """This session's factory was not given the address key (workers/runtime.py does)."""


def address_key(secret: bytes) -> bytes:
    """The hashing key: derived from the app's secret for this one use, so the link
    signatures made with the secret and these hashes never share a key."""
    return hmac.new(secret, b"drip suppression address hash v1", hashlib.sha256).digest()


def stored_form(channel: str, address: str) -> str:
    """An address as suppressions keep it: e-mail lower-cased, a phone as given (E.164)."""
    return address.lower() if channel == Channel.EMAIL else address


def hashed(session: Session, channel: str, address: str | None) -> str | None:
    """The keyed hash an erased person's suppression keeps of `address`; None without an
    address or when the session carries no key (a bare test factory: no hashed rows
    can have been written through it either, `hash_required` refuses that)."""
    key = session.info.get(KEY_INFO)
    if not address or key is None:
        return None
    digest = hmac.new(key, f"{channel}:{stored_form(channel, address)}".encode(), hashlib.sha256)
    return HASH_PREFIX + digest.hexdigest()


def hash_required(session: Session, channel: str, address: str) -> str:
    value = hashed(session, channel, address)
    if value is None:
        raise NoAddressKey("no address key on this session: build it with workers.runtime")
    return value


def is_hashed(stored: str) -> bool:
    return stored.startswith(HASH_PREFIX)


def _forms(session: Session, channel: str, address: str) -> list[str]:
    forms = [stored_form(channel, address)]
    digest = hashed(session, channel, address)
    return [*forms, digest] if digest else forms


def suppression_for(session: Session, channel: str, address: str | None) -> Suppression | None:
    """The suppression of `address` on `channel`, kept plainly or (after an erasure) hashed."""
    if not address:
        return None
    # The plain row first: an erasure turns plain rows into hashed ones, so both exist
    # only when the address was suppressed again since; its newest cause is the plain one.
    rows = {
        row.address: row
        for row in session.scalars(
            select(Suppression).where(
                Suppression.channel == channel,
                Suppression.address.in_(_forms(session, channel, address)),
            )
        )
    }
    for form in _forms(session, channel, address):
        if form in rows:
            return rows[form]
    return None


def suppressed_addresses(
    session: Session, emails: Iterable[str], phones: Iterable[str]
) -> dict[tuple[str, str], str]:
    """(channel, stored form) → cause for each of these addresses that is suppressed,
    plainly or hashed: one query for a whole batch (the send path, imports)."""
    wanted: dict[tuple[str, str], tuple[str, str]] = {}  # (channel, as kept) -> (channel, form)
    for channel, addresses in ((Channel.EMAIL, emails), (Channel.SMS, phones)):
        for address in addresses:
            if address:
                for form in _forms(session, channel, address):
                    wanted[(channel, form)] = (channel, stored_form(channel, address))
    if not wanted:
        return {}
    by_channel = {
        channel: [form for c, form in wanted if c == channel]
        for channel in (Channel.EMAIL, Channel.SMS)
    }
    rows = session.execute(
        select(Suppression.channel, Suppression.address, Suppression.reason).where(
            (
                (Suppression.channel == Channel.EMAIL)
                & id_in(session, Suppression.address, by_channel[Channel.EMAIL])
            )
            | (
                (Suppression.channel == Channel.SMS)
                & id_in(session, Suppression.address, by_channel[Channel.SMS])
            )
        )
    )
    found: dict[tuple[str, str], str] = {}
    for channel, stored, reason in rows:
        plain = wanted[(channel, stored)]
        if not is_hashed(stored) or plain not in found:  # a plain row's cause wins
            found[plain] = reason
    return found


def suppress(
    session: Session, clock: Clock, channel: str, address: str, reason: str, source: str
) -> Suppression:
    """Idempotent: the first reason recorded for an address is kept."""
    existing = suppression_for(session, channel, address)
    if existing:
        return existing
    row = Suppression(
        channel=channel,
        address=stored_form(channel, address),
        reason=reason,
        source=source,
        created_at=clock.now(),
    )
    # A savepoint, so a concurrent insert of the same address loses quietly.
    try:
        with session.begin_nested():
            session.add(row)
    except Exception:
        existing = suppression_for(session, channel, address)
        if existing is None:
            raise
        return existing
    return row


def waivable(reason: str) -> bool:
    """Opt-outs the person may take back (unsubscribe, STOP, the carrier's 21610);
    bounces, complaints and invalid numbers are not theirs to lift."""
    return reason.startswith(WAIVABLE)


def lift_unsubscribe(session: Session, channel: str, address: str) -> bool:
    """Remove an opt-out suppression, kept plainly or hashed; False (rows kept) when a
    suppression of the address is not waivable."""
    rows = list(
        session.scalars(
            select(Suppression).where(
                Suppression.channel == channel,
                Suppression.address.in_(_forms(session, channel, address)),
            )
        )
    )
    if not all(waivable(row.reason) for row in rows):
        return False
    for row in rows:
        session.delete(row)
    session.flush()
    return True
