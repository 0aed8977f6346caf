"""A lesson rendered once per shape, filled in per person: the same text a full render gives.

The "read online" page and the click redirect render a message's email again for every
request (about a millisecond each), and in a click storm every message is a different
one. But within one revision of a step, in one locale, what differs between two people is
only their first name and their message's links. So a `Shapes` renders each shape (the
key below) with sentinels in place of those values, twice with two different sentinel
sets, and keeps it only if the two renderings differ by the sentinels alone; a request
then gets the kept text with its own values put in.

Exact, or not used: a shape is kept only if the templates use the values in ways a
sentinel stands for (campaigns.content.shape_rules), and a value is filled in only if
every escape and rewrite leaves it as it is; in every other case the full render runs.

    key: campaign revision (the object), step and variant, locale, emergency number,
         whether the name is None, empty or set, which links are empty, how many answer
         links, text_only
"""

from __future__ import annotations

import contextlib
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, replace

from cachetools import TTLCache

from campaigns.audience.emergency import emergency_number
from campaigns.content.rendering import Recipient, RenderedEmail, Renderer, RenderError
from campaigns.content.shape_rules import (
    NotShapeable,
    link_fits,
    name_fits,
    templates_allow_shapes,
)
from campaigns.links import Links
from campaigns.sequences.campaign import Campaign, Step
from campaigns.states import Channel

LINK_FIELDS = ("read_online", "contact", "preferences", "unsubscribe", "open", "redirect")
MAX_ANSWERS = 32  # sentinels made for a question's answer links; more: full render
# Around a name in a text, a character that could join it into a URL (`http` + `s://`).
_JOINS = re.compile(r"[A-Za-z0-9:/]")


@dataclass(frozen=True)
class _Sentinels:
    name: str
    links: dict[str, str]
    answers: tuple[str, ...]

    @classmethod
    def make(cls, length: int, taken: set[str]) -> _Sentinels:
        def fresh() -> str:
            while True:
                word = "".join(secrets.choice(string.ascii_lowercase) for _ in range(length))
                if not any(word in t or t in word for t in taken):
                    taken.add(word)
                    return word

        return cls(
            name=fresh(),
            links={f: "https://" + fresh() for f in LINK_FIELDS},
            answers=tuple("https://" + fresh() for _ in range(MAX_ANSWERS)),
        )

    def all(self) -> list[str]:
        return [self.name, *self.links.values(), *self.answers]

    def stand_in(self, recipient: Recipient, links: Links) -> tuple[Recipient, Links]:
        """The recipient and links with a sentinel for every value that is set."""
        name = self.name if recipient.first_name else recipient.first_name
        fields = {f: self.links[f] if getattr(links, f) else "" for f in LINK_FIELDS}
        answers = self.answers[: len(links.answers)]
        return replace(recipient, first_name=name), Links(**fields, answers=answers)


@dataclass(frozen=True)
class _Shape:
    campaign: Campaign  # the revision it was rendered for (ids are reused after a free)
    # The email's html split at sentinels (odd items), or the error its rendering raises.
    html: tuple[str, ...] | None
    error: str | None
    targets: dict[str, str]  # link id -> URL: the email's, then (if asked) the texts'


# _shape's answer, when asked not to make one, for a shape not made yet.
_NOT_MADE = object()


class Shapes:
    """A per-process cache of rendered shapes. Thread-safe; an entry lives `ttl` seconds,
    so a template edited on disk shows within that time."""

    def __init__(self, renderer: Renderer, *, ttl: float = 120.0, max_entries: int = 2048):
        self.renderer = renderer
        self._cache: TTLCache = TTLCache(maxsize=max_entries, ttl=ttl, timer=time.monotonic)
        self._lock = threading.Lock()
        taken: set[str] = set()
        # Different lengths, so whatever depends on a value's length shows as a difference.
        self._a = _Sentinels.make(12, taken)
        self._b = _Sentinels.make(19, taken)
        self._a_words = self._a.all()
        self._a_to_b = dict(zip(self._a_words, self._b.all(), strict=True))
        self._a_find = _alternation(self._a_words)
        self._b_find = _alternation(self._b.all())

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    # ------------------------------------------------------------------ the API
    def email_html(self, campaign: Campaign, step: Step, recipient: Recipient, links: Links) -> str:
        """== renderer.email(campaign, step, recipient, links).html, always; RenderError as
        it would raise."""
        values = self._values(recipient, links)
        shape = (
            None if values is None else self._shape(campaign, step, recipient, links, texts=False)
        )
        if shape is None or _collides(shape, links):
            return self.renderer.email(campaign, step, recipient, links).html
        if shape.error is not None:
            raise RenderError(shape.error)
        return "".join(values[p] if i % 2 else p for i, p in enumerate(shape.html))

    def filled_html(
        self, campaign: Campaign, step: Step, recipient: Recipient, links: Links
    ) -> str | None:
        """email_html when a shape made before answers it (microseconds, fit to run on an
        event loop); None when it would take a render (a shape to make, or none to use).
        RenderError as email_html."""
        values = self._values(recipient, links)
        if values is None:
            return None
        shape = self._shape(campaign, step, recipient, links, texts=False, build=False)
        if shape is None or shape is _NOT_MADE or _collides(shape, links):
            return None
        if shape.error is not None:
            raise RenderError(shape.error)
        return "".join(values[p] if i % 2 else p for i, p in enumerate(shape.html))

    def filled_targets(
        self, campaign: Campaign, step: Step, recipient: Recipient, links: Links, *, texts: bool
    ) -> dict[str, str] | None:
        """targets when a shape made before answers them; None when it would take a render."""
        texts = texts and Channel.SMS in step.sends_on
        if self._values(recipient, links) is None:
            return None
        shape = self._shape(campaign, step, recipient, links, texts=texts, build=False)
        if shape is None or shape is _NOT_MADE or _collides(shape, links):
            return None
        return dict(shape.targets)

    def targets(
        self, campaign: Campaign, step: Step, recipient: Recipient, links: Links, *, texts: bool
    ) -> dict[str, str]:
        """== redirects.targets_in(renderer, campaign, step, recipient, links, texts=texts),
        always: {link id: URL} of the step's email and (`texts`) its texts."""
        texts = texts and Channel.SMS in step.sends_on
        values = self._values(recipient, links)
        shape = (
            None if values is None else self._shape(campaign, step, recipient, links, texts=texts)
        )
        if shape is None or _collides(shape, links):
            return full_targets(self.renderer, campaign, step, recipient, links, texts=texts)
        return dict(shape.targets)

    def shapeable(
        self, campaign: Campaign, step: Step, recipient: Recipient, links: Links, *, texts: bool
    ) -> bool:
        """True if a shape, not a full render, answers this request (for tests and figures)."""
        texts = texts and Channel.SMS in step.sends_on
        values = self._values(recipient, links)
        shape = (
            None if values is None else self._shape(campaign, step, recipient, links, texts=texts)
        )
        return shape is not None and not _collides(shape, links)

    # ------------------------------------------------------------------ filling in
    def _values(self, recipient: Recipient, links: Links) -> dict[str, str] | None:
        """{sentinel: the person's value}, or None if a value might not come out as it is."""
        values: dict[str, str] = {}
        name = recipient.first_name
        if name is not None and not isinstance(name, str):
            return None
        if name:
            if not name_fits(name) or self._a_find.search(name):
                return None
            values[self._a.name] = name
        if len(links.answers) > MAX_ANSWERS:
            return None
        pairs = [(self._a.links[f], getattr(links, f)) for f in LINK_FIELDS]
        pairs += list(zip(self._a.answers, links.answers, strict=False))
        for sentinel, url in pairs:
            if url:
                if not link_fits(url) or self._a_find.search(url):
                    return None
                values[sentinel] = url
        return values

    # ------------------------------------------------------------------ the cache
    def _shape(
        self,
        campaign: Campaign,
        step: Step,
        recipient: Recipient,
        links: Links,
        *,
        texts: bool,
        build: bool = True,
    ) -> _Shape | None:
        """The key's shape (None: it cannot have one), made now if need be; _NOT_MADE
        instead of making it when `build` is false."""
        name = recipient.first_name
        locale = campaign.locale_for(recipient.locale)
        key = (
            id(campaign),
            step.key,
            step.variant,
            step.template,
            step.index,
            step.subject_for(locale, campaign.fallback_locale),
            step.preheader_for(locale, campaign.fallback_locale),
            step.question,
            step.sends_on,
            locale,
            emergency_number(recipient.country, self.renderer.sender.default_country),
            None if name is None else bool(name),
            recipient.text_only,
            tuple(bool(getattr(links, f)) for f in LINK_FIELDS),
            len(links.answers),
            texts,
        )
        with self._lock:
            found = self._cache.get(key)
        if found is not None and found[0] is campaign:
            return found[1]
        if not build:
            return _NOT_MADE  # type: ignore[return-value]
        shape = self._build(campaign, step, recipient, links, texts=texts)
        with self._lock:
            self._cache[key] = (campaign, shape)
        return shape

    def _build(
        self, campaign: Campaign, step: Step, recipient: Recipient, links: Links, *, texts: bool
    ) -> _Shape | None:
        """The shape, or None if it cannot be trusted for this key."""
        if len(links.answers) > MAX_ANSWERS:
            return None
        try:
            self._check_templates(campaign, step, recipient, texts=texts)
            email = self._email_both(campaign, step, recipient, links)
            sms = self._texts_both(campaign, step, recipient, links) if texts else {}
        except NotShapeable:
            return None
        if isinstance(email, str):
            return _Shape(campaign, None, email, sms)
        html = tuple(self._a_find.split(email.html))
        return _Shape(campaign, html, None, {**dict(email.links), **sms})

    def _check_templates(
        self, campaign: Campaign, step: Step, recipient: Recipient, *, texts: bool
    ) -> None:
        r = self.renderer
        locale = campaign.locale_for(recipient.locale)
        base = f"{campaign.templates_at}/{locale}/{step.template}"
        fallback = campaign.fallback_locale
        strings = (step.subject_for(locale, fallback), step.preheader_for(locale, fallback))
        layout = f"_layout/{locale}"
        templates_allow_shapes(
            r.html_env, (f"{base}.html", f"{layout}/email.html"), strings, html=True
        )
        texts_at = [f"{base}.txt", f"{layout}/email.txt"]
        if texts:
            texts_at += [f"{base}.sms.txt", f"{layout}/sms.txt"]
        templates_allow_shapes(r.text_env, texts_at, (), html=False)

    def _email_both(
        self, campaign: Campaign, step: Step, recipient: Recipient, links: Links
    ) -> RenderedEmail | str:
        """The email with sentinels set A, if set B gives the same but for the sentinels
        (else NotShapeable); or the error message both raise."""
        a = self._email(campaign, step, *self._a.stand_in(recipient, links))
        b = self._email(campaign, step, *self._b.stand_in(recipient, links))
        if isinstance(a, str) or isinstance(b, str):
            if a != b or self._a_find.search(a) or self._b_find.search(b):
                raise NotShapeable("the renderings' errors differ")
            return a
        same = (
            self._swap(a.html) == b.html
            and self._swap(a.text) == b.text
            and self._plain_targets(dict(a.links), dict(b.links))
        )
        if not same or not _name_in_text_only(a.html, self._a.name):
            raise NotShapeable("the renderings differ")
        if not _name_stands_alone(a.text, self._a.name):
            raise NotShapeable("a name could join a URL")
        return a

    def _texts_both(
        self, campaign: Campaign, step: Step, recipient: Recipient, links: Links
    ) -> dict[str, str]:
        """The texts' link targets (as full_targets finds them), if they hold no value."""
        found: dict[str, str] = {}
        for text_only in (False, True):
            a = self._sms(campaign, step, *self._a.stand_in(recipient, links), text_only)
            b = self._sms(campaign, step, *self._b.stand_in(recipient, links), text_only)
            if (a is None) != (b is None):
                raise NotShapeable("one text rendering failed")
            if a is None or b is None:
                continue
            if self._swap(a[0]) != b[0] or not self._plain_targets(a[1], b[1]):
                raise NotShapeable("the texts differ")
            if not _name_stands_alone(a[0], self._a.name):
                raise NotShapeable("a name could join a URL")
            found.update(a[1])
        return found

    def _email(self, campaign: Campaign, step: Step, recipient: Recipient, links: Links):
        try:
            return self.renderer.email(campaign, step, recipient, links)
        except RenderError as exc:
            return str(exc)
        except Exception as exc:  # anything else: leave it to the full render to raise
            raise NotShapeable(f"rendering raised {type(exc).__name__}") from None

    def _sms(self, campaign, step, recipient, links, text_only: bool):
        try:
            return _text(self.renderer, campaign, step, recipient, links, text_only)
        except RenderError:
            return None
        except Exception as exc:
            raise NotShapeable(f"rendering raised {type(exc).__name__}") from None

    def _swap(self, text: str) -> str:
        return self._a_find.sub(lambda m: self._a_to_b[m.group(0)], text)

    def _plain_targets(self, a: dict[str, str], b: dict[str, str]) -> bool:
        """The same targets, none made of a person's value (a person-specific URL)."""
        return a == b and not any(
            self._a_find.search(u) or self._b_find.search(u) for u in a.values()
        )


def full_targets(
    renderer: Renderer,
    campaign: Campaign,
    step: Step,
    recipient: Recipient,
    links: Links,
    *,
    texts: bool,
) -> dict[str, str]:
    """{link id: URL} of the step's email and (`texts`) its texts, as the redirect finds
    them (campaigns.tracking.redirects.targets_in)."""
    targets: dict[str, str] = {}
    with contextlib.suppress(RenderError):
        targets.update(renderer.email(campaign, step, recipient, links).links)
    if texts and Channel.SMS in step.sends_on:
        for text_only in (False, True):
            with contextlib.suppress(RenderError):
                targets.update(_text(renderer, campaign, step, recipient, links, text_only)[1])
    return targets


def _text(renderer, campaign, step, recipient, links, text_only: bool) -> tuple[str, dict]:
    """The step's text in one of its two forms, and its link targets (as the redirect
    renders it: STOP/HELP shown, the first text's notice on the first step)."""
    return renderer.sms_with_links(
        campaign,
        step,
        replace(recipient, text_only=text_only),
        links,
        show_stop_help=True,
        first_text=step.index == 0,
    )


def _alternation(words: list[str]) -> re.Pattern:
    ordered = sorted(words, key=len, reverse=True)
    return re.compile("(" + "|".join(re.escape(w) for w in ordered) + ")")


def _collides(shape: _Shape, links: Links) -> bool:
    """A URL the lesson tracks that this message's links would leave alone: one of its
    own links, or one under its redirect (campaigns.content.tracked_links._tracked)."""
    own = links.own()
    return any(
        url in own or (links.redirect and url.startswith(links.redirect))
        for url in shape.targets.values()
    )


def _name_in_text_only(html: str, name: str) -> bool:
    """The name is in no tag: never in an attribute the link rewriter reads."""
    for found in re.finditer(re.escape(name), html):
        if html.rfind("<", 0, found.start()) > html.rfind(">", 0, found.start()):
            return False
    return True


def _name_stands_alone(text: str, name: str) -> bool:
    """Nothing around the name could join it into a URL the text rewriter would track."""
    for found in re.finditer(re.escape(name), text):
        before = text[found.start() - 1 : found.start()]
        after = text[found.end() : found.end() + 1]
        if _JOINS.match(before) or _JOINS.match(after):
            return False
    return True
