"""Where a link of a lesson leads: `/l/<signed message token>/<link id>`.

The token names the message (signed, campaigns.links); the link id names one of the
links the message was rendered with (campaigns.content.tracked_links). The message is
rendered again, as the subscriber got it (the email, and the text in both its forms when
the step texts), and the redirect goes only to the URL whose id it finds there. So it
never leads anywhere a request names: a forged token, an id the message does not hold
(tampered, or a link a later edit of the lesson removed) or a lesson no longer deployed
is NotFound, the invalid-link page.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from campaigns.audience.emergency import country_of
from campaigns.content.rendering import Recipient, Renderer, RenderError
from campaigns.content.tracked_links import LINK_ID
from campaigns.links import Links, Signer, links_for
from campaigns.sequences.campaign import Campaign, DefinitionError, Step
from campaigns.sequences.registry import Registry
from campaigns.states import Channel
from campaigns.tracking.portal import NotFound, Visit


def link_targets(
    registry: Registry, renderer: Renderer, signer: Signer, base_url: str, visit: Visit
) -> dict[str, str]:
    """{link id: URL} of every link the message sends through our redirect."""
    try:
        campaign = registry.get(visit.message.campaign_key)
    except (LookupError, DefinitionError):
        raise NotFound("this lesson is no longer available") from None
    step = campaign.step(visit.message.step_key)
    if step is None:
        raise NotFound("this lesson is no longer available")
    step = step.with_variant(visit.message.variant)  # the arm the person got
    links = links_for(base_url, signer, visit.message.public_token, step.answer_values)
    sub = visit.subscriber
    recipient = Recipient(sub.first_name, sub.locale, country_of(sub))
    # An email's token is in no text: its texts' links are not the message's, and
    # rendering them (twice) would triple the work of every click on an email.
    texts = visit.message.channel == Channel.SMS
    return targets_in(renderer, campaign, step, recipient, links, texts=texts)


def targets_in(
    renderer: Renderer,
    campaign: Campaign,
    step: Step,
    recipient: Recipient,
    links: Links,
    *,
    texts: bool = True,
) -> dict[str, str]:
    """{link id: URL} of the step's email and (`texts`) texts, rendered for `recipient`
    with `links`."""
    targets: dict[str, str] = {}
    # The email is what "read online" shows whatever the channel, so its links are the
    # message's too; a step with no email templates simply has none.
    with contextlib.suppress(RenderError):
        targets.update(renderer.email(campaign, step, recipient, links).links)
    if texts and Channel.SMS in step.sends_on:
        for text_only in (False, True):
            try:
                _, found = renderer.sms_with_links(
                    campaign,
                    step,
                    replace(recipient, text_only=text_only),
                    links,
                    show_stop_help=True,
                    first_text=step.index == 0,
                )
            except RenderError:
                continue
            targets.update(found)
    return targets


def destination(
    registry: Registry,
    renderer: Renderer,
    signer: Signer,
    base_url: str,
    visit: Visit,
    link_id: str,
) -> str:
    if not LINK_ID.match(link_id):
        raise NotFound("this link is not valid")
    url = link_targets(registry, renderer, signer, base_url, visit).get(link_id)
    if url is None:
        raise NotFound("this link is not valid")
    return url
