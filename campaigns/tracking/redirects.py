"""Where a link of a lesson leads: `/l/<signed message token>/<link id>`.

The token names the message (signed, campaigns.links); the link id names one of the
links the message was rendered with (campaigns.content.tracked_links). The message is
rendered again, as the subscriber got it (the email, and the text in both its forms when
the step texts), or its lesson's shape filled in for it (campaigns.content.shapes: the
same, exactly), and the redirect goes only to the URL whose id it finds there. So it
never leads anywhere a request names: a forged token, an id the message does not hold
(tampered, or a link a later edit of the lesson removed) or a lesson no longer deployed
is NotFound, the invalid-link page.
"""

from __future__ import annotations

from campaigns.content.rendering import Recipient, Renderer
from campaigns.content.shapes import Shapes, full_targets
from campaigns.content.tracked_links import LINK_ID
from campaigns.links import Links, Signer
from campaigns.sequences.campaign import Campaign, Step
from campaigns.sequences.registry import Registry
from campaigns.states import Channel
from campaigns.tracking.portal import NotFound, Visit, lesson_parts


def link_targets(
    registry: Registry,
    renderer: Renderer,
    signer: Signer,
    base_url: str,
    visit: Visit,
    shapes: Shapes | None = None,
) -> dict[str, str]:
    """{link id: URL} of every link the message sends through our redirect; from
    `shapes` (the same, without a render per message) when given."""
    campaign, step, recipient, links = lesson_parts(registry, signer, base_url, visit)
    # An email's token is in no text: its texts' links are not the message's, and
    # rendering them (twice) would triple the work of every click on an email.
    texts = visit.message.channel == Channel.SMS
    if shapes is not None:
        return shapes.targets(campaign, step, recipient, links, texts=texts)
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
    return full_targets(renderer, campaign, step, recipient, links, texts=texts)


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
