"""One step of a bundle as a reader will get it, and its lint findings, for the editor's
live preview: rendered from the draft's own files (not what runs), for a sample reader
per locale, with a test message's links (campaigns/links.py `Sample`: they open the
bannered previews under /t/, never a patient's page).

    preview_step(bundle, key, shared, sender, base_url, signer) -> [LocalePreview]
    check_step(bundle, key, ctx, shared)                         -> [Finding]

Rendering one step is a fraction of a second where linting a whole course takes seconds:
the editor re-checks the step being typed, and the whole course before a publish
(campaigns.editing.publishing.check_bundle).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from campaigns.content.lint import Finding, LintContext, lint_step
from campaigns.content.preview import sms_variants
from campaigns.content.rendering import Recipient, Renderer, RenderError, Sender
from campaigns.content.review import StepReview, review_rows
from campaigns.content.sms_text import segments
from campaigns.links import Sample, Signer, sample_links_for
from campaigns.sequences.bundles import Bundle, scratch
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from campaigns.states import Channel

SAMPLE_READER = "Maria"


@dataclass(frozen=True)
class TextPreview:
    label: str  # "with the email" / "text only"
    text: str
    encoding: str
    segments: int


@dataclass
class LocalePreview:
    locale: str
    subject: str = ""
    preheader: str = ""
    html: str = ""
    text: str = ""
    sms: list[TextPreview] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be rendered, and why


def preview_step(
    bundle: Bundle, key: str, shared: Path, sender: Sender, base_url: str, signer: Signer
) -> list[LocalePreview]:
    """Raises DefinitionError when the files do not parse, LookupError for no such step."""
    with scratch(bundle, shared) as (path, templates):
        campaign = parse_campaign(path, templates)
        step = campaign.step(key)
        if step is None:
            raise LookupError(f"{campaign.key} has no step {key!r}")
        renderer = Renderer(templates, sender)
        out = []
        for locale in campaign.locales:
            shown = LocalePreview(locale)
            sample = Sample(campaign.key, step.key, locale, tuple(step.sends_on))
            links = sample_links_for(base_url, signer, sample, step.answer_values)
            reader = Recipient(SAMPLE_READER, locale)
            if Channel.EMAIL in step.channels:
                try:
                    email = renderer.email(campaign, step, reader, links)
                    shown.subject, shown.preheader = email.subject, email.preheader
                    shown.html, shown.text = email.html, email.text
                except RenderError as exc:
                    shown.problems.append(f"email: {exc}")
            for text_only in sms_variants(step):
                try:
                    text = renderer.sms(
                        campaign,
                        step,
                        replace(reader, text_only=text_only),
                        links,
                        show_stop_help=True,
                        first_text=step.index == 0,
                    )
                except RenderError as exc:
                    shown.problems.append(f"text: {exc}")
                    break
                encoding, count = segments(text)
                label = "text only (no email)" if text_only else "with the email"
                shown.sms.append(TextPreview(label, text, encoding, count))
            out.append(shown)
        return out


def check_step(bundle: Bundle, key: str, ctx: LintContext, shared: Path) -> list[Finding]:
    """The lint's findings on one step of these files (its review included)."""
    with scratch(bundle, shared) as (path, templates):
        try:
            campaign = parse_campaign(path, templates)
        except DefinitionError as exc:
            return [
                Finding("error", bundle.file_name, "", "", "", p.split(": ", 1)[-1])
                for p in exc.problems
            ]
        return lint_step(campaign, key, replace(ctx, templates_dir=templates))


def step_reviews(bundle: Bundle, shared: Path, today: date) -> dict[str, StepReview]:
    """Each step's clinical review state in these files, by step key."""
    with scratch(bundle, shared) as (path, templates):
        try:
            campaign = parse_campaign(path, templates)
        except DefinitionError:
            return {}
        return {r.step_key: r for r in review_rows(campaign, templates, today)}


def findings_by_field(findings: list[Finding], step: str, template: str) -> dict[str, list]:
    """A step's findings by the editor's field they are about: `subject.en`,
    `preheader.en`, `body.en/welcome.sms.txt`, `review`, and `step` for the rest of the
    step's (an experiment's arm, a render that names no file); `general` for the file's."""
    out: dict[str, list] = {}
    for f in findings:
        out.setdefault(_field_of(f, step, template), []).append(f)
    return out


def _field_of(f: Finding, step: str, template: str) -> str:
    if not f.step:
        return "general"
    if f.step != step:
        return "step"  # "welcome variant b": an arm's copy, edited in the file
    if f.message.startswith("clinical review"):
        return "review"
    if not f.locale:
        return "step"
    if f.channel.startswith(Channel.SMS):
        return f"body.{f.locale}/{template}.sms.txt"
    for part in ("subject", "preheader"):
        if f.message.startswith(part) or f.message.startswith(f"no {part}"):
            return f"{part}.{f.locale}"
    if "text part" in f.message or f"{template}.txt" in f.message:
        return f"body.{f.locale}/{template}.txt"
    return f"body.{f.locale}/{template}.html"
