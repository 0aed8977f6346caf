"""Render message templates in a sandbox with strict undefined variables (invariant 9).

Marketers edit templates, so they run in jinja2's SandboxedEnvironment (no reaching
`__class__` or Python internals) with StrictUndefined (a missing field is an error,
never a blank in a patient's inbox). A step template is a body fragment; the shared
per-locale layout in `templates/_layout/<locale>/` wraps it with the footer every
message must carry, so a marketer cannot forget the unsubscribe link. Every link to
another page goes through our signed redirect (campaigns.content.tracked_links).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import css_inline
import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from campaigns.audience.emergency import emergency_number
from campaigns.content.care_team import EXAMPLE, CareTeam
from campaigns.content.sms_text import to_gsm7
from campaigns.content.tracked_links import rewrite_html, rewrite_text
from campaigns.links import Links
from campaigns.sequences.campaign import Campaign, Step


class RenderError(ValueError):
    """A template could not be rendered; the message names the template and the cause."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str
    # (link id, URL) of every link sent through our redirect; not part of the message's
    # content, so two renderings that read the same compare equal whatever it holds.
    links: tuple[tuple[str, str], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Recipient:
    first_name: str | None
    locale: str | None
    # ISO country (campaigns.audience.emergency.country_of); None: the sender's default.
    country: str | None = None
    # A text that is the whole lesson (the person gets no email of it), not a companion.
    text_only: bool = False


@dataclass(frozen=True)
class Sender:
    brand: str
    postal_address: str
    care: CareTeam = field(default=EXAMPLE)
    default_country: str = "US"


# Subjects and preheaders kept compiled per renderer (all campaigns' steps and locales).
MAX_COMPILED = 2048


class Renderer:
    def __init__(self, templates_dir: Path, sender: Sender):
        self.templates_dir = Path(templates_dir)
        self.sender = sender
        loader = jinja2.FileSystemLoader(str(self.templates_dir))
        self.html_env = SandboxedEnvironment(
            loader=loader, undefined=jinja2.StrictUndefined, autoescape=True
        )
        self.text_env = SandboxedEnvironment(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self._strings: dict[str, jinja2.Template] = {}

    def _compiled(self, source: str) -> jinja2.Template:
        """A subject or preheader, compiled once per text (half a millisecond each time,
        for every page that shows a lesson); a text changes only with a new revision."""
        template = self._strings.get(source)
        if template is None:
            if len(self._strings) >= MAX_COMPILED:
                self._strings.clear()
            template = self._strings[source] = self.text_env.from_string(source)
        return template

    def _render(self, env: SandboxedEnvironment, name: str, context: dict) -> str:
        try:
            return env.get_template(name).render(**context)
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"{name}: template not found ({exc.name})") from None
        except jinja2.UndefinedError as exc:
            raise RenderError(f"{name}: undefined variable: {exc.message}") from None
        except jinja2.exceptions.SecurityError as exc:
            raise RenderError(f"{name}: not allowed in a template: {exc}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(
                f"{exc.filename or name}:{exc.lineno}: syntax error: {exc.message}"
            ) from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"{name}: {exc}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as exc:
            # Copy is written by people: `first_name + 1`, a range too big for the sandbox,
            # a macro calling itself. Each is this message's failure, never the batch's.
            raise RenderError(f"{name}: {type(exc).__name__}: {exc}") from None

    def context(self, campaign: Campaign, step: Step, recipient: Recipient, links: Links) -> dict:
        locale = campaign.locale_for(recipient.locale)
        return {
            "first_name": recipient.first_name,
            "brand": self.sender.brand,
            "postal_address": self.sender.postal_address,
            # The redirect is not a link of its own: templates write the page's URL.
            "links": {k: v for k, v in asdict(links).items() if k not in ("redirect", "answers")},
            # A check-in question (`asks`): its scale, and in an email one link per value.
            "question": _question(step, links),
            "step": {"number": step.index + 1, "total": len(campaign.steps), "key": step.key},
            "campaign_name": campaign.name_for(locale),
            "locale": locale,
            "emergency_number": emergency_number(recipient.country, self.sender.default_country),
            "care": self.sender.care.for_locale(locale),
            "text_only": recipient.text_only,
        }

    def email(
        self, campaign: Campaign, step: Step, recipient: Recipient, links: Links
    ) -> RenderedEmail:
        ctx = self.context(campaign, step, recipient, links)
        locale = ctx["locale"]
        base = f"{campaign.templates_at}/{locale}/{step.template}"
        if step.question is not None and not links.answers:
            # Never an email that asks without the links to answer it.
            raise RenderError(f"{base}: the question's answer links were not made")
        subject = _one_line(
            self._render_string(
                step.subject_for(locale, campaign.fallback_locale), ctx, base + " subject"
            )
        )
        preheader = _one_line(
            self._render_string(
                step.preheader_for(locale, campaign.fallback_locale), ctx, base + " preheader"
            )
        )
        layout_ctx = {**ctx, "subject": subject, "preheader": preheader}
        body_html = self._render(self.html_env, base + ".html", ctx)
        html = self._render(
            self.html_env, f"_layout/{locale}/email.html", {**layout_ctx, "body": Markup(body_html)}
        )
        body_text = self._render(self.text_env, base + ".txt", ctx)
        text = self._render(
            self.text_env, f"_layout/{locale}/email.txt", {**layout_ctx, "body": body_text.strip()}
        )
        try:
            html = css_inline.inline(html)
        except ValueError as exc:
            raise RenderError(f"{base}.html: CSS could not be inlined: {exc}") from None
        html, in_html = rewrite_html(html, links)
        text, in_text = rewrite_text(_tidy_text(text), links)
        return RenderedEmail(
            subject=subject,
            preheader=preheader,
            html=html,
            text=text,
            links=tuple({**in_html, **in_text}.items()),
        )

    def sms(
        self,
        campaign: Campaign,
        step: Step,
        recipient: Recipient,
        links: Links,
        show_stop_help: bool,
        first_text: bool = False,
    ) -> str:
        return self.sms_with_links(campaign, step, recipient, links, show_stop_help, first_text)[0]

    def sms_with_links(
        self,
        campaign: Campaign,
        step: Step,
        recipient: Recipient,
        links: Links,
        show_stop_help: bool,
        first_text: bool = False,
    ) -> tuple[str, dict[str, str]]:
        """The text, and {link id: URL} of the links it sends through our redirect."""
        ctx = self.context(campaign, step, recipient, links)
        ctx["care"] = {k: to_gsm7(v) for k, v in ctx["care"].items()}
        base = f"{campaign.templates_at}/{ctx['locale']}/{step.template}.sms.txt"
        body = _one_line(self._render(self.text_env, base, ctx))
        wrapped = self._render(
            self.text_env,
            f"_layout/{ctx['locale']}/sms.txt",
            {
                "brand": self.sender.brand,
                "body": body,
                "show_stop_help": show_stop_help,
                "first_text": first_text,
            },
        )
        return rewrite_text(_one_line(wrapped), links)

    def _render_string(self, source: str, ctx: dict, name: str) -> str:
        try:
            return self._compiled(source).render(**ctx)
        except jinja2.UndefinedError as exc:
            raise RenderError(f"{name}: undefined variable: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"{name}: {exc}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as exc:
            raise RenderError(f"{name}: {type(exc).__name__}: {exc}") from None


def _question(step: Step, links: Links) -> dict | None:
    q = step.question
    if q is None:
        return None
    return {
        "low": q.low,
        "high": q.high,
        "answers": [{"value": v, "url": u} for v, u in zip(q.values, links.answers, strict=False)],
    }


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _tidy_text(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
