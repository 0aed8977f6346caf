"""Test-sending a step: the marketer's own inbox or phone gets exactly what a subscriber
would, through the configured provider, marked "[TEST]" on every channel (the email's
subject, the start of the text). Nothing is stored as a subscriber message, and a
suppressed address is refused unless forced: a test must not mail someone who bounced or
complained.

Its links open previews of the pages a subscriber's would (campaigns.links.Sample,
campaigns.tracking.previews): the lesson, the call request, preferences, unsubscribe and
answers, each bannered "Test preview" and recording nothing when posted."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from campaigns.audience.emergency import country_of_phone
from campaigns.audience.subscribers import InvalidSubscriber, normalize_email, normalize_phone
from campaigns.audience.suppression import suppression_for
from campaigns.content.rendering import Recipient, Renderer
from campaigns.delivery.providers import OutgoingEmail, OutgoingSms, SendResult
from campaigns.links import Links, Sample, Signer, sample_links_for
from campaigns.redact import mask
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


@dataclass(frozen=True)
class TestDelivery:
    """Where one test message went: step, channel, provider, the address (masked when
    shown) and the provider's answer."""

    __test__ = False  # not a pytest test class, whatever its name

    step: str
    channel: str
    provider: str
    to: str
    result: SendResult

    @property
    def outcome(self):
        return self.result.outcome

    @property
    def provider_message_id(self) -> str | None:
        return self.result.provider_message_id

    @property
    def error(self) -> str | None:
        return self.result.error

    def line(self) -> str:
        """One line for the command's output; the address masked as in logs."""
        return (
            f"{self.outcome.value}: {self.step} {self.channel} via {self.provider} to "
            f"{mask(self.to)}, id {self.provider_message_id or '-'}"
            + (f" ({self.error})" if self.error else "")
        )


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
) -> list[TestDelivery]:
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
    results: list[TestDelivery] = []
    given = [c for c, address in ((Channel.EMAIL, email), (Channel.SMS, phone)) if address]
    for step in steps:

        def links(via: str, step=step) -> Links:
            sample = Sample(
                campaign.key, step.key, request.locale, tuple(given), request.variant, via
            )
            return sample_links_for(base_url, signer, sample, step.answer_values)

        ref = "test-" + secrets.token_urlsafe(12)
        # As a patient with these addresses would get it: the step's own channels they
        # have, else its fallback; a text is the whole lesson when no email goes with it.
        chosen = step.channels_for(given)
        if email and Channel.EMAIL in chosen:
            mail_links = links(Channel.EMAIL)
            content = renderer.email(campaign, step, recipient, mail_links)
            content = replace(content, subject=f"[TEST] {content.subject}")
            sent = email_provider.send_emails(
                [OutgoingEmail(0, email, content, mail_links.unsubscribe, ref, adhoc=True)]
            )
            results += [
                TestDelivery(step.key, Channel.EMAIL, _name(email_provider), email, r) for r in sent
            ]
        if phone and Channel.SMS in chosen:
            body = renderer.sms(
                campaign,
                step,
                replace(recipient, text_only=Channel.EMAIL not in chosen),
                links(Channel.SMS),
                show_stop_help=step.index == 0,
                first_text=step.index == 0,
            )
            sent = sms_provider.send_sms([OutgoingSms(0, phone, f"[TEST] {body}", ref, adhoc=True)])
            results += [
                TestDelivery(step.key, Channel.SMS, _name(sms_provider), phone, r) for r in sent
            ]
    return results


def _name(provider) -> str:
    return getattr(provider, "name", None) or type(provider).__name__
