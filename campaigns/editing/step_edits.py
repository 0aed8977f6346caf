"""A step's fields, and the campaign's send window, edited in a bundle's files the way a
marketer would edit them by hand:

    step_fields(bundle, campaign, key)        -> StepEdit   (what the editor's form shows)
    apply_step_edit(bundle, key, edit, shared) -> Bundle    (or EditError, field by field)
    apply_window_edit(bundle, edit, shared)    -> Bundle

The definition is rewritten with ruamel's round trip (as `drip campaigns review` signs a
file: campaigns/content/review.py), so every comment, blank line, quote and the order of
keys stay as they were; only the values edited change. A step's copy is its subject and
preheader per locale and its template files (`<locale>/<template>.html`, `.txt`,
`.sms.txt`). A step's conditions (`if`, `unless`) and wait (`wait_for`) are edited as small
YAML fields, checked by the file's own schema (campaigns.sequences.conditions). Variants
are not edited here (the editor shows them read-only); adding, removing and moving steps
is campaigns.editing.step_order.

An edit is checked before it is kept: each field on its own (a delay like "2d", known
channels and locales, a size cap, no control characters), then the whole file as a worker
would read it (campaigns.sequences.bundles.parse_bundle). A refused edit raises EditError
with a message per field and changes nothing; the caller shows the typed text again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString

from campaigns.content.review import _dump, _round_tripper
from campaigns.sequences.bundles import Bundle, parse_bundle
from campaigns.sequences.campaign import Campaign, DefinitionError, Step, template_files
from campaigns.sequences.delays import parse_delay
from campaigns.sequences.windows import DAYS
from campaigns.states import CHANNELS, Channel
from campaigns.text import UncleanText, clean_text

# One field of the editor (a subject, a template body): a lesson is a few KB, the longest
# shipped one under 10 KB.
MAX_FIELD_BYTES = 100_000
MAX_LINE = 500  # a subject or preheader is one line
# Which file of a step's copy a body field holds, by its suffix.
BODY_KINDS = {
    ".html": "email HTML",
    ".txt": "email text",
    ".sms.txt": "text message",
}
GENERAL = "general"


class EditError(ValueError):
    """An edit refused; `fields` maps a field name (delay, channels, fallback,
    subject.en, body.en/welcome.html, window, general) to what is wrong with it."""

    def __init__(self, fields: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


# The branching fields, as the file names them, and where each goes in a step written
# without it (after the first of these it has).
BRANCH_FIELDS = {
    "wait_for": ("delay", "key"),
    "if": ("wait_for", "delay", "key"),
    "unless": ("if", "wait_for", "delay", "key"),
}


@dataclass
class StepEdit:
    delay: str  # "" when the step waits for an event instead (wait_for)
    channels: list[str]
    fallback: str  # "" or "sms"
    subject: dict[str, str] = field(default_factory=dict)  # locale -> text
    preheader: dict[str, str] = field(default_factory=dict)
    bodies: dict[str, str] = field(default_factory=dict)  # "en/welcome.html" -> text
    # "if", "unless", "wait_for" -> the YAML typed, like {opened: diagnosis} ("" removes it)
    branch: dict[str, str] = field(default_factory=dict)


@dataclass
class WindowEdit:
    days: list[str]
    start: str
    end: str


def body_names(bundle: Bundle, campaign: Campaign, step: Step) -> list[str]:
    """Every template file a step's copy may have, per locale: the email's two and the
    text's one, whichever channels it sends on now (a channel added needs its file)."""
    return [
        f"{locale}/{step.template}{suffix}" for locale in campaign.locales for suffix in BODY_KINDS
    ]


def sent_names(campaign: Campaign, step: Step) -> set[str]:
    """The files the step sends from with its channels as they are."""
    return {
        f"{locale}/{name}"
        for locale in campaign.locales
        for channel in step.sends_on
        for name in template_files(step.template, channel)
    }


def kind_of(name: str) -> str:
    """The body's kind by its file name; "other" for a name that is none of them (a
    field a form made up: it is refused as not one of the step's files)."""
    return next(
        (k for s, k in sorted(BODY_KINDS.items(), key=lambda i: -len(i[0])) if name.endswith(s)),
        "other",
    )


def step_fields(bundle: Bundle, campaign: Campaign, key: str) -> StepEdit:
    step = campaign.step(key)
    if step is None:
        raise EditError({GENERAL: f"{campaign.key} has no step {key!r}"})
    raw = _raw_step(bundle.definition, key)
    return StepEdit(
        delay="" if "delay" not in raw else str(raw["delay"]),
        branch={name: flow_text(raw.get(name)) for name in BRANCH_FIELDS},
        channels=[str(c) for c in step.channels],
        fallback=step.fallback or "",
        subject={loc: step.subject.get(loc, "") for loc in campaign.locales},
        preheader={loc: step.preheader.get(loc, "") for loc in campaign.locales},
        bodies={n: bundle.templates.get(n, "") for n in body_names(bundle, campaign, step)},
    )


def flow_text(value) -> str:
    """A condition or wait as one line of YAML, as the file would write it."""
    if value is None:
        return ""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=4096).strip()


def _branch_value(typed: str):
    """The typed YAML read as data (None when empty); ValueError when it is not YAML."""
    if not typed.strip():
        return None
    try:
        return yaml.safe_load(typed)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "cannot be read"
        raise ValueError(f"not YAML ({problem}): write it like {{opened: welcome}}") from None


def _raw_step(definition: str, key: str) -> dict:
    data = yaml.safe_load(definition) or {}
    return next((s for s in data.get("steps") or [] if s.get("key") == key), {})


def _check_text(errors: dict, name: str, value: str, *, multiline: bool) -> None:
    if len(value.encode("utf-8")) > MAX_FIELD_BYTES:
        errors[name] = f"longer than {MAX_FIELD_BYTES // 1000} KB"
        return
    try:
        clean_text(value, name, max_len=None if multiline else MAX_LINE, multiline=multiline)
    except UncleanText as exc:
        errors[name] = str(exc).split(": ", 1)[-1]


def _checked(edit: StepEdit, campaign: Campaign, step: Step) -> dict[str, str]:
    errors: dict[str, str] = {}
    if edit.delay.strip():
        try:
            parse_delay(edit.delay)
        except ValueError as exc:
            errors["delay"] = str(exc)
    for name, typed in edit.branch.items():
        if name not in BRANCH_FIELDS:
            errors[GENERAL] = f"unknown field {name!r}"
            continue
        _check_text(errors, name, typed, multiline=False)
        if name in errors:
            continue
        try:
            value = _branch_value(typed)
        except ValueError as exc:
            errors[name] = str(exc)
            continue
        if value is not None and not isinstance(value, dict):
            errors[name] = "write it as a mapping in braces, like {opened: welcome}"
    waits = edit.branch.get("wait_for", "").strip()
    if edit.delay.strip() and waits:
        errors.setdefault(
            "wait_for",
            "give a delay or a wait, not both (a wait's at_most is the step's delay): "
            "empty one of them",
        )
    elif not edit.delay.strip() and not waits:
        errors.setdefault("delay", "give a delay (like 2d) or a wait (wait_for)")
    unknown = [c for c in edit.channels if c not in CHANNELS]
    if unknown:
        errors["channels"] = f"unknown channel {', '.join(map(repr, unknown))} (email, sms)"
    elif not edit.channels:
        errors["channels"] = "a step sends on at least one channel"
    if edit.fallback not in ("", Channel.SMS):
        errors["fallback"] = "the fallback is a text (sms) or none"
    elif edit.fallback and edit.fallback in edit.channels:
        errors["fallback"] = "a fallback is another channel than the step's own"
    for part in ("subject", "preheader"):
        for loc, text in getattr(edit, part).items():
            if loc not in campaign.locales:
                errors[f"{part}.{loc}"] = (
                    f"unknown locale {loc!r} (the course has {', '.join(campaign.locales)})"
                )
                continue
            _check_text(errors, f"{part}.{loc}", text, multiline=False)
    allowed = {
        f"{loc}/{step.template}{suffix}" for loc in campaign.locales for suffix in BODY_KINDS
    }
    for name, text in edit.bodies.items():
        if name not in allowed:
            errors[f"body.{name}"] = f"not a template file of step {step.key}"
            continue
        _check_text(errors, f"body.{name}", text, multiline=True)
    return errors


def _styled(old, new: str):
    """`new` written as `old` was (double-quoted stays double-quoted)."""
    return type(old)(new) if isinstance(old, ScalarString) else new


def _set_localized(node: CommentedMap, part: str, values: dict[str, str], locales) -> None:
    current = node.get(part)
    wanted = {loc: values.get(loc, "") for loc in locales}
    if not any(wanted.values()):
        if part in node:
            del node[part]
        return
    if isinstance(current, str) and len(set(wanted.values())) == 1:
        node[part] = _styled(current, next(iter(wanted.values())))
        return
    if isinstance(current, CommentedMap):
        for loc, text in wanted.items():
            if text:
                current[loc] = _styled(current.get(loc), text)
            elif loc in current:
                del current[loc]
        return
    sample = current if isinstance(current, str) else None
    mapping = CommentedMap((loc, _styled(sample, t)) for loc, t in wanted.items() if t)
    if part in node:
        node[part] = mapping
    else:
        _insert_after(node, part, mapping, ("preheader", "subject", "template"))


def _insert_after(node: CommentedMap, key: str, value, after: tuple[str, ...]) -> None:
    keys = list(node)
    at = next((keys.index(k) + 1 for k in after if k in keys), len(keys))
    node.insert(at, key, value)


def _replace_seq(seq, values: list[str]):
    if isinstance(seq, CommentedSeq):
        del seq[:]
        seq.extend(values)
        return seq
    new = CommentedSeq(values)
    new.fa.set_flow_style()
    return new


def _rewrite(definition: str, change) -> str:
    rt = _round_tripper(definition)
    data = rt.load(definition)
    change(data)
    return _dump(rt, data)


def _parsed(bundle: Bundle, shared: Path, key: str | None) -> None:
    """The edited files read as a worker would: refused whole when they do not."""
    try:
        parse_bundle(bundle, shared)
    except DefinitionError as exc:
        raise EditError(_by_field(exc.problems, key)) from None


def _by_field(problems: list[str], key: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for problem in problems:
        found = re.search(r"\((\w+)\) field ([\w.]+): (.*)", problem)
        if found and found[1] == key:
            name = found[2].split(".")[0]
            name = "window" if name == "send_window" else name
            out[name] = (out.get(name, "") + " " + found[3]).strip()
        elif "field send_window" in problem:
            out["window"] = (out.get("window", "") + " " + problem.split(": ")[-1]).strip()
        else:
            out[GENERAL] = (out.get(GENERAL, "") + " " + problem.split(": ", 1)[-1]).strip()
    return out


def apply_step_edit(bundle: Bundle, key: str, edit: StepEdit, shared: Path) -> Bundle:
    try:
        campaign = parse_bundle(bundle, shared)
    except DefinitionError as exc:
        raise EditError({GENERAL: "; ".join(exc.problems)}) from None
    step = campaign.step(key)
    if step is None:
        raise EditError({GENERAL: f"{campaign.key} has no step {key!r}"})
    errors = _checked(edit, campaign, step)
    if errors:
        raise EditError(errors)

    def change(data) -> None:
        node = next(s for s in data["steps"] if s.get("key") == key)
        _set_timing(node, edit)
        for name, typed in edit.branch.items():
            _set_branch(node, name, typed)
        if list(node.get("channels") or []) != edit.channels:
            node["channels"] = _replace_seq(node.get("channels"), edit.channels)
        if edit.fallback and node.get("fallback") != edit.fallback:
            if "fallback" in node:
                node["fallback"] = edit.fallback
            else:
                _insert_after(node, "fallback", edit.fallback, ("channels",))
        elif not edit.fallback and "fallback" in node:
            del node["fallback"]
        for part in ("subject", "preheader"):
            values = getattr(edit, part)
            if values and values != {
                loc: getattr(step, part).get(loc, "") for loc in campaign.locales
            }:
                _set_localized(node, part, values, campaign.locales)

    definition = _rewrite(bundle.definition, change)
    templates = dict(bundle.templates)
    for name, text in edit.bodies.items():
        if name in templates or text.strip():
            templates[name] = text
    edited = bundle.replace(definition=definition, templates=templates)
    _parsed(edited, shared, key)
    return edited


def _set_timing(node: CommentedMap, edit: StepEdit) -> None:
    """The delay, in the place of the wait it replaces (or the other way round)."""
    delay = edit.delay.strip()
    if not delay:
        if "delay" in node and edit.branch.get("wait_for", "").strip():
            _swap(node, "delay", "wait_for", _flow(edit.branch["wait_for"]))
        return
    if "delay" in node:
        if str(node["delay"]) != delay:
            node["delay"] = _styled(node["delay"], delay)
    elif "wait_for" in node:
        _swap(node, "wait_for", "delay", delay)
    else:
        _insert_after(node, "delay", delay, ("key",))


def _swap(node: CommentedMap, old: str, new: str, value) -> None:
    node.insert(list(node).index(old), new, value)
    del node[old]


def _flow(typed: str):
    """The typed YAML as ruamel reads it: a flow mapping stays one line."""
    rt = _round_tripper(typed)
    return rt.load(typed)


def _set_branch(node: CommentedMap, name: str, typed: str) -> None:
    value = _branch_value(typed)
    if value is None:
        if name in node:
            del node[name]
        return
    if name in node:
        if flow_text(value) != flow_text(_plain(node[name])):
            node[name] = _flow(typed)
    else:
        _insert_after(node, name, _flow(typed), BRANCH_FIELDS[name])


def _plain(value):
    """ruamel's node as plain data, to compare with what was typed."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, str) else value


def apply_window_edit(bundle: Bundle, edit: WindowEdit, shared: Path) -> Bundle:
    errors = {}
    bad = [d for d in edit.days if d not in DAYS]
    if bad or not edit.days:
        errors["window"] = "pick at least one day, mon to sun"
    for name, value in (("start", edit.start), ("end", edit.end)):
        if not re.fullmatch(r"[0-9]{1,2}:[0-9]{2}", value.strip()):
            errors[f"window.{name}"] = f"{value!r} is not a time like 09:00"
    if errors:
        raise EditError(errors)
    days = [d for d in DAYS if d in edit.days]

    def change(data) -> None:
        window = data.get("send_window")
        if not isinstance(window, CommentedMap):
            window = CommentedMap()
            window.fa.set_flow_style()
            _insert_after(data, "send_window", window, ("locales", "name"))
        window["days"] = _replace_seq(window.get("days"), days)
        # Quoted when new: YAML 1.1 reads a bare 9:00 as a number of minutes.
        for name, value in (("start", edit.start), ("end", edit.end)):
            window[name] = _styled(window.get(name, DoubleQuotedScalarString("")), value.strip())

    edited = bundle.replace(definition=_rewrite(bundle.definition, change))
    _parsed(edited, shared, None)
    return edited
