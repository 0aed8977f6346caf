"""Signing up: on the web form (double opt-in by email and by text) or by texting a keyword.

    form ─► start_signup ─► each address typed is looked up on its own (below)
              email asked for, double opt-in on: a signed confirm link mailed; email
                consent and the enrollment wait for the click
              email asked for, double opt-in off: email consent at once, enrolled
              text messages asked for: a "reply YES" text is asked for (the notify task
                sends it within text hours, campaigns.intake.confirmations); no SMS
                consent and no lesson text until the phone answers
    email ─► GET /confirm/<token> shows a button (scanners prefetch links) ─► POST ─► confirm:
              email consent (source double_opt_in), active, enrolled in SIGNUP_CAMPAIGN
    text YES / SI / SÍ ─► confirm_by_sms: SMS consent (evidence: the inbound message sid), enrolled
    text JOIN / UNIRME ─► signup_by_sms: SMS consent (evidence: the text), enrolled; a phone
              that texts us itself has proved it holds the handset, so it needs no YES

How two half-known identities meet. The form is anonymous: whoever types an address may
not hold it, so an address is trusted for sending only once it has proved control (the
click in the mailbox, the reply from the phone), and one address never vouches for another.

    email typed    phone typed    what happens
    new            new            one new record holding both, status pending; each
                                  channel gets consent only when its own address proves it
    known (P)      new            P unchanged; the phone (if texts were asked for) becomes a
                                  record of its own, waiting for its YES; never joins P
    new            known (P)      P unchanged; the email (if email was asked for) becomes a
                                  record of its own, waiting for its click; never joins P
    known (P)      known (Q ≠ P)  P and Q unchanged; each address is handled on its own record
    known (P)      known (P)      each address handled on P's record, as for one address

"Handled on its own record" means: the confirmation for that address (mail or YES text) is
asked for when the record has no consent for it, and the proof grants consent to that
record only. A known record is never changed by the form: no address, first name,
language, time zone or consent is added or replaced (upsert_subscriber(anonymous=True)),
and nothing about it is shown: the page answers from what was asked for, never from what
was found, and the confirmation email greets nobody by a stored name. So a stranger who
types a patient's email and their own phone gets, at most, a course of their own on their
own phone; the patient's record, lessons and name stay where they were.

An opt-out is never lifted by the form, and the form mails nothing to an address that is
suppressed (an unsubscribe, a bounce, a complaint) or unsubscribed from everything, so it
cannot be used to mail bomb anyone; such a person comes back through the preference link
in any message they had, which proves the mailbox. A phone that said STOP (or is
suppressed for any cause) is never texted a confirmation: only START or JOIN from the
phone lifts it. A pending record (an earlier sign-up nobody
confirmed) is known like any other: asking again re-sends its confirmations, nothing more.
Joining two records into one person is a staff action (CSV imports, `drip enroll` fill
blanks), never the form's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import css_inline
import jinja2
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.consent import has_consent, record_consent
from campaigns.audience.eligibility import reachable_channels
from campaigns.audience.opt_outs import resubscribe, unsubscribe
from campaigns.audience.subscribers import (
    InvalidSubscriber,
    address_for,
    check_first_name,
    check_textable,
    check_timezone,
    normalize_email,
    normalize_phone,
    upsert_subscriber,
)
from campaigns.audience.suppression import suppression_for
from campaigns.clock import Clock
from campaigns.content.rendering import RenderedEmail
from campaigns.delivery.enrollment import enroll
from campaigns.links import BadToken, Signer
from campaigns.models import Enrollment, Subscriber
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.states import CHANNELS, Channel, ConsentAction, SubscriberStatus
from campaigns.tracking.keywords import keyword, says_yes

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
# The first text to a phone given on the form: the opt-in request carriers expect (brand,
# what, how often, rates, HELP/STOP). GSM-7 only, nothing about health (invariant 8).
SMS_CONFIRM = {
    "en": "{brand}: Reply YES to get educational texts from {brand}. Msg frequency varies. "
    "Msg & data rates may apply. Reply HELP for help, STOP to opt out.",
    "es": "{brand}: Responde SI para recibir mensajes educativos de {brand}. Frecuencia "
    "variable. Pueden aplicar tarifas de msj y datos. Responde AYUDA para ayuda, STOP para "
    "cancelar.",
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
    """What the route needs after a sign-up; nothing in it is shown to the visitor."""

    subscriber_id: int  # the record the email went to (else the phone's)
    created: bool  # for logs and metrics only: showing it would reveal who subscribes
    needs_confirmation: bool  # send confirmation_email(...) to `confirm_to`
    confirm_token: str | None
    confirm_to: str | None
    enrollment_id: int | None  # set when enrolled (or found enrolled) now
    locale: str | None
    text_confirmation: bool = False  # a "reply YES" text was asked for


def _base(locale: str | None) -> str:
    return (locale or "").split("-")[0].split("_")[0].lower()


def lang(locale: str | None) -> str:
    """One of LOCALES: the language part of `locale`, English when we have no copy in it."""
    return _base(locale) if _base(locale) in LOCALES else "en"


def sms_consent_text(locale: str | None, brand: str) -> str:
    return SMS_CONSENT[lang(locale)].replace("{brand}", brand)


def join_reply(locale: str | None, brand: str) -> str:
    return JOIN_REPLY[lang(locale)].replace("{brand}", brand)


def sms_confirmation_text(locale: str | None, brand: str) -> str:
    return SMS_CONFIRM[lang(locale)].replace("{brand}", brand)


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


def _validate(
    email, phone, first_name, locale, timezone, channels, evidence, region, sms_countries
):
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
    if Channel.SMS in wanted:
        phone = check_textable(phone, sms_countries)  # mobiles in allowed countries only
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
    sms_countries: tuple[str, ...] = ("US", "CA"),
) -> SignupResult:
    """The form's sign-up; how known and new addresses meet is drawn in the module docstring."""
    email, phone, wanted = _validate(
        email, phone, first_name, locale, timezone, channels, evidence, phone_region, sms_countries
    )
    by_email = (
        session.scalar(select(Subscriber).where(Subscriber.email == email)) if email else None
    )
    by_phone = (
        session.scalar(select(Subscriber).where(Subscriber.phone == phone)) if phone else None
    )
    new_email = email if by_email is None else None
    new_phone = phone if by_phone is None else None
    # An address is stored only for what it was asked for: a phone typed with texts left
    # unticked is not kept (it would sit on the record unproved, for a preference page
    # to switch on later). Beside a known address, a new one stands alone.
    new_email = new_email if Channel.EMAIL in wanted else None
    new_phone = new_phone if Channel.SMS in wanted else None
    fresh = None
    if new_email or new_phone:
        fresh = upsert_subscriber(
            session,
            clock,
            email=new_email,
            phone=new_phone,
            source="form",
            first_name=first_name,
            locale=lang(locale) if locale else None,
            timezone=timezone or None,
            anonymous=True,
        )
        fresh.status = SubscriberStatus.PENDING
    email_sub = by_email or (fresh if new_email else None)
    phone_sub = by_phone or (fresh if new_phone else None)

    needs_confirmation = False
    enrolled = None
    if Channel.EMAIL in wanted:
        sub = email_sub
        enrolled = session.scalar(
            select(Enrollment).where(
                Enrollment.subscriber_id == sub.id, Enrollment.campaign_key == campaign_key
            )
        )
        # A known address is confirmed by its mailbox whatever DOUBLE_OPT_IN says: without
        # that, the form would grant it consent and restart its course (invariant 11).
        if double_opt_in or by_email is not None:
            # No mail when there is nothing to confirm (already enrolled with email consent)
            # or the address may not be mailed at all (bounce, complaint). The page reads the same.
            blocked = suppression_for(session, Channel.EMAIL, sub.email)
            needs_confirmation = (
                (enrolled is None or not has_consent(session, sub.id, Channel.EMAIL))
                and blocked is None
                and sub.status != SubscriberStatus.UNSUBSCRIBED
            )
            if needs_confirmation:
                sub.confirmation_requested_at = clock.now()  # the notify task mails it
        else:
            _grant(session, clock, sub, Channel.EMAIL, "form", evidence)
            if sub.status != SubscriberStatus.UNSUBSCRIBED and reachable_channels(session, sub):
                sub.status = SubscriberStatus.ACTIVE
                enrolled = enroll(
                    session, clock, registry, sub, campaign_key, policy, source="signup"
                )
    texting = False
    if Channel.SMS in wanted:
        # Whatever double_opt_in says: a phone typed on a form proves nothing until it
        # answers, and a number that said STOP (or cannot be texted) is never texted.
        texting = not has_consent(session, phone_sub.id, Channel.SMS) and (
            suppression_for(session, Channel.SMS, phone_sub.phone) is None
        )
        if texting:
            phone_sub.sms_confirmation_requested_at = clock.now()
    session.flush()
    main = email_sub or phone_sub
    return SignupResult(
        subscriber_id=main.id,
        created=main is fresh,
        needs_confirmation=needs_confirmation,
        confirm_token=confirm_token(signer, email_sub.public_token) if needs_confirmation else None,
        confirm_to=email_sub.email if needs_confirmation else None,
        enrollment_id=enrolled.id if enrolled is not None else None,
        locale=(email_sub.locale if email_sub else None) or lang(locale),
        text_confirmation=texting,
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
    link_max_age: timedelta | None = None,
) -> Enrollment:
    """The click from the mailbox: email consent, active, enrolled. Idempotent.

    A link older than `link_max_age` (counted from the latest sign-up that asked for it)
    confirms nothing: a mailbox read long after, or by someone else, must sign up again.
    Clicking it again after it worked changes nothing, however old it is."""
    sub = session.scalar(
        select(Subscriber).where(Subscriber.public_token == subscriber_public_token)
    )
    if sub is None or not sub.email:
        raise SignupNotFound("this link is not valid")
    confirmed = has_consent(session, sub.id, Channel.EMAIL)
    asked = sub.confirmation_requested_at
    too_old = link_max_age is not None and asked is not None and clock.now() - asked > link_max_age
    if not confirmed and too_old:
        raise SignupNotFound("this link has expired")
    if not confirmed:
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


def stop_confirmations(session: Session, clock: Clock, subscriber_public_token: str) -> None:
    """The unsubscribe link of a confirmation mail: no more mail to that address, the
    confirmations included, whoever typed it into the form (an unsubscribe, so the
    person can still come back through the preference link of any message they had)."""
    sub = session.scalar(
        select(Subscriber).where(Subscriber.public_token == subscriber_public_token)
    )
    if sub is None or not sub.email:
        raise SignupNotFound("this link is not valid")
    sub.confirmation_requested_at = None
    unsubscribe(session, clock, sub, channels=(Channel.EMAIL,), source="confirmation_unsubscribe")


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
    return _phone_opted_in(
        session, clock, registry, policy, sub, "sms_keyword", evidence, campaign_key, "sms_keyword"
    )


def confirm_by_sms(
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
    """YES / SI / SÍ from a phone we asked to confirm: the handset has proved itself, so
    SMS consent (evidence: the inbound message sid and text), active, enrolled. None when
    the text is not a yes, or no confirmation was asked of this phone (the text is then
    kept for a person like any other), or the number stays suppressed for a cause the
    person cannot lift."""
    if not says_yes(body):
        return None
    try:
        phone = normalize_phone(from_number)
    except InvalidSubscriber:
        return None
    sub = session.scalar(select(Subscriber).where(Subscriber.phone == phone))
    if sub is None or sub.sms_confirmation_requested_at is None:
        return None
    evidence = {
        "method": "sms_double_opt_in",
        "keyword": keyword(body),
        "inbound_text": (body or "")[:500],
        "message_sid": message_sid,
        "asked_at": sub.sms_confirmation_requested_at.isoformat(),
    }
    enrolled = _phone_opted_in(
        session, clock, registry, policy, sub, "sms_double_opt_in", evidence, campaign_key, "signup"
    )
    if enrolled is not None:
        sub.sms_confirmation_requested_at = None  # answered: nothing more to send or accept
    return enrolled


def _phone_opted_in(
    session: Session,
    clock: Clock,
    registry: Registry,
    policy: Policy,
    sub: Subscriber,
    source: str,
    evidence: dict,
    campaign_key: str,
    enroll_source: str,
) -> Enrollment | None:
    """The phone's own opt-in (JOIN, or YES when asked): SMS consent, lifting its earlier
    STOP, active, enrolled. None when the number stays suppressed for a cause the person
    cannot lift (invalid, complaint)."""
    if not has_consent(session, sub.id, Channel.SMS) and not resubscribe(
        session, clock, sub, Channel.SMS, source, evidence
    ):
        return None
    if sub.status != SubscriberStatus.ACTIVE:
        sub.status = SubscriberStatus.ACTIVE
        sub.updated_at = clock.now()
    return enroll(session, clock, registry, sub, campaign_key, policy, source=enroll_source)


def confirmation_email(
    templates_dir: Path,
    *,
    brand: str,
    postal_address: str,
    locale: str | None,
    url: str,
) -> RenderedEmail:
    """The double opt-in message, from `_system/<locale>/confirm.{html,txt}` in the
    configured templates folder, else the copy shipped with the code.

    It greets nobody by name: it goes to an address that has not proved control, and a
    stored first name may be someone else's (or whatever a stranger typed)."""
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
        "first_name": None,  # the templates' `first_name or ...` greeting stays generic
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
