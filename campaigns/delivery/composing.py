"""Composing a batch of outbox rows into provider-ready messages, rendering each step once.

Rendering a lesson (sandboxed Jinja, layout, CSS inlining) costs more than everything else
a send does, and every recipient of a step gets the same words but for their name and
their links. So a step is rendered once per group (campaign, version, step, experiment
arm, locale, and whether there is a first name: templates may branch on that) with
placeholders, and each recipient's copy is the shared one with their values filled in.

That is exact only when the templates use the name and links plainly, so three guards
decide, and anything that fails them is rendered in full for that recipient:
- every template involved (body, layout, subject, preheader) uses `first_name` only as
  `{{ first_name }}`, `{{ first_name or "..." }}` or as an `if` test, and `links` only as
  `{{ links.x }}` (jinja2's own parser decides, not a regular expression);
- the name holds only letters, digits, spaces, dots and hyphens, so HTML escaping cannot
  change it;
- the first recipient of each group is rendered in full as well and must come out
  byte for byte the same as the filled-in copy, or the whole group is rendered in full.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jinja2 import meta, nodes

from campaigns.audience.emergency import country_of
from campaigns.content.rendering import Recipient, RenderedEmail, Renderer
from campaigns.delivery.batching import (
    PLACEHOLDER_LINKS,
    PLACEHOLDER_NAME,
    SharedEmail,
    fill,
    substitutions,
)
from campaigns.delivery.providers import OutgoingEmail, OutgoingSms
from campaigns.links import Signer, links_for
from campaigns.models import Message, Subscriber
from campaigns.sequences.campaign import Campaign, Step
from campaigns.sequences.registry import Registry
from campaigns.states import Channel

SAFE_NAME = re.compile(r"^[\w .\-]*$")
# Texts carry a signed token to the provider (Twilio echoes it in the status callback URL).
STATUS_REF_PURPOSE = "s"


def _plain_uses(node, parent=None, grand=None) -> bool:
    if isinstance(node, nodes.Name) and node.name == "first_name":
        ok = (
            isinstance(parent, nodes.Output)
            or (
                isinstance(parent, nodes.Or)
                and parent.left is node
                and isinstance(parent.right, nodes.Const)
                and isinstance(grand, nodes.Output)
            )
            or (isinstance(parent, (nodes.If, nodes.CondExpr)) and parent.test is node)
            or (isinstance(parent, nodes.Not) and isinstance(grand, (nodes.If, nodes.CondExpr)))
        )
        if not ok:
            return False
    # A link is written out, or tested (the layout leaves the read-online link and the
    # pixel out of the online view): every sent message has all its links, so a test is
    # the same for the whole group, and the first recipient's full render checks it.
    if (
        isinstance(node, nodes.Name)
        and node.name == "links"
        and not (
            isinstance(parent, nodes.Getattr)
            and (
                isinstance(grand, nodes.Output)
                or (isinstance(grand, (nodes.If, nodes.CondExpr)) and grand.test is parent)
            )
        )
    ):
        return False
    return all(_plain_uses(child, node, parent) for child in node.iter_child_nodes())


@dataclass
class _Group:
    shared: RenderedEmail | str
    plain: bool
    verified: bool | None = None  # None until the first recipient was checked in full


class Composer:
    """Per batch: caches the shared rendering of each group."""

    def __init__(self, renderer: Renderer, registry: Registry, base_url: str, signer: Signer):
        self.renderer = renderer
        self.registry = registry
        self.base_url = base_url
        self.signer = signer
        self._groups: dict[tuple, _Group] = {}
        self._campaigns: dict[str, Campaign] = {}

    def step_of(self, msg: Message) -> tuple[Campaign, Step]:
        campaign = self._campaigns.get(msg.campaign_key)
        if campaign is None:  # once per batch: the registry stats the campaign files
            campaign = self._campaigns[msg.campaign_key] = self.registry.get(msg.campaign_key)
        step = campaign.step(msg.step_key)
        if step is None:
            raise LookupError(f"step {msg.step_key!r} is no longer in campaign {campaign.key!r}")
        # The arm recorded at the claim (campaigns.sequences.experiments), if the step has it.
        return campaign, step.with_variant(msg.variant)

    def _plain(self, names: list[str], strings: list[str]) -> bool:
        env = self.renderer.text_env
        try:
            sources = [env.loader.get_source(env, n)[0] for n in names] + strings
            pending = [env.parse(src) for src in sources]
            seen = set(names)
            while pending:
                tree = pending.pop()
                if not _plain_uses(tree):
                    return False
                # What a template includes, extends or imports is checked too (the shipped
                # lessons include the get-help-now block): whole, or not plain at all.
                for name in meta.find_referenced_templates(tree):
                    if name is None:  # a name computed while rendering
                        return False
                    if name not in seen:
                        seen.add(name)
                        pending.append(env.parse(env.loader.get_source(env, name)[0]))
            return True
        except Exception:  # anything unusual simply takes the full-render path
            return False

    def email(self, msg: Message, subscriber: Subscriber) -> OutgoingEmail:
        campaign, step = self.step_of(msg)
        locale = campaign.locale_for(subscriber.locale)
        links = links_for(self.base_url, self.signer, msg.public_token, step.answer_values)
        country = country_of(subscriber)
        key = (
            campaign.key,
            campaign.version,
            step.key,
            step.variant,
            locale,
            bool(subscriber.first_name),
            Channel.EMAIL,
            country,
        )
        group = self._groups.get(key)
        if group is None:
            placeholder = Recipient(
                PLACEHOLDER_NAME if subscriber.first_name else None, subscriber.locale, country
            )
            base = f"{campaign.templates_at}/{locale}/{step.template}"
            # A step that asks a question is rendered in full: each answer link is signed.
            plain = step.question is None and self._plain(
                [
                    f"{base}.html",
                    f"{base}.txt",
                    f"_layout/{locale}/email.html",
                    f"_layout/{locale}/email.txt",
                ],
                [
                    step.subject_for(locale, campaign.fallback_locale),
                    step.preheader_for(locale, campaign.fallback_locale),
                ],
            )
            group = self._groups[key] = _Group(
                self.renderer.email(campaign, step, placeholder, PLACEHOLDER_LINKS), plain
            )
        subs = substitutions(subscriber.first_name, links)
        shared = SharedEmail("/".join(map(str, key)), group.shared)
        content = self._fast_email(group, subscriber, subs)
        if content is None:
            content = self.renderer.email(
                campaign, step, Recipient(subscriber.first_name, subscriber.locale, country), links
            )
            fits = _filled_email(group.shared, subs) == content
            if group.verified is None and group.plain and _safe_name(subscriber):
                group.verified = fits
            return OutgoingEmail(
                msg.id,
                subscriber.email,
                content,
                links.unsubscribe,
                msg.public_token,
                shared=shared if fits else None,
                substitutions=subs if fits else {},
            )
        return OutgoingEmail(
            msg.id,
            subscriber.email,
            content,
            links.unsubscribe,
            msg.public_token,
            shared=shared,
            substitutions=subs,
        )

    def _fast_email(
        self, group: _Group, subscriber: Subscriber, subs: dict
    ) -> RenderedEmail | None:
        if group.plain and group.verified and _safe_name(subscriber):
            return _filled_email(group.shared, subs)
        return None

    def sms(
        self,
        msg: Message,
        subscriber: Subscriber,
        show_stop_help: bool,
        text_only: bool = False,
        first_text: bool = False,
    ) -> OutgoingSms:
        """`text_only`: the person gets no email of this step, so the text is the lesson.
        `first_text`: the course's first step, whose text says what texts cost."""
        campaign, step = self.step_of(msg)
        locale = campaign.locale_for(subscriber.locale)
        links = links_for(self.base_url, self.signer, msg.public_token, step.answer_values)
        country = country_of(subscriber)
        key = (
            campaign.key,
            campaign.version,
            step.key,
            step.variant,
            locale,
            bool(subscriber.first_name),
            Channel.SMS,
            show_stop_help,
            country,
            text_only,
            first_text,
        )
        group = self._groups.get(key)
        if group is None:
            placeholder = Recipient(
                PLACEHOLDER_NAME if subscriber.first_name else None,
                subscriber.locale,
                country,
                text_only,
            )
            plain = self._plain(
                [
                    f"{campaign.templates_at}/{locale}/{step.template}.sms.txt",
                    f"_layout/{locale}/sms.txt",
                ],
                [],
            )
            group = self._groups[key] = _Group(
                self.renderer.sms(
                    campaign, step, placeholder, PLACEHOLDER_LINKS, show_stop_help, first_text
                ),
                plain,
            )
        subs = substitutions(subscriber.first_name, links)
        if group.plain and group.verified and _safe_name(subscriber):
            return OutgoingSms(msg.id, subscriber.phone, fill(group.shared, subs), self._ref(msg))
        body = self.renderer.sms(
            campaign,
            step,
            Recipient(subscriber.first_name, subscriber.locale, country, text_only),
            links,
            show_stop_help,
            first_text,
        )
        if group.verified is None and group.plain and _safe_name(subscriber):
            group.verified = fill(group.shared, subs) == body
        return OutgoingSms(msg.id, subscriber.phone, body, self._ref(msg))

    def _ref(self, msg: Message) -> str:
        return self.signer.sign(STATUS_REF_PURPOSE, msg.public_token)


def _safe_name(subscriber: Subscriber) -> bool:
    return subscriber.first_name is None or bool(SAFE_NAME.match(subscriber.first_name))


def _filled_email(shared: RenderedEmail, subs: dict[str, str]) -> RenderedEmail:
    return RenderedEmail(
        subject=fill(shared.subject, subs),
        preheader=fill(shared.preheader, subs),
        html=fill(shared.html, subs),
        text=fill(shared.text, subs),
    )
