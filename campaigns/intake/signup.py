"""Signing up: on the web form (double opt-in by email) or by texting a keyword.

    form ─► start_signup ─► subscriber; SMS consent at once (evidence: the wording shown)
              ├ double opt-in and email asked for: status pending, a signed confirm token,
              │   no email consent and no enrollment yet
              └ otherwise: email consent recorded and enrolled at once
    email ─► GET /confirm/<token> shows a button (scanners prefetch links) ─► POST ─► confirm:
              email consent (source double_opt_in), active, enrolled in SIGNUP_CAMPAIGN
    text JOIN / UNIRME ─► signup_by_sms: SMS consent (evidence: the text), enrolled

The form is anonymous, so it only ever adds: it fills blank details of a known subscriber
but never overwrites them, records consent only for the exact address typed, and never
lifts an opt-out (only a click in the mailbox, or JOIN/START from the phone, can). Routes
answer the same whether or not an address was known, so the form reveals nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import css_inline
import jinja2
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.consent import has_consent, record_consent
from campaigns.audience.eligibility import reachable_channels
from campaigns.audience.opt_outs import resubscribe
from campaigns.audience.subscribers import (
    InvalidSubscriber,
    address_for,
    check_first_name,
    check_timezone,
    normalize_email,
    normalize_phone,
    upsert_subscriber,
)
from campaigns.audience.suppression import suppression_for, waivable
from campaigns.clock import Clock
from campaigns.content.rendering import RenderedEmail
from campaigns.delivery.enrollment import enroll
from campaigns.links import BadToken, Signer
from campaigns.models import Enrollment, Subscriber
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.states import CHANNELS, Channel, ConsentAction, SubscriberStatus
from campaigns.tracking.keywords import keyword

CONFIRM_PURPOSE = "confirm"
LOCALES = ("en", "es")
# Texted keywords that sign a phone up, and the language each implies.
JOIN_WORDS = {"JOIN": "en", "UNIRME": "es"}

# The wording beside the SMS checkbox. It is the legal record of what the person agreed
# to (TCPA), so the form shows exactly this and the consent record stores exactly this.
SMS_CONSENT = {
    "en": (
        "By checking this box you agree to receive recurring educational texts from {brand}. "
        "Msg & data rates may apply. Reply STOP to opt out, HELP for help. "
        "Consent is not a condition of any purchase or care."
    ),
    "es": (
        "Al marcar esta casilla aceptas recibir mensajes de texto educativos periódicos de "
        "{brand}. Pueden aplicarse tarifas de mensajes y datos. Responde STOP para cancelar, "
        "HELP para recibir ayuda. El consentimiento no es condición para ninguna compra ni "
        "atención médica."
    ),
}
# The opt-in confirmation carriers expect after a keyword; GSM-7 only, nothing about health.
JOIN_REPLY = {
    "en": "{brand}: You're signed up for educational texts. Msg freq varies. "
    "Msg&data rates may apply. Reply HELP for help, STOP to opt out.",
    "es": "{brand}: Te inscribiste para recibir mensajes educativos. Frecuencia variable. "
    "Pueden aplicar tarifas de msj y datos. Responde HELP para ayuda, STOP para cancelar.",
}
# Subject lines say nothing about health (invariant 8).
CONFIRM_SUBJECT = {
    "en": "Please confirm your email for {brand}",
    "es": "Confirma tu correo para {brand}",
}
BUILTIN_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


class SignupNotFound(LookupError):
    """A confirmation token that is forged, mangled, or names nobody."""


@dataclass(frozen=True)
class SignupResult:
    subscriber_id: int
    created: bool  # for logs and metrics only: showing it would reveal who subscribes
    needs_confirmation: bool  # send confirmation_email(...) to `confirm_to`
    confirm_token: str | None
    confirm_to: str | None
    enrollment_id: int | None  # set when enrolled (or found enrolled) now
    locale: str | None
    first_name: str | None


def _base(locale: str | None) -> str:
    return (locale or "").split("-")[0].split("_")[0].lower()


def lang(locale: str | None) -> str:
    """One of LOCALES: the language part of `locale`, English when we have no copy in it."""
    return _base(locale) if _base(locale) in LOCALES else "en"


def sms_consent_text(locale: str | None, brand: str) -> str:
    return SMS_CONSENT[lang(locale)].replace("{brand}", brand)


def join_reply(locale: str | None, brand: str) -> str:
    return JOIN_REPLY[lang(locale)].replace("{brand}", brand)


def confirm_token(signer: Signer, subscriber_public_token: str) -> str:
    return signer.sign(CONFIRM_PURPOSE, subscriber_public_token)


def confirm_url(base_url: str, token: str) -> str:
    return f"{base_url}/confirm/{token}"


def subscriber_for_token(session: Session, signer: Signer, token: str) -> Subscriber:
    """The subscriber a confirmation link names, or SignupNotFound. Reads only."""
    try:
        public = signer.unsign(CONFIRM_PURPOSE, token)
    except BadToken:
        raise SignupNotFound("this link is not valid") from None
    sub = session.scalar(select(Subscriber).where(Subscriber.public_token == public))
    if sub is None or not sub.email:
        raise SignupNotFound("this link is not valid")
    return sub


def _validate(email, phone, first_name, locale, timezone, channels, evidence, region):
    """Everything checked before anything is written; InvalidSubscriber names the field."""
    wanted = tuple(dict.fromkeys(channels))
    check_first_name(first_name)
    for channel in wanted:
        if channel not in CHANNELS:
            raise InvalidSubscriber(f"channels: unknown channel {channel!r}")
    email = normalize_email(email) if (email or "").strip() else None
    phone = normalize_phone(phone, region) if (phone or "").strip() else None
    check_timezone(timezone or None)
    if locale and _base(locale) not in LOCALES:
        raise InvalidSubscriber(f"locale: {locale!r} is not one of {', '.join(LOCALES)}")
    if not wanted:
        raise InvalidSubscriber("channels: choose email, text messages or both")
    if Channel.EMAIL in wanted and not email:
        raise InvalidSubscriber("email: an email address is needed for lessons by email")
    if Channel.SMS in wanted and not phone:
        raise InvalidSubscriber("phone: a mobile number is needed for lessons by text")
    if Channel.SMS in wanted and not (evidence or {}).get("sms_consent_text"):
        raise InvalidSubscriber("sms_consent: the consent wording shown must be recorded")
    return email, phone, wanted


def _grant(
    session: Session,
    clock: Clock,
    sub: Subscriber,
    channel: str,
    source: str,
    evidence: dict | None,
) -> None:
    """Record a new grant, unless consent is already on record or the address has opted
    out: an opt-out stands until the person lifts it from their own inbox or phone."""
    if has_consent(session, sub.id, channel) or suppression_for(
        session, channel, address_for(sub, channel)
    ):
        return
    record_consent(session, clock, sub, channel, ConsentAction.GRANTED, source, evidence)


def start_signup(
    session: Session,
    clock: Clock,
    *,
    email: str | None,
    phone: str | None,
    first_name: str | None,
    locale: str | None,
    timezone: str | None,
    channels,
    evidence: dict | None,
    double_opt_in: bool,
    signer: Signer,
    registry: Registry,
    policy: Policy,
    campaign_key: str,
    phone_region: str = "US",
) -> SignupResult:
    email, phone, wanted = _validate(
        email, phone, first_name, locale, timezone, channels, evidence, phone_region
    )
    by_email = (
        session.scalar(select(Subscriber).where(Subscriber.email == email)) if email else None
    )
    by_phone = (
        session.scalar(select(Subscriber).where(Subscriber.phone == phone)) if phone else None
    )
    if by_email is not None and by_phone is not None and by_email.id != by_phone.id:
        # Two records; merging people is the care team's decision, not an anonymous form's.
        phone = None
    known = by_email or by_phone

    def blank(field: str) -> bool:
        return known is None or not getattr(known, field)

    sub = upsert_subscriber(
        session,
        clock,
        email=email,
        phone=phone,
        source="form",
        first_name=first_name if blank("first_name") else None,
        locale=lang(locale) if locale and blank("locale") else None,
        timezone=(timezone or None) if blank("timezone") else None,
    )
    # Consent only for the exact address typed: a known record keeps its own addresses.
    email_ok = Channel.EMAIL in wanted and sub.email == email
    if Channel.SMS in wanted and phone and sub.phone == phone:
        _grant(session, clock, sub, Channel.SMS, "form", evidence)
    enrolled = session.scalar(
        select(Enrollment).where(
            Enrollment.subscriber_id == sub.id, Enrollment.campaign_key == campaign_key
        )
    )
    needs_confirmation = False
    if email_ok and double_opt_in:
        if known is None:
            sub.status = SubscriberStatus.PENDING
        # No mail when there is nothing to confirm (already enrolled with email consent) or
        # the address may not be mailed at all (bounce, complaint). The page reads the same.
        blocked = suppression_for(session, Channel.EMAIL, sub.email)
        needs_confirmation = (
            enrolled is None or not has_consent(session, sub.id, Channel.EMAIL)
        ) and not (blocked is not None and not waivable(blocked.reason))
    else:
        if email_ok:
            _grant(session, clock, sub, Channel.EMAIL, "form", evidence)
        if sub.status != SubscriberStatus.UNSUBSCRIBED and reachable_channels(session, sub):
            sub.status = SubscriberStatus.ACTIVE
            enrolled = enroll(session, clock, registry, sub, campaign_key, policy, source="signup")
    if needs_confirmation:
        sub.confirmation_requested_at = clock.now()  # the notify task mails it (workers/tasks.py)
    session.flush()
    return SignupResult(
        subscriber_id=sub.id,
        created=known is None,
        needs_confirmation=needs_confirmation,
        confirm_token=confirm_token(signer, sub.public_token) if needs_confirmation else None,
        confirm_to=sub.email if needs_confirmation else None,
        enrollment_id=enrolled.id if enrolled is not None else None,
        locale=sub.locale,
        first_name=sub.first_name,
    )


def confirm(
    session: Session,
    clock: Clock,
    registry: Registry,
    policy: Policy,
    subscriber_public_token: str,
    *,
    campaign_key: str,
    evidence: dict | None = None,
) -> Enrollment:
    """The click from the mailbox: email consent, active, enrolled. Idempotent."""
    sub = session.scalar(
        select(Subscriber).where(Subscriber.public_token == subscriber_public_token)
    )
    if sub is None or not sub.email:
        raise SignupNotFound("this link is not valid")
    if not has_consent(session, sub.id, Channel.EMAIL):
        # Proof of the mailbox, so an earlier unsubscribe of it may be lifted (a bounce or
        # complaint may not: resubscribe refuses those and sending keeps suppressing).
        resubscribe(
            session,
            clock,
            sub,
            Channel.EMAIL,
            "double_opt_in",
            {"method": "double_opt_in", **(evidence or {})},
        )
    if sub.status == SubscriberStatus.PENDING:
        sub.status = SubscriberStatus.ACTIVE
        sub.updated_at = clock.now()
    return enroll(session, clock, registry, sub, campaign_key, policy, source="signup")


def signup_by_sms(
    session: Session,
    clock: Clock,
    registry: Registry,
    policy: Policy,
    from_number: str,
    body: str,
    *,
    campaign_key: str,
    message_sid: str | None = None,
) -> Enrollment | None:
    """JOIN / UNIRME from a phone: SMS consent with the text as evidence, enrolled.
    None when the text is not a join keyword, the sender is not a phone number, or the
    number is suppressed for a reason the person cannot lift (e.g. invalid)."""
    word = keyword(body)
    if word not in JOIN_WORDS:
        return None
    try:
        phone = normalize_phone(from_number)
    except InvalidSubscriber:
        return None
    sub = session.scalar(select(Subscriber).where(Subscriber.phone == phone))
    if sub is None:
        sub = upsert_subscriber(
            session, clock, phone=phone, locale=JOIN_WORDS[word], source="sms_keyword"
        )
    evidence = {"keyword": word, "inbound_text": (body or "")[:500], "message_sid": message_sid}
    # Texting the keyword is the person's own opt-in, so it lifts their earlier STOP.
    if not has_consent(session, sub.id, Channel.SMS) and not resubscribe(
        session, clock, sub, Channel.SMS, "sms_keyword", evidence
    ):
        return None
    if sub.status != SubscriberStatus.ACTIVE:
        sub.status = SubscriberStatus.ACTIVE
        sub.updated_at = clock.now()
    return enroll(session, clock, registry, sub, campaign_key, policy, source="sms_keyword")


def confirmation_email(
    templates_dir: Path,
    *,
    brand: str,
    postal_address: str,
    locale: str | None,
    first_name: str | None,
    url: str,
) -> RenderedEmail:
    """The double opt-in message, from `_system/<locale>/confirm.{html,txt}` in the
    configured templates folder, else the copy shipped with the code."""
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(str(templates_dir)),
            jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES)),
        ]
    )
    code = lang(locale)
    subject = CONFIRM_SUBJECT[code].replace("{brand}", brand)
    ctx = {
        "brand": brand,
        "postal_address": postal_address,
        "first_name": first_name,
        "confirm_url": url,
        "subject": subject,
        "locale": code,
    }
    html_env = SandboxedEnvironment(
        loader=loader, undefined=jinja2.StrictUndefined, autoescape=True
    )
    text_env = SandboxedEnvironment(
        loader=loader, undefined=jinja2.StrictUndefined, autoescape=False
    )
    html = css_inline.inline(html_env.get_template(f"_system/{code}/confirm.html").render(**ctx))
    text = text_env.get_template(f"_system/{code}/confirm.txt").render(**ctx).strip() + "\n"
    return RenderedEmail(subject=subject, preheader="", html=html, text=text)
