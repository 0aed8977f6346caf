"""What a test message's links open (campaigns.delivery.testsend; routes in web/previews.py):
each page a subscriber's link opens, shown from the link's signed Sample (campaign, step,
language, the channels the test went to), so the marketer sees what the patient will.

Nothing here reads or writes a subscriber, a message or an event: a preview looks the
same whatever is in the database, and a test link can act on nobody (its signature is
for a test purpose, campaigns.links.TEST, which no real page accepts).
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.content.rendering import Recipient, RenderedEmail, Renderer, RenderError
from campaigns.content.tracked_links import LINK_ID
from campaigns.links import TEST, BadToken, Sample, Signer, sample_links_for
from campaigns.sequences.campaign import Campaign, DefinitionError, Step
from campaigns.sequences.registry import Registry
from campaigns.states import CHANNELS, Channel
from campaigns.tracking.answers import ALL_VALUES
from campaigns.tracking.portal import NotFound, Preferences, online_links, stopped_by
from campaigns.tracking.redirects import targets_in


@dataclass(frozen=True)
class Preview:
    sample: Sample
    campaign: Campaign
    step: Step

    @property
    def locale(self) -> str:
        return self.sample.locale

    @property
    def has(self) -> tuple[str, ...]:
        """The channels the test went to, as the pages offer them to a person."""
        return tuple(c for c in CHANNELS if c in self.sample.channels)

    def stops(self, scope: str | None) -> tuple[str, ...]:
        """What an unsubscribe would stop (portal.channels_to_stop)."""
        return stopped_by(self.has, self.sample.via, scope)

    def preferences(self) -> Preferences:
        email, sms = Channel.EMAIL in self.has, Channel.SMS in self.has
        return Preferences(email=email, sms=sms, has_email=email, has_phone=sms)


def _preview(registry: Registry, sample: Sample) -> Preview:
    try:
        campaign = registry.get(sample.campaign)
    except (LookupError, DefinitionError):
        raise NotFound("this lesson is no longer available") from None
    step = campaign.step(sample.step)
    if step is None:
        raise NotFound("this lesson is no longer available")
    if sample.variant is not None:
        if sample.variant not in {v.name for v in step.variants}:
            raise NotFound("this lesson is no longer available")
        step = step.with_variant(sample.variant)
    return Preview(sample, campaign, step)


def open_link(registry: Registry, signer: Signer, page: str, token: str) -> Preview:
    """The preview a test link of page `page` ("m", "c", "p", "u", "l", "o") stands for."""
    try:
        sample = Sample.parse(signer.unsign(TEST + page, token))
    except BadToken:
        raise NotFound("this link is not valid") from None
    return _preview(registry, sample)


def open_answer(registry: Registry, signer: Signer, token: str) -> tuple[Preview, int]:
    """A test message's answer link: the preview and the value it stands for."""
    try:
        raw, value = signer.unsign_answer(token, ALL_VALUES, TEST)
        sample = Sample.parse(raw)
    except BadToken:
        raise NotFound("this link is not valid") from None
    preview = _preview(registry, sample)
    if preview.step.question is None or value not in preview.step.question.values:
        raise NotFound("this question is no longer asked")
    return preview, value


def _recipient(preview: Preview) -> Recipient:
    # No person: no name, and the sender's default country's emergency number.
    return Recipient(None, preview.locale, None)


def lesson(renderer: Renderer, signer: Signer, base_url: str, preview: Preview) -> RenderedEmail:
    """The step's email as the read-online page shows it, its links previews too."""
    links = sample_links_for(base_url, signer, preview.sample, preview.step.answer_values)
    try:
        return renderer.email(
            preview.campaign, preview.step, _recipient(preview), online_links(links)
        )
    except RenderError:
        raise NotFound("this lesson has no email to show") from None


def destination(
    renderer: Renderer, signer: Signer, base_url: str, preview: Preview, link_id: str
) -> str:
    """Where a test message's link to another page leads: only a URL the step holds."""
    if not LINK_ID.match(link_id):
        raise NotFound("this link is not valid")
    links = sample_links_for(base_url, signer, preview.sample, preview.step.answer_values)
    found = targets_in(renderer, preview.campaign, preview.step, _recipient(preview), links)
    if link_id not in found:
        raise NotFound("this link is not valid")
    return found[link_id]
