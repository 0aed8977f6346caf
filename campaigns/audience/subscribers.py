"""Subscribers: validating contact details, and creating or finding the person.

Consent lives in campaigns.audience.consent, suppression in .suppression, opting out
and back in in .opt_outs, and whether a message may go in .eligibility.
"""

from __future__ import annotations

import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.consent import record_consent
from campaigns.clock import Clock
from campaigns.models import Subscriber
from campaigns.states import Channel, ConsentAction, SubscriberStatus
from campaigns.text import UncleanText, clean_text

# IANA's geographic areas: a zone named Area/Location is one the database maintains as
# such; bare legacy names (EST5EDT, Cuba), old country folders (US/Eastern) and the
# system's own entries (localtime, posixrules, Factory) are refused with a clear error.
ZONE_AREAS = frozenset(
    {
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
    }
)


class InvalidSubscriber(ValueError):
    """Bad contact details; the message says which field and why."""


def _clean(value: str, field: str) -> None:
    try:
        clean_text(value, field)
    except UncleanText as exc:
        raise InvalidSubscriber(str(exc)) from None


def normalize_email(raw: str) -> str:
    """The address in one form, whatever way it was typed, or InvalidSubscriber.

    Syntax by email-validator (no DNS look-up: a form must answer at once). A trailing
    dot after the domain (`bob@example.com.`, the DNS root) is folded away, so it cannot
    slip past a suppression of `bob@example.com`.
    """
    value = (raw or "").strip()
    _clean(value, "email")
    if value.endswith(".") and "@" in value:
        value = value.rstrip(".")
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidSubscriber(f"email: {raw!r} is not a valid email address ({exc})") from None
    # Lower-cased whole: mailbox providers treat the local part case-insensitively, and
    # Bob@ and bob@ as two subscribers would get every lesson twice.
    return checked.normalized.lower()


def normalize_phone(raw: str, region: str = "US") -> str:
    """E.164, or InvalidSubscriber. A number without + is read in `region`."""
    try:
        number = phonenumbers.parse((raw or "").strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidSubscriber(f"phone: {raw!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidSubscriber(f"phone: {raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_first_name(raw: str | None) -> str | None:
    """Stripped and at most 100 characters, None when blank; InvalidSubscriber when it
    holds a control character (a NUL byte is no letter of anyone's name)."""
    if raw is None:
        return None
    _clean(raw, "first_name")
    return raw.strip()[:100] or None


def check_timezone(name: str | None) -> str | None:
    """A canonical IANA zone name (Area/Location, or UTC), or InvalidSubscriber."""
    if not name:
        return None
    area = name.split("/", 1)[0]
    if name != "UTC" and ("/" not in name or area not in ZONE_AREAS):
        raise InvalidSubscriber(
            f"timezone: {name!r} is not a canonical IANA time zone (like America/New_York)"
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSubscriber(f"timezone: {name!r} is not an IANA time zone") from None
    return name


# What phonenumbers' metadata may call a number we text. The North American plan does
# not tell mobiles from landlines, so its ordinary numbers read FIXED_LINE_OR_MOBILE;
# premium-rate, shared-cost, toll-free, landline, VoIP, pager and unknown numbers are
# refused (texts to them are toll fraud's favourite trick, or never reach a handset).
TEXTABLE_TYPES = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


def check_textable(number: str, allowed: tuple[str, ...] | frozenset[str] | str) -> str:
    """`number` (E.164, or read in the first allowed country) when we may text it: a
    mobile number in one of the `allowed` countries (ISO codes, "US,CA" or a tuple);
    else InvalidSubscriber naming why, its message starting "phone_type:" or
    "phone_country:" so a form can show its own words. Imports call this for their rejects."""
    if isinstance(allowed, str):
        allowed = tuple(c.strip().upper() for c in allowed.split(",") if c.strip())
    allowed = tuple(allowed)
    e164 = normalize_phone(number, allowed[0] if allowed else "US")
    parsed = phonenumbers.parse(e164)
    country = phonenumbers.region_code_for_number(parsed)
    if country not in allowed:
        raise InvalidSubscriber(
            f"phone_country: {e164[:-4]}XXXX is in {country or 'no country'}; "
            f"we text numbers in {', '.join(allowed) or 'no country'} only"
        )
    kind = phonenumbers.number_type(parsed)
    if kind not in TEXTABLE_TYPES:
        name = {v: k for k, v in vars(phonenumbers.PhoneNumberType).items() if k.isupper()}
        raise InvalidSubscriber(
            f"phone_type: {e164[:-4]}XXXX is a {name.get(kind, 'UNKNOWN').lower()} number, "
            "not a mobile number that can receive texts"
        )
    return e164


def address_for(subscriber: Subscriber, channel: str) -> str | None:
    return subscriber.email if channel == Channel.EMAIL else subscriber.phone


def upsert_subscriber(
    session: Session,
    clock: Clock,
    *,
    email: str | None = None,
    phone: str | None = None,
    first_name: str | None = None,
    locale: str | None = None,
    timezone: str | None = None,
    consent: tuple[str, ...] = (),
    source: str = "api",
    evidence: dict | None = None,
    phone_region: str = "US",
    anonymous: bool = False,
) -> Subscriber:
    """Find by email or phone, or create; record consent for each channel in `consent`.

    Staff paths (CSV imports, `drip enroll`, the demo) vouch for what they load, so a
    record found by one address gets the other one and other blank details filled in.
    `anonymous=True` is for input nobody vouches for (the web form, a text from an
    unknown phone): a record found by either address comes back exactly as it was, no
    address, detail or consent added (invariant 11); only a new record is written.

    Validation happens before anything is written, so bad input changes nothing.
    """
    email = normalize_email(email) if email else None
    phone = normalize_phone(phone, phone_region) if phone else None
    timezone = check_timezone(timezone)
    name = check_first_name(first_name)
    if not email and not phone:
        raise InvalidSubscriber("email or phone: at least one is required")
    for channel in consent:
        if channel not in tuple(Channel):
            raise InvalidSubscriber(f"consent: unknown channel {channel!r}")
        if channel == Channel.EMAIL and not email:
            raise InvalidSubscriber("consent: email consent given without an email address")
        if channel == Channel.SMS and not phone:
            raise InvalidSubscriber("consent: sms consent given without a phone number")

    now = clock.now()
    sub = None
    if email:
        sub = session.scalar(select(Subscriber).where(Subscriber.email == email))
    if sub is None and phone:
        sub = session.scalar(select(Subscriber).where(Subscriber.phone == phone))
    if sub is not None and anonymous:
        return sub
    if sub is None:
        sub = Subscriber(
            email=email,
            phone=phone,
            status=SubscriberStatus.ACTIVE,
            public_token=secrets.token_urlsafe(32),
            created_at=now,
            updated_at=now,
        )
        session.add(sub)
    else:
        sub.email = sub.email or email
        sub.phone = sub.phone or phone
        sub.updated_at = now
    if first_name is not None:
        sub.first_name = name
    if locale:
        sub.locale = locale
    if timezone:
        sub.timezone = timezone
    session.flush()
    for channel in consent:
        record_consent(session, clock, sub, channel, ConsentAction.GRANTED, source, evidence)
    return sub
