"""Clinical review as data: who reviewed a step's copy, when, and whether it still holds.

A step in a campaign file may carry

    review: {by: "Ana Ruiz, PT", date: 2026-11-28, copy: "sha256:1a2b3c4d5e6f7a8b"}

`copy` is the fingerprint of the step's copy as it was reviewed: its subject and
preheader in every locale, and the source of every template file it sends in every
locale and channel, with the templates those include (shared partials in
`templates/_partials/<locale>/`), followed recursively. Layouts (`templates/_layout/`)
are not part of a step's copy: they carry the footer, which lint checks on its own.
A step with an experiment's `variants` has every arm's copy in its fingerprint too (each
arm's subject, preheader and templates): an arm goes to patients like any copy, so one
review signs them all. A step without variants has the fingerprint it always had.
Any edit of that copy changes the fingerprint, so the step reads as changed since its
review, which counts as unreviewed.

    fingerprint(campaign, step, templates_dir)           -> "sha256:<16 hex>"
    review_state(campaign, step, templates_dir, today)   -> ReviewState
    review_rows(campaign, templates_dir, today)          -> one StepReview per step
    campaign_reviews(registry, key, today)               -> the same for a loaded campaign
    record_reviews(path, templates_dir, keys, by, on, today) -> what was signed
                                                            (rewrites the file in place)

`today` is always handed in (from the caller's clock); nothing here reads the time.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from io import StringIO
from pathlib import Path

import jinja2
import yaml
from jinja2 import meta
from jinja2.loaders import split_template_path
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from campaigns.sequences.campaign import (
    Campaign,
    DefinitionError,
    Step,
    parse_campaign,
    template_files,
)
from campaigns.sequences.registry import Registry
from campaigns.text import UncleanText, clean_text

REVIEW_VALID_DAYS = 365
LAYOUT_TEMPLATES = "_layout/"
# A review dated a little ahead is a reviewer in a time zone east of the checking
# machine; further ahead it is a mistake, and is not counted.
FUTURE_SLACK = timedelta(days=1)

REVIEWED, CHANGED, NEVER, EXPIRED = "reviewed", "changed", "never", "expired"
LABELS = {
    REVIEWED: "reviewed",
    CHANGED: "changed since review",
    NEVER: "never reviewed",
    EXPIRED: "review over a year old",
}


class ReviewError(ValueError):
    """The copy of a step cannot be fingerprinted, or a review cannot be recorded."""


@dataclass(frozen=True)
class ReviewState:
    state: str  # reviewed | changed | never | expired
    by: str | None
    on: date | None
    sentence: str  # for people: "reviewed by Ana Ruiz, PT on 2026-11-28"

    @property
    def ok(self) -> bool:
        return self.state == REVIEWED

    @property
    def label(self) -> str:
        return LABELS[self.state]


def review_channels(step: Step) -> tuple[str, ...]:
    """The channels whose templates are part of a step's reviewed copy: the fallback's
    too, since a text-only reader gets the lesson from it."""
    return step.sends_on


def copy_templates(campaign: Campaign, step: Step, templates_dir: Path) -> list[str]:
    """Every template (by its name under templates_dir) that makes up the step's copy:
    its own files in every locale and channel, and what they include, recursively."""
    env = jinja2.Environment()  # only parses: nothing is rendered here
    pending = [
        f"{campaign.key}/{locale}/{name}"
        for template in dict.fromkeys(v.template for v in (step, *step.versions))
        for locale in campaign.locales
        for channel in review_channels(step)
        for name in template_files(template, channel)
    ]
    found: set[str] = set()
    while pending:
        name = pending.pop()
        if name in found or name.startswith(LAYOUT_TEMPLATES):
            continue
        found.add(name)
        source = _read(templates_dir, name).decode("utf-8")
        try:
            referenced = list(meta.find_referenced_templates(env.parse(source, name)))
        except jinja2.TemplateSyntaxError as exc:
            raise ReviewError(f"{name}:{exc.lineno}: syntax error: {exc.message}") from None
        if None in referenced:
            raise ReviewError(
                f"{name} includes a template by a computed name; name it literally"
                " so that its copy can be reviewed"
            )
        pending.extend(referenced)
    return sorted(found)


def fingerprint(campaign: Campaign, step: Step, templates_dir: Path) -> str:
    """ "sha256:" and 16 hex digits over the step's subject, preheader and templates."""
    digest = hashlib.sha256()

    def part(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    for locale in campaign.locales:
        part(f"subject/{locale}", step.subject_for(locale, campaign.fallback_locale).encode())
        part(f"preheader/{locale}", step.preheader_for(locale, campaign.fallback_locale).encode())
    for arm in step.versions if step.variants else ():
        for locale in campaign.locales:
            for kind in ("subject", "preheader"):
                text = getattr(arm, f"{kind}_for")(locale, campaign.fallback_locale)
                part(f"variant/{arm.variant}/{kind}/{locale}", text.encode())
            part(f"variant/{arm.variant}/template/{locale}", arm.template.encode())
    for name in copy_templates(campaign, step, templates_dir):
        part(f"template/{name}", _read(templates_dir, name))
    return "sha256:" + digest.hexdigest()[:16]


def _read(templates_dir: Path, name: str) -> bytes:
    try:
        path = Path(templates_dir).joinpath(*split_template_path(name))
        data = path.read_bytes()
        data.decode("utf-8")
    except (jinja2.TemplateNotFound, OSError):
        raise ReviewError(f"{name}: template not found") from None
    except UnicodeDecodeError:
        raise ReviewError(f"{name}: not UTF-8 text") from None
    return data


def review_state(campaign: Campaign, step: Step, templates_dir: Path, today: date) -> ReviewState:
    """Where the step's clinical review stands on `today`. ReviewError when its copy
    cannot be read (a missing or broken template)."""
    review = step.review
    if review is None:
        return ReviewState(NEVER, None, None, "never reviewed")
    by, on = review.by, review.on
    if on > today + FUTURE_SLACK:
        return ReviewState(
            NEVER, by, on, f"the review by {by} is dated {on}, in the future: not counted"
        )
    if review.copy != fingerprint(campaign, step, templates_dir):
        return ReviewState(CHANGED, by, on, f"copy changed since {by} reviewed it on {on}")
    age = (today - on).days
    if age > REVIEW_VALID_DAYS:
        return ReviewState(
            EXPIRED, by, on, f"reviewed by {by} on {on}, {age} days ago: over a year, review again"
        )
    return ReviewState(REVIEWED, by, on, f"reviewed by {by} on {on}")


@dataclass(frozen=True)
class StepReview:
    number: int
    step_key: str
    review: ReviewState | None  # None when the copy cannot be read: see problem
    problem: str | None = None


def review_rows(campaign: Campaign, templates_dir: Path, today: date) -> list[StepReview]:
    """Every step's review state, for a page or a report."""
    rows = []
    for step in campaign.steps:
        try:
            state = review_state(campaign, step, templates_dir, today)
        except ReviewError as exc:
            rows.append(StepReview(step.index + 1, step.key, None, str(exc)))
            continue
        rows.append(StepReview(step.index + 1, step.key, state))
    return rows


def campaign_reviews(registry: Registry, key: str, today: date) -> list[StepReview]:
    """The rows for a campaign of the registry; none for one it does not hold (a
    campaign known only from its history, or whose file is broken)."""
    try:
        campaign = registry.get(key)
    except DefinitionError:
        return []
    return review_rows(campaign, registry.templates_dir, today)


# --- recording a review in the campaign file -------------------------------------------


@dataclass(frozen=True)
class Signed:
    step_key: str
    by: str
    on: date
    copy: str
    previous: str | None  # the review it replaces, in words, if there was one


def check_reviewer(by: str) -> str:
    """The reviewer as "Name, credential": both parts given, on one line."""
    try:
        by = clean_text(by or "", "--by", max_len=200).strip()
    except UncleanText as exc:
        raise ReviewError(str(exc)) from None
    name, _, credential = by.partition(",")
    if not by:
        raise ReviewError("name the reviewer: --by 'Name, credential'")
    if not name.strip() or not credential.strip():
        raise ReviewError(f"{by!r}: give the reviewer as 'Name, credential' (e.g. 'Ana Ruiz, PT')")
    return by


def record_reviews(
    path: Path, templates_dir: Path, step_keys: list[str], by: str, on: date, today: date
) -> list[Signed]:
    """Sign the named steps (every step when none is named) of the campaign file at
    `path`: write each one's `review` with the fingerprint of its copy now. The rest of
    the file, comments and layout included, is kept byte for byte; if that cannot be
    done, nothing is written."""
    by = check_reviewer(by)
    if on > today:
        raise ReviewError(f"the review date {on} is in the future (today is {today})")
    try:
        campaign = parse_campaign(path, templates_dir)
    except DefinitionError as exc:
        raise ReviewError(str(exc)) from None
    unknown = [k for k in step_keys if campaign.step(k) is None]
    if unknown:
        raise ReviewError(
            f"{campaign.key} has no step {', '.join(map(repr, unknown))}"
            f" (its steps: {', '.join(s.key for s in campaign.steps)})"
        )
    wanted = set(step_keys) or {s.key for s in campaign.steps}
    steps = [s for s in campaign.steps if s.key in wanted]
    copies = {s.key: fingerprint(campaign, s, templates_dir) for s in steps}

    text = path.read_text(encoding="utf-8")
    new_text = _with_reviews(text, {k: (by, on, c) for k, c in copies.items()})
    if not _only_reviews_differ(text, new_text):
        raise ReviewError(
            f"{path.name}: cannot add the review without changing other parts of the file's"
            " layout; add it by hand under each step:\n"
            + "\n".join(f"  {k}: review: {_flow(by, on, c)}" for k, c in copies.items())
        )
    _replace(path, new_text)
    try:  # read back as every worker will; never expected to fail
        check = parse_campaign(path, templates_dir)
        if any(check.step(k).review.copy != c for k, c in copies.items()):
            raise DefinitionError(["a review did not read back as written"])
    except DefinitionError as exc:
        _replace(path, text)
        raise ReviewError(
            f"{path.name}: left as it was: the signed file did not read back: {exc}"
        ) from None
    signed = []
    for s in steps:
        previous = (
            f"replaces the review by {s.review.by} on {s.review.on}"
            if s.review and (s.review.by, s.review.on, s.review.copy) != (by, on, copies[s.key])
            else None
        )
        signed.append(Signed(s.key, by, on, copies[s.key], previous))
    return signed


# Indentation (mapping, sequence, dash offset) ruamel must be told; the campaign files'
# own first, then other common ones. The first that re-writes the file unchanged is it.
LAYOUTS_TRIED = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 2), (4, 4, 0))


def _round_tripper(text: str) -> YAML:
    for mapping, sequence, offset in LAYOUTS_TRIED:
        rt = YAML()  # round trip: keeps comments, key order, quoting and flow style
        rt.preserve_quotes = True
        rt.width = 4096  # never re-wrap a long line
        rt.indent(mapping=mapping, sequence=sequence, offset=offset)
        rt.representer.ignore_aliases = lambda data: True  # one date, many steps: no &id001
        if _dump(rt, rt.load(text)) == text:
            break
    return rt  # the last one tried if none fits: the check after the edit refuses it


def _dump(rt: YAML, data) -> str:
    out = StringIO()
    rt.dump(data, out)
    return out.getvalue()


def _with_reviews(text: str, reviews: dict[str, tuple[str, date, str]]) -> str:
    rt = _round_tripper(text)
    data = rt.load(text)
    for step in data["steps"]:
        if step["key"] not in reviews:
            continue
        by, on, copy = reviews[step["key"]]
        values = {"by": DoubleQuotedScalarString(by), "date": on}
        values["copy"] = DoubleQuotedScalarString(copy)
        current = step.get("review")
        if isinstance(current, CommentedMap):
            current.update(values)  # in place: keeps its style and any comment on it
            continue
        review = CommentedMap(values)
        review.fa.set_flow_style()
        tail = None if "review" in step else _detach_trailing_comment(step)
        step["review"] = review
        if tail is not None:
            step.ca.items["review"] = [None, None, tail, None]
    return _dump(rt, data)


def _detach_trailing_comment(node):
    """Blank lines and comments after a block step belong to what follows it (the next
    step's comment). ruamel hangs them on the step's deepest last value; take them off
    it, leaving only an end-of-line comment, so the new last key can carry them."""
    while isinstance(node, CommentedMap | CommentedSeq) and not node.fa.flow_style():
        if not node:
            return None
        last = next(reversed(node)) if isinstance(node, CommentedMap) else len(node) - 1
        slot = 2 if isinstance(node, CommentedMap) else 0
        comments = node.ca.items.get(last)
        token = comments[slot] if comments else None
        if token is not None:
            head, _, rest = token.value.partition("\n")
            if not rest:
                return None
            token.value = head + "\n"
            return type(token)("\n" + rest, token.start_mark, token.end_mark)
        node = node[last]
    return None


def _flow(by: str, on: date, copy: str) -> str:
    return f"{{by: {json.dumps(by, ensure_ascii=False)}, date: {on}, copy: {json.dumps(copy)}}}"


_FLOW_REVIEW = re.compile(r",?\s*review:\s*\{[^{}]*\}")
_REVIEW_LINE = re.compile(r"\s*(?:review|by|date|copy):")


def _only_reviews_differ(old: str, new: str) -> bool:
    """True when `new` is `old` with review lines added or changed and nothing else:
    every comment, blank line, field and quote of the file is where it was."""

    def without_reviews(text: str):
        data = yaml.safe_load(text)
        for step in data["steps"]:
            step.pop("review", None)
        return data

    if without_reviews(old) != without_reviews(new):
        return False
    a, b = old.splitlines(), new.splitlines()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "delete" or (tag == "replace" and i2 - i1 != j2 - j1):
            return False
        if tag == "insert":
            if not all(_REVIEW_LINE.match(line) for line in b[j1:j2]):
                return False
            continue
        for before, after in zip(a[i1:i2], b[j1:j2], strict=True):
            same_flow = _FLOW_REVIEW.sub("", before) == _FLOW_REVIEW.sub("", after)
            both_review = _REVIEW_LINE.match(before) and _REVIEW_LINE.match(after)
            if not (same_flow or both_review):
                return False
    return True


def _replace(path: Path, text: str) -> None:
    """Write the whole file or nothing: a worker reading it never sees half of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
