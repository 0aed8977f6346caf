"""Test-sending a step: the marketer's own inbox or phone gets exactly what a subscriber
would, through the configured provider, with "[TEST]" on the subject. Nothing is stored
as a subscriber message, and a suppressed address is refused unless forced: a test must
not mail someone who bounced or complained."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from campaigns.audience.emergency import country_of_phone
from campaigns.audience.subscribers import InvalidSubscriber, normalize_email, normalize_phone
from campaigns.audience.suppression import suppression_for
from campaigns.content.rendering import Recipient, Renderer
from campaigns.delivery.providers import OutgoingEmail, OutgoingSms, SendResult
from campaigns.links import Signer, links_for
from campaigns.sequences.registry import Registry
from campaigns.states import Channel


@dataclass
class SendTestRequest:
    campaign: str
    steps: list[str]
    locale: str
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    variant: str | None = None  # an experiment's arm; None: each step's own copy


def send_test(
    session: Session,
    registry: Registry,
    renderer: Renderer,
    signer: Signer,
    base_url: str,
    email_provider,
    sms_provider,
    request: SendTestRequest,
    force: bool = False,
) -> list[SendResult]:
    campaign = registry.get(request.campaign)
    email = normalize_email(request.email) if request.email else None
    phone = normalize_phone(request.phone) if request.phone else None
    if not email and not phone:
        raise InvalidSubscriber("email or phone: give at least one address to test-send to")
    for channel, address in ((Channel.EMAIL, email), (Channel.SMS, phone)):
        sup = suppression_for(session, channel, address) if address else None
        if sup and not force:
            raise InvalidSubscriber(
                f"{channel}: {address} is suppressed ({sup.reason}); use --force to send anyway"
            )
    steps = [campaign.step(k) for k in request.steps] if request.steps else list(campaign.steps)
    unknown = [k for k, s in zip(request.steps, steps, strict=False) if s is None]
    if unknown:
        raise InvalidSubscriber(f"step: {', '.join(unknown)} not in {campaign.key}")
    if request.variant is not None:
        lacking = [s.key for s in steps if request.variant not in {v.name for v in s.variants}]
        if lacking:
            raise InvalidSubscriber(
                f"variant: {request.variant!r} is not a variant of {', '.join(lacking)}"
            )
        steps = [s.with_variant(request.variant) for s in steps]
    recipient = Recipient(request.first_name, request.locale, country_of_phone(phone))
    results: list[SendResult] = []
    given = [c for c, address in ((Channel.EMAIL, email), (Channel.SMS, phone)) if address]
    for step in steps:
        links = links_for(base_url, signer, "test-" + secrets.token_urlsafe(8), step.answer_values)
        ref = "test-" + secrets.token_urlsafe(12)
        # As a patient with these addresses would get it: the step's own channels they
        # have, else its fallback; a text is the whole lesson when no email goes with it.
        chosen = step.channels_for(given)
        if email and Channel.EMAIL in chosen:
            content = renderer.email(campaign, step, recipient, links)
            content = replace(content, subject=f"[TEST] {content.subject}")
            results += email_provider.send_emails(
                [OutgoingEmail(0, email, content, links.unsubscribe, ref, adhoc=True)]
            )
        if phone and Channel.SMS in chosen:
            body = renderer.sms(
                campaign,
                step,
                replace(recipient, text_only=Channel.EMAIL not in chosen),
                links,
                show_stop_help=step.index == 0,
                first_text=step.index == 0,
            )
            results += sms_provider.send_sms([OutgoingSms(0, phone, body, ref, adhoc=True)])
    return results
