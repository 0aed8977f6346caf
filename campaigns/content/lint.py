"""`drip campaigns lint`: every campaign, step, channel and locale, checked the way a
subscriber will receive it.

Each rule renders the step for sample subscribers (with and without a first name) and
inspects the result; nothing is sent. A finding names the file, the step, the channel
and locale, and what to change. Errors make the command exit non-zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from jinja2 import meta

from campaigns.audience.emergency import emergency_number
from campaigns.content.preview import sms_variants
from campaigns.content.readability import reading_level
from campaigns.content.rendering import Recipient, Renderer, RenderError, Sender
from campaigns.content.review import ReviewError, review_state
from campaigns.content.sms_text import non_gsm_characters, segments
from campaigns.links import Links, Signer, links_for, new_public_token
from campaigns.sequences.campaign import Campaign, DefinitionError, parse_campaign
from campaigns.states import Channel

MAX_SMS_SEGMENTS = 2
# A text carrying the warning signs (the help-now block) may take up to four: leaving a
# sign out to save a segment is the worse trade.
MAX_SAFETY_SMS_SEGMENTS = 4
SAFETY_PARTIAL = "help_now.sms.txt"
# Readers in these countries must each see their own number (911, 112, 000).
EMERGENCY_SAMPLES = ("US", "ES", "AU")
# /l/ is our redirect to every other page a lesson links to (tracked_links).
OUR_ROUTES = ("/m/", "/c/", "/p/", "/u/", "/o/", "/l/", "/a/")

# Naming a condition where others can read it (a lock screen, a shared inbox, a
# provider's logs) discloses health information; so does telling the reader they have it.
CONDITION_WORDS = {
    "en": [
        "osteoarthritis",
        "arthritis",
        "sciatica",
        "herniated",
        "hernia",
        "bursitis",
        "tendinitis",
        "tendonitis",
        "fracture",
        "degenerative",
        "rheumatoid",
        "disc disease",
        "slipped disc",
    ],
    "es": [
        "artrosis",
        "osteoartritis",
        "artritis",
        "ciática",
        "ciatica",
        "hernia",
        "herniado",
        "bursitis",
        "tendinitis",
        "fractura",
        "degenerativa",
        "reumatoide",
    ],
}
_EN = "|".join(CONDITION_WORDS["en"])
_ES = "|".join(CONDITION_WORDS["es"])
TELLING_THE_READER = {
    "en": [
        (
            rf"\byou (?:have|may have|might have|probably have|likely have|suffer from)"
            rf" (?:an? )?(?:\w+ ){{0,2}}(?:{_EN})\b"
        ),
        rf"\byour (?:\w+ )?(?:{_EN})\b",
        r"\byou(?:'re| are) (?:suffering|diagnosed)\b",
    ],
    "es": [
        rf"\b(?:tienes|padeces|sufres de) (?:una? )?(?:\w+ ){{0,2}}(?:{_ES})\b",
        rf"\btu (?:\w+ )?(?:{_ES})\b",
    ],
}
SAMPLE_NAMES = ("Maria-Fernanda", None)


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning | info
    file: str
    step: str
    channel: str
    locale: str
    message: str

    def __str__(self) -> str:
        where = " ".join(
            p for p in (self.step and f"step {self.step}", self.channel, self.locale) if p
        )
        return (
            f"{self.severity}: {self.file}: {where}: {self.message}"
            if where
            else f"{self.severity}: {self.file}: {self.message}"
        )


@dataclass
class LintContext:
    templates_dir: Path
    base_url: str
    brand: str
    postal_address: str
    today: date | None = None  # for the clinical review check; without it, not checked
    strict: bool = False  # a step not clinically reviewed is an error, not a warning
    # The deployment's care team (phone, hours) and default country, so the lint renders
    # what patients will read; None: the example ones.
    sender: Sender | None = None


def lint_folder(definitions_dir: Path, ctx: LintContext) -> list[Finding]:
    findings: list[Finding] = []
    files = sorted(definitions_dir.glob("*.yaml")) + sorted(definitions_dir.glob("*.yml"))
    if not files:
        return [Finding("error", str(definitions_dir), "", "", "", "no campaign files found")]
    parsed: list[Campaign] = []
    for path in files:
        try:
            campaign = parse_campaign(path, ctx.templates_dir)
        except DefinitionError as exc:
            findings += [
                Finding("error", path.name, "", "", "", p.split(": ", 1)[-1]) for p in exc.problems
            ]
            continue
        parsed.append(campaign)
        findings += lint_campaign(campaign, ctx)
    return findings + lint_triggers(parsed, {c.key for c in parsed})


def lint_triggers(campaigns: list[Campaign], keys: set[str]) -> list[Finding]:
    """A trigger (`enroll_on`) naming a campaign that is not among `keys` (the folder's, or
    the deployment's) never fires."""
    return [
        Finding(
            "error",
            c.source.name if c.source else c.key,
            "",
            "",
            "",
            f"enroll_on: {t.kind}: no campaign {t.source!r} in this folder",
        )
        for c in campaigns
        for t in c.enroll_on
        if t.kind != "event"
        and t.source not in keys
        and (t.kind, t.source) != ("call_requested", "any")
    ]


def lint_campaign(campaign: Campaign, ctx: LintContext) -> list[Finding]:
    renderer = Renderer(ctx.templates_dir, ctx.sender or Sender(ctx.brand, ctx.postal_address))
    out: list[Finding] = []
    for step in campaign.steps:
        out += _lint_copy(renderer, campaign, step, ctx)
    out += _lint_reviews(campaign, ctx, _file_of(campaign))
    return out


def lint_step(campaign: Campaign, key: str, ctx: LintContext) -> list[Finding]:
    """One step's findings, as `lint_campaign` gives them for it (its copy in every
    channel and locale, and its clinical review): what the workspace's editor shows beside
    a step's fields while it is typed, without rendering the whole course."""
    step = campaign.step(key)
    if step is None:
        return []
    renderer = Renderer(ctx.templates_dir, ctx.sender or Sender(ctx.brand, ctx.postal_address))
    reviews = [f for f in _lint_reviews(campaign, ctx, _file_of(campaign)) if f.step == key]
    return _lint_copy(renderer, campaign, step, ctx) + reviews


def _file_of(campaign: Campaign) -> str:
    return campaign.source.name if campaign.source else campaign.key


def _lint_copy(renderer, campaign: Campaign, step, ctx: LintContext) -> list[Finding]:
    """Every copy a step can send: each arm of an experiment is rendered and checked."""
    signer = Signer(b"lint")
    out: list[Finding] = []
    for version in step.versions:
        for locale in campaign.locales:
            label = f"{version.key} variant {version.variant}" if version.variant else version.key
            add = _collector(out, _file_of(campaign), label, locale)
            links = links_for(ctx.base_url, signer, new_public_token(), version.answer_values)
            if Channel.EMAIL in version.channels:
                _lint_email(renderer, campaign, version, locale, links, ctx, add)
            if Channel.SMS in version.sends_on:
                _lint_sms(renderer, campaign, version, locale, links, ctx, add)
    return out


def _lint_reviews(campaign: Campaign, ctx: LintContext, file: str) -> list[Finding]:
    """Each step's clinical review (campaigns/content/review.py): info when it holds, a
    warning (an error with `strict`) when the step was never reviewed, its copy changed
    since, or the review is over a year old. Needs `ctx.today`."""
    out: list[Finding] = []
    if ctx.today is None:
        return out

    def add(severity: str, step: str, message: str) -> None:
        out.append(Finding(severity, file, step, "", "", f"clinical review: {message}"))

    reviewed = 0
    for step in campaign.steps:
        try:
            state = review_state(campaign, step, ctx.templates_dir, ctx.today)
        except ReviewError as exc:
            add("error", step.key, str(exc))
            continue
        if state.ok:
            reviewed += 1
            add("info", step.key, state.sentence)
        else:
            sign = f"drip campaigns review {campaign.key} {step.key} --by 'Name, credential'"
            add("error" if ctx.strict else "warning", step.key, f"{state.sentence}; sign: {sign}")
    add("info", "", f"{reviewed} of {len(campaign.steps)} steps reviewed and unchanged")
    return out


def _collector(out: list[Finding], file: str, step: str, locale: str):
    def add(severity: str, channel: str, message: str) -> None:
        out.append(Finding(severity, file, step, channel, locale, message))

    return add


def _lint_email(renderer, campaign, step, locale, links: Links, ctx, add) -> None:
    rendered = []
    for name in SAMPLE_NAMES:
        try:
            rendered.append(renderer.email(campaign, step, Recipient(name, locale), links))
        except RenderError as exc:
            add("error", Channel.EMAIL, str(exc))
            return
    email = rendered[0]
    if not step.preheader_for(locale, campaign.fallback_locale):
        add(
            "warning",
            Channel.EMAIL,
            "no preheader: mail apps will show the first line of the body instead",
        )
    for label, text in (("subject", email.subject), ("preheader", email.preheader)):
        for msg in _health_detail(text, locale, strict=True):
            add("error", Channel.EMAIL, f"{label} {msg}")
    for msg in _health_detail(email.text, locale, strict=False):
        add("error", Channel.EMAIL, f"body {msg}")
    required = {
        "unsubscribe link": links.unsubscribe,
        "preferences link": links.preferences,
        "request-a-call link": links.contact,
        "postal address": ctx.postal_address,
        "why-you-get-this line (campaign name)": campaign.name_for(locale),
    }
    for part, needle in required.items():
        for kind, body in (("HTML", email.html), ("text", email.text)):
            if needle not in body:
                add("error", Channel.EMAIL, f"{kind} part is missing the {part}")
    # A check-in question (`asks`) is answered by its links: every value, in both parts.
    for kind, body in (("HTML", email.html), ("text", email.text)):
        missing = [
            str(v)
            for v, url in zip(step.answer_values, links.answers, strict=True)
            if url not in body
        ]
        if missing:
            add(
                "error",
                Channel.EMAIL,
                f"{kind} part is missing the answer links for {', '.join(missing)}",
            )
    for url in re.findall(r'href="([^"]+)"', email.html) + re.findall(r"https?://\S+", email.text):
        if not _ours(url, ctx.base_url):
            add("error", Channel.EMAIL, f"link {url} does not lead to one of our routes")
    # Pages the lesson links to reach the reader through our redirect (tracked_links).
    for _, url in email.links:
        if not url.lower().startswith("https://"):
            add("warning", Channel.EMAIL, f"link {url} is not https: browsers warn readers")
    _lint_emergency_number(
        lambda r: _email_parts(renderer.email(campaign, step, r, links)),
        locale,
        Channel.EMAIL,
        add,
        required=True,
    )
    body_text = email.text.split("\n--\n")[0]
    reading = reading_level(body_text, locale)
    add(
        "info" if reading.ok else "error",
        Channel.EMAIL,
        f"reading level: {reading.measure} {reading.score}"
        + ("" if reading.ok else " (too hard: aim for 8th grade or below)"),
    )


def _lint_sms(renderer, campaign, step, locale, links: Links, ctx, add) -> None:
    for text_only in sms_variants(step):
        _lint_text(renderer, campaign, step, locale, links, ctx, add, text_only)


def _lint_text(renderer, campaign, step, locale, links: Links, ctx, add, text_only) -> None:
    channel = Channel.SMS if not text_only else f"{Channel.SMS} (text only)"
    limit = (
        MAX_SAFETY_SMS_SEGMENTS
        if _includes(
            renderer, f"{campaign.templates_at}/{locale}/{step.template}.sms.txt", SAFETY_PARTIAL
        )
        else MAX_SMS_SEGMENTS
    )
    # Only the first step's text can open a course; it also says what texts cost.
    firsts = ((True, True),) if step.index == 0 else ()
    for show, first in (*firsts, (True, False), (False, False)):
        for name in SAMPLE_NAMES:
            recipient = Recipient(name, locale, text_only=text_only)
            try:
                text = renderer.sms(
                    campaign, step, recipient, links, show_stop_help=show, first_text=first
                )
            except RenderError as exc:
                add("error", channel, str(exc))
                return
            bad = non_gsm_characters(text)
            if bad:
                add(
                    "error",
                    channel,
                    "characters outside GSM-7 force UCS-2 (70 a segment): "
                    + " ".join(repr(c) for c in bad),
                )
            encoding, count = segments(text)
            if count > limit:
                add(
                    "error",
                    channel,
                    f"{count} segments ({encoding}, {len(text)} characters); at most {limit}",
                )
            if not text.startswith(f"{ctx.brand}:"):
                add("error", channel, f"text must start with the brand ({ctx.brand}:)")
            if show and not _has_stop_help(text, locale):
                add("error", channel, "the STOP/HELP line is missing when it is due")
            if first and "rates may apply" not in text.lower() and "tarifas" not in text.lower():
                add("error", channel, "the first text must say message and data rates may apply")
            if links.read_online not in text and links.contact not in text:
                add("warning", channel, "no link to read the full lesson online")
            for url in re.findall(r"https?://\S+", text):
                if not _ours(url, ctx.base_url):
                    add("error", channel, f"link {url} does not lead to one of our routes")
            for msg in _health_detail(text, locale, strict=True):
                add("error", channel, msg)
            q = step.question
            if q is not None and not re.search(rf"(?<!\d){q.low}\D.*(?<!\d){q.high}(?!\d)", text):
                add(
                    "error", channel, f"a question's text must give its scale ({q.low} to {q.high})"
                )
    _lint_emergency_number(
        lambda r: [renderer.sms(campaign, step, replace(r, text_only=text_only), links, True)],
        locale,
        channel,
        add,
        required=False,
    )
    recipient = Recipient(SAMPLE_NAMES[0], locale, text_only=text_only)
    text = renderer.sms(campaign, step, recipient, links, True, first_text=step.index == 0)
    encoding, count = segments(text)
    add("info", channel, f"{count} segment(s), {encoding}, {len(text)} characters")


def _has_stop_help(text: str, locale: str) -> bool:
    help_words = ("HELP", "AYUDA") if locale.startswith("es") else ("HELP",)
    return "STOP" in text and any(w in text for w in help_words)


def _includes(renderer, name: str, partial: str) -> bool:
    """Whether template `name` includes `partial` (by file name), directly or not."""
    env, seen, todo = renderer.text_env, set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            tree = env.parse(env.loader.get_source(env, current)[0])
        except Exception:  # a broken template is reported by the rendering check
            return False
        for ref in meta.find_referenced_templates(tree):
            if ref and ref.rsplit("/", 1)[-1] == partial:
                return True
            if ref:
                todo.append(ref)
    return False


def _email_parts(email) -> list[str]:
    return [email.html, email.text]


def _numbers_only_in_words(text: str) -> str:
    """`text` without links and phone numbers, whose digits ("…a112b…" in a token, "000" in
    a care-team number) are not an emergency number told to the reader."""
    text = re.sub(r"(?:https?://|tel:)[^\s\"'<>]+", " ", text)
    return re.sub(r"\+\d[\d\s().-]{6,}\d", " ", text)


def _lint_emergency_number(render, locale: str, channel: str, add, required: bool) -> None:
    """Each reader is told their own country's number: rendered for people in three
    countries, a message carries each one's number (`required`: every email does, in
    its footer) and never another country's."""
    for country in EMERGENCY_SAMPLES:
        number = emergency_number(country, country)
        try:
            parts = render(Recipient(SAMPLE_NAMES[0], locale, country))
        except RenderError:
            return  # already reported
        for part in map(_numbers_only_in_words, parts):
            if required and not re.search(rf"(?<!\d){number}(?!\d)", part):
                add(
                    "error",
                    channel,
                    f"no emergency number for a reader in {country} ({number}): write "
                    "{{ emergency_number }}, never a literal number",
                )
                return
            others = {
                n
                for c in EMERGENCY_SAMPLES
                if (n := emergency_number(c, c)) != number and re.search(rf"(?<!\d){n}(?!\d)", part)
            }
            if others:
                add(
                    "error",
                    channel,
                    f"a reader in {country} is told {', '.join(sorted(others))}: the emergency "
                    "number is written as a literal; use {{ emergency_number }}",
                )
                return


def _ours(url: str, base_url: str) -> bool:
    if url.startswith("mailto:"):
        return True
    url = url.rstrip(".,)")
    return url.startswith(base_url) and url[len(base_url) :].startswith(OUR_ROUTES)


def _health_detail(text: str, locale: str, strict: bool) -> list[str]:
    lang = locale.split("-")[0]
    low = text.lower()
    found = []
    if strict:
        for word in CONDITION_WORDS.get(lang, []):
            if re.search(rf"\b{re.escape(word)}\b", low):
                found.append(
                    f"names a condition ({word!r}); keep subjects and texts to the general topic"
                )
    for pattern in TELLING_THE_READER.get(lang, []):
        match = re.search(pattern, low)
        if match:
            found.append(f"tells the reader what they have ({match.group(0)!r}); never diagnose")
    return found
