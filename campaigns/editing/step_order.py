"""A course's steps added, removed and moved in a bundle's files:

    add_step(bundle, new, shared)              -> Bundle   (or EditError, field by field)
    remove_step(bundle, key, shared)           -> Bundle
    move_step(bundle, key, direction, shared)  -> Bundle   (direction "up" or "down")

Like a step's fields (campaigns.editing.step_edits), the definition goes through ruamel's
round trip, so the other steps' lines, comments and layout stay as they were, and the
edited files are read whole as a worker would: a step another step's condition or wait
names cannot be removed, or moved below it, and the parser's message says why.

A new step's template is either one the course has (its files are shared) or a new
name, whose starter bodies are copied from the step it follows (or the first step that
sends on that channel), so the lint has a footer and warning signs to check from the
first save; the marketer then writes its own copy in the step's form.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from campaigns.editing.step_edits import GENERAL, EditError, _check_text, _parsed, _rewrite
from campaigns.sequences.bundles import Bundle, parse_bundle
from campaigns.sequences.campaign import Campaign, DefinitionError, template_files
from campaigns.sequences.delays import parse_delay
from campaigns.states import CHANNELS, Channel

KEY = re.compile(r"[a-z][a-z0-9_]{0,62}")  # the parser's step key
TEMPLATE = re.compile(r"[a-z0-9_][a-z0-9_\-]{0,62}")


@dataclass
class NewStep:
    key: str
    after: str  # the step it follows; "" for the start of the course
    delay: str
    channels: list[str]
    template: str
    subject: dict[str, str] = field(default_factory=dict)  # locale -> text
    preheader: dict[str, str] = field(default_factory=dict)


def _spaced(steps: CommentedSeq, blank) -> None:
    """The blank line between steps, as the file had it, after steps were added, removed or
    moved: ruamel keeps a sequence's comments by position, so a step's own comment lines
    move with it (the caller swaps them) and only the blank lines are laid out again."""
    if blank is None:
        return
    for i in range(len(steps)):
        entry = steps.ca.items.setdefault(i, [None, [], None, None])
        lines = [t for t in (entry[1] or []) if t.value.strip("\n")]
        entry[1] = ([copy.copy(blank)] if i else []) + lines


def _blank(steps: CommentedSeq):
    """The file's blank line between steps, if it has them (None when steps touch)."""
    for entry in steps.ca.items.values():
        for token in entry[1] or []:
            if token.value == "\n":
                return token
    return None


def _campaign(bundle: Bundle, shared: Path) -> Campaign:
    try:
        return parse_bundle(bundle, shared)
    except DefinitionError as exc:
        raise EditError({GENERAL: "; ".join(exc.problems)}) from None


def _checked(new: NewStep, campaign: Campaign) -> dict[str, str]:
    errors: dict[str, str] = {}
    keys = [s.key for s in campaign.steps]
    if not KEY.fullmatch(new.key):
        errors["key"] = (
            "a step key is lower-case letters, digits and _, starting with a letter (at most 63)"
        )
    elif new.key in keys:
        errors["key"] = f"the course already has a step {new.key!r}: pick a new key"
    if new.after and new.after not in keys:
        errors["after"] = f"{campaign.key} has no step {new.after!r}"
    try:
        parse_delay(new.delay)
    except ValueError as exc:
        errors["delay"] = str(exc)
    unknown = [c for c in new.channels if c not in CHANNELS]
    if unknown:
        errors["channels"] = f"unknown channel {', '.join(map(repr, unknown))} (email, sms)"
    elif not new.channels:
        errors["channels"] = "a step sends on at least one channel"
    if not TEMPLATE.fullmatch(new.template):
        errors["template"] = "a template name is lower-case letters, digits, _ and -"
    for part in ("subject", "preheader"):
        for loc, text in getattr(new, part).items():
            name = f"{part}.{loc}"
            if loc not in campaign.locales:
                errors[name] = (
                    f"unknown locale {loc!r} (the course has {', '.join(campaign.locales)})"
                )
            else:
                _check_text(errors, name, text, multiline=False)
            if part == "subject" and Channel.EMAIL in new.channels and not text.strip():
                errors.setdefault(name, "an email needs a subject in every language")
    return errors


def _starters(bundle: Bundle, campaign: Campaign, new: NewStep) -> dict[str, str]:
    """Files for a new template: each copied from the step it follows when that step sends
    on the channel, else from the first step that does."""
    after = campaign.step(new.after) if new.after else None
    out: dict[str, str] = {}
    for channel in new.channels:
        source = next(
            (s for s in ([after] if after else []) + list(campaign.steps) if channel in s.sends_on),
            None,
        )
        for loc in campaign.locales:
            for ours, theirs in zip(
                template_files(new.template, channel),
                template_files(source.template, channel) if source else (),
                strict=False,
            ):
                out[f"{loc}/{ours}"] = bundle.templates.get(f"{loc}/{theirs}", "")
    return out


def add_step(bundle: Bundle, new: NewStep, shared: Path) -> Bundle:
    campaign = _campaign(bundle, shared)
    errors = _checked(new, campaign)
    if errors:
        raise EditError(errors)
    exists = any(n.split("/", 1)[-1].split(".", 1)[0] == new.template for n in bundle.templates)
    templates = dict(bundle.templates)
    if not exists:
        templates.update(_starters(bundle, campaign, new))

    def change(data) -> None:
        steps = data["steps"]
        node = CommentedMap()
        node["key"] = new.key
        node["delay"] = new.delay.strip()
        channels = CommentedSeq(new.channels)
        channels.fa.set_flow_style()
        node["channels"] = channels
        node["template"] = new.template
        for part in ("subject", "preheader"):
            values = {loc: t for loc, t in getattr(new, part).items() if t.strip()}
            if values and Channel.EMAIL in new.channels:
                mapping = CommentedMap(values)
                mapping.fa.set_flow_style()
                node[part] = mapping
        at = 0 if not new.after else [s.get("key") for s in steps].index(new.after) + 1
        blank = _blank(steps)
        steps.insert(at, node)
        _spaced(steps, blank)

    edited = bundle.replace(definition=_rewrite(bundle.definition, change), templates=templates)
    _parsed(edited, shared, new.key)
    return edited


def remove_step(bundle: Bundle, key: str, shared: Path) -> Bundle:
    campaign = _campaign(bundle, shared)
    step = campaign.step(key)
    if step is None:
        raise EditError({GENERAL: f"{campaign.key} has no step {key!r}"})
    if len(campaign.steps) == 1:
        raise EditError({GENERAL: "a course keeps at least one step"})

    def change(data) -> None:
        steps = data["steps"]
        blank = _blank(steps)
        del steps[[s.get("key") for s in steps].index(key)]
        _spaced(steps, blank)

    templates = dict(bundle.templates)
    # Its template's files go with it unless another step (or an arm) still sends them.
    still = {s.template for s in campaign.steps if s.key != key} | {
        v.template for s in campaign.steps if s.key != key for v in s.variants if v.template
    }
    if step.template not in still:
        for name in list(templates):
            if name.split("/", 1)[-1].split(".", 1)[0] == step.template:
                del templates[name]
    edited = bundle.replace(definition=_rewrite(bundle.definition, change), templates=templates)
    _parsed(edited, shared, None)
    return edited


def move_step(bundle: Bundle, key: str, direction: str, shared: Path) -> Bundle:
    campaign = _campaign(bundle, shared)
    step = campaign.step(key)
    if step is None:
        raise EditError({GENERAL: f"{campaign.key} has no step {key!r}"})
    if direction not in ("up", "down"):
        raise EditError({GENERAL: "move a step up or down"})
    to = step.index + (-1 if direction == "up" else 1)
    if not 0 <= to < len(campaign.steps):
        raise EditError({GENERAL: f"step {key} is already the {'first' if to < 0 else 'last'}"})

    def change(data) -> None:
        steps = data["steps"]
        blank = _blank(steps)
        i = step.index
        steps[i], steps[to] = steps[to], steps[i]
        notes = steps.ca.items
        notes[i], notes[to] = (
            notes.get(to, [None, [], None, None]),
            notes.get(i, [None, [], None, None]),
        )
        _spaced(steps, blank)

    edited = bundle.replace(definition=_rewrite(bundle.definition, change))
    _parsed(edited, shared, key)
    return edited
