"""A campaign: the YAML file marketers edit, validated into typed objects (Campaign, Step).

A file under `campaigns/definitions/` describes one campaign:

    key: hip_and_back            # stable identifier, never reused for another campaign
    version: 3                   # bump when the sequence changes meaningfully
    name: Hip and back pain, a four-week course
    locales: [en, es]            # the first is the fallback
    send_window: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "19:00"}
    on_contact_request: continue # continue | pause | exit
    goal: {event: visit_booked, then: exit}  # optional; campaigns/sequences/journey.py
    enroll_on: [{completed: other_course, after: 14d}]  # optional triggers; journey.py too
    frequency_cap: {per_day: 1, per_week: 3}  # optional; overrides the settings (caps.py)
    steps:
      - key: welcome             # stable; enrolled subscribers follow steps by key
        delay: 0m                # after the previous step (after joining, for the first)
        channels: [email, sms]
        fallback: sms            # optional: sent on this channel instead when the person
                                 # can get the step on none of `channels` (text-only people)
        template: welcome        # templates/<campaign>/<locale>/welcome.{html,txt,sms.txt}
        subject: {en: "...", es: "..."}
        preheader: {en: "...", es: "..."}
        review: {by: "Ana Ruiz, PT", date: 2026-11-28, copy: "sha256:1a2b3c4d5e6f7a8b"}
      - key: welcome_by_text
        wait_for: {event: opened, step: welcome, at_most: 2d}   # instead of a delay
        if: {has_channel: [email, sms]}      # optional: when the step applies
        # asks: pain_score                   # optional: a check-in question (questions.py)
        unless: {opened: welcome}            # optional: when it does not
        channels: [sms]
        template: welcome

`if`, `unless` and `wait_for` are the branching vocabulary (campaigns/sequences/conditions.py).

Experiments (campaigns/sequences/experiments.py): a step may list `variants`, each a
name, a weight and what it changes (`template`, `subject`, `preheader`; the rest is the
step's own), and a campaign may keep a `holdout` share that is enrolled but not messaged:

    holdout: 10%
    steps:
      - key: welcome
        ...
        experiment: welcome_subject_1   # optional: the assignment's salt (default: the step key)
        variants:
          - {name: a, weight: 1}
          - {name: b, weight: 1, subject: {en: "...", es: "..."}, template: welcome_b}

`review` records who clinically reviewed the step's copy, when, and a fingerprint of
that copy (campaigns/content/review.py computes it; `drip campaigns review` writes it).
Its date is `date:`, not `on:`: YAML reads a bare `on` as true.

`parse_campaign` reports every problem with the file, the step and the field, so
`drip campaigns validate` can print them all at once. The loaded set of campaigns is
campaigns.sequences.registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from campaigns.sequences.caps import CapOverride, FrequencyCapSpec
from campaigns.sequences.conditions import (
    Branch,
    Condition,
    ConditionSpec,
    WaitFor,
    WaitForSpec,
)
from campaigns.sequences.delays import parse_delay
from campaigns.sequences.journey import (
    Goal,
    GoalSpec,
    Trigger,
    TriggerSpec,
    goal_of,
    goal_problems,
    trigger_problems,
    triggers_of,
)
from campaigns.sequences.questions import QUESTIONS, Question
from campaigns.sequences.windows import DAYS, Window
from campaigns.states import Channel

_KEY = r"^[a-z][a-z0-9_]{0,62}$"


class DefinitionError(ValueError):
    """One or more problems in sequence files; `problems` lists them one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _parse_hhmm(value: str) -> time:
    if value in ("24:00", "24"):
        return time(0, 0)
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", str(value).strip())  # ASCII digits
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"{value!r} is not a time like '09:00'")
    return time(int(match[1]), int(match[2]))


class SendWindowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = list(DAYS)
    start: str = "00:00"
    end: str = "24:00"

    @model_validator(mode="after")
    def _valid(self) -> SendWindowSpec:
        if not self.days:
            raise ValueError("days must name at least one day")
        start, end = _parse_hhmm(self.start), _parse_hhmm(self.end)
        if end != time(0, 0) and end <= start:
            raise ValueError("end must be later than start")
        return self

    def window(self) -> Window:
        return Window(
            frozenset(DAYS.index(d) for d in self.days),
            _parse_hhmm(self.start),
            _parse_hhmm(self.end),
        )


Localized = str | dict[str, str]
FINGERPRINT = r"^sha256:[0-9a-f]{16}$"


class ReviewSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    by: str = Field(min_length=1)
    on: date = Field(alias="date")
    fingerprint: str = Field(alias="copy", pattern=FINGERPRINT)

    @model_validator(mode="before")
    @classmethod
    def _no_yaml_booleans(cls, value):
        if isinstance(value, dict) and True in value:
            raise ValueError("write the review's date as `date:` (YAML reads a bare `on` as true)")
        return value

    @field_validator("by")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name the reviewer")
        return value.strip()


VARIANT_NAME = r"^[a-z][a-z0-9_]{0,19}$"


class VariantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=VARIANT_NAME)
    weight: float = Field(gt=0, le=1000)
    template: str | None = Field(None, pattern=r"^[a-z0-9_][a-z0-9_\-]*$")
    subject: Localized | None = None
    preheader: Localized | None = None


def _holdout_share(value) -> float:
    """`holdout: 10%` (or 0.1) as a share of 1; at most half of the people."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
        if not match:
            raise ValueError(f"{value!r} is not a share like '10%'")
        value = float(match[1]) / 100
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("give the share as a percentage, like '10%'")
    if not 0 <= value <= 0.5:
        raise ValueError("a holdout is between 0% and 50% of the people")
    return float(value)


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=_KEY)
    delay: str | int | None = None  # required unless the step has `wait_for`
    channels: list[Channel] = Field(min_length=1)
    # Only texts: a fallback email would need its own subject and footer checks, and
    # nobody without a phone but with a mailbox is short of a step that only texts.
    fallback: Literal[Channel.SMS] | None = None
    template: str = Field(pattern=r"^[a-z0-9_][a-z0-9_\-]*$")
    subject: Localized | None = None
    preheader: Localized | None = None
    topic: str | None = None  # for marketers' eyes only; never sent
    review: ReviewSpec | None = None
    # Branching (campaigns/sequences/conditions.py). `if` is a Python keyword: an alias.
    when: ConditionSpec | None = Field(None, alias="if")
    unless: ConditionSpec | None = None
    wait_for: WaitForSpec | None = None
    # Experiments (campaigns/sequences/experiments.py)
    variants: list[VariantSpec] | None = None
    experiment: str | None = Field(None, pattern=r"^[A-Za-z0-9_.\-]{1,63}$")

    @field_validator("variants")
    @classmethod
    def _two_named_variants(cls, value):
        if value is None:
            return value
        if len(value) < 2:
            raise ValueError("an experiment needs at least two variants")
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError("a variant name is used twice")
        return value

    # A check-in question the step asks (campaigns/sequences/questions.py): `pain_score`.
    asks: str | None = None

    @field_validator("asks")
    @classmethod
    def _known_question(cls, value):
        if value is not None and value not in QUESTIONS:
            raise ValueError(f"unknown question {value!r} (known: {', '.join(QUESTIONS)})")
        return value

    @field_validator("delay")
    @classmethod
    def _delay(cls, value):
        if value is not None:
            parse_delay(value)
        return value

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value):
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value

    @model_validator(mode="after")
    def _fallback_is_another_channel(self) -> StepSpec:
        if self.fallback is not None and self.fallback in self.channels:
            raise ValueError(f"fallback {self.fallback.value!r} is already one of the channels")
        return self

    @model_validator(mode="after")
    def _email_needs_subject(self) -> StepSpec:
        if Channel.EMAIL in self.channels and not self.subject:
            raise ValueError("an email step needs a subject")
        return self


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=_KEY)
    version: int = Field(ge=1)
    name: Localized = Field(min_length=1)
    description: str | None = None
    locales: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    send_window: SendWindowSpec = SendWindowSpec()
    on_contact_request: Literal["continue", "pause", "exit"] = "continue"
    goal: GoalSpec | None = None
    enroll_on: list[TriggerSpec] = Field(default_factory=list)
    reentry: bool = False
    frequency_cap: FrequencyCapSpec | None = None
    holdout: str | float = 0.0  # '10%': enrolled but never messaged, to compare with
    steps: list[StepSpec] = Field(min_length=1)

    @field_validator("holdout")
    @classmethod
    def _holdout(cls, value):
        return _holdout_share(value)

    @model_validator(mode="after")
    def _unique_steps(self) -> CampaignSpec:
        seen = set()
        for step in self.steps:
            if step.key in seen:
                raise ValueError(f"step key {step.key!r} is used twice")
            seen.add(step.key)
        return self


@dataclass(frozen=True)
class Review:
    """Who clinically reviewed a step's copy, on what day, and the copy's fingerprint then."""

    by: str
    on: date
    copy: str


@dataclass(frozen=True)
class Variant:
    """One arm of a step's experiment: what it changes of the step's copy."""

    name: str
    weight: float
    template: str | None = None
    subject: dict[str, str] | None = None
    preheader: dict[str, str] | None = None


@dataclass(frozen=True)
class Step:
    key: str
    index: int
    delay: timedelta
    channels: tuple[str, ...]
    template: str
    subject: dict[str, str]
    preheader: dict[str, str]
    topic: str | None
    fallback: str | None = None
    review: Review | None = None
    branch: Branch = Branch()  # if / unless / wait_for; empty for a plain step
    variants: tuple[Variant, ...] = ()  # an experiment's arms; empty for a plain step
    experiment: str | None = None  # the assignment's salt; None: the step key
    variant: str | None = None  # set on the copy `with_variant` returns
    question: Question | None = None  # `asks`: the check-in question the step asks

    def with_variant(self, name: str | None) -> Step:
        """The step as the arm `name` sends it: its template, subject and preheader over
        the step's own. The step itself for None or a name it no longer has (a promoted
        winner, a removed arm: the step's copy is then what goes, as after any edit)."""
        arm = next((v for v in self.variants if v.name == name), None)
        if arm is None:
            return self
        return replace(
            self,
            template=arm.template or self.template,
            subject={**self.subject, **(arm.subject or {})},
            preheader={**self.preheader, **(arm.preheader or {})},
            variant=arm.name,
        )

    @property
    def versions(self) -> tuple[Step, ...]:
        """Every copy the step can send: each arm's, or the step's own when it has none."""
        return tuple(self.with_variant(v.name) for v in self.variants) or (self,)

    @property
    def wait_for(self) -> WaitFor | None:
        return self.branch.wait_for

    @property
    def sends_on(self) -> tuple[str, ...]:
        """Every channel the step can go out on: its own, then its fallback."""
        return self.channels + ((self.fallback,) if self.fallback else ())

    def channels_for(self, reachable: list[str] | tuple[str, ...]) -> list[str]:
        """The channels this step goes out on for someone `reachable` on those channels:
        the step's own they can get, else its fallback if they can get that; for someone
        reachable on none, the step's own (the rows then record why nothing went)."""
        own = [c for c in self.channels if c in reachable]
        if own:
            return own
        if self.fallback and self.fallback in reachable:
            return [self.fallback]
        return list(self.channels)

    @property
    def answer_values(self) -> range:
        """The values its question's answer links stand for (none for a plain step)."""
        return self.question.values if self.question else range(0)

    def subject_for(self, locale: str, fallback: str) -> str:
        return self.subject.get(locale) or self.subject.get(fallback, "")

    def preheader_for(self, locale: str, fallback: str) -> str:
        return self.preheader.get(locale) or self.preheader.get(fallback, "")


@dataclass(frozen=True)
class Campaign:
    key: str
    version: int
    names: dict[str, str]  # per locale; subscribers see it in the footer
    description: str | None
    locales: tuple[str, ...]
    window: Window
    on_contact_request: str
    steps: tuple[Step, ...]
    source: Path | None = None
    goal: Goal | None = None
    enroll_on: tuple[Trigger, ...] = ()
    reentry: bool = False  # a trigger may enroll someone whose enrollment here has ended
    frequency_cap: CapOverride | None = None  # None: the settings' (campaigns/sequences/caps.py)
    holdout: float = 0.0  # share of enrollments kept from every message (experiments.py)
    # Where its templates are, under the templates folder: the key, or the folder of the
    # very revision it was parsed from (campaigns.sequences.deployed).
    template_root: str | None = None

    @property
    def templates_at(self) -> str:
        return self.template_root or self.key

    @property
    def fallback_locale(self) -> str:
        return self.locales[0]

    @property
    def name(self) -> str:
        return self.names.get(self.fallback_locale) or next(iter(self.names.values()))

    def name_for(self, locale: str) -> str:
        return self.names.get(locale) or self.name

    def step(self, key: str) -> Step | None:
        return next((s for s in self.steps if s.key == key), None)

    # Worked out once per loaded file (a claim asks for every due person).
    @cached_property
    def branches(self) -> bool:
        """Some step has a condition or a wait: claims read what they need to judge them."""
        return any(s.branch.conditional or s.wait_for for s in self.steps)

    @cached_property
    def waits(self) -> bool:
        return any(s.wait_for for s in self.steps)

    @cached_property
    def branch_needs(self) -> dict[str, frozenset[str]]:
        """For a cursor waiting on each step (by key), what must be read to claim it:
        what the step's conditions test, and, when the next step waits for an event,
        what tells whether that wait is over already. Steps that need nothing are absent."""
        out = {}
        for step, after in zip(self.steps, (*self.steps[1:], None), strict=True):
            needs = set(step.branch.needs())
            if after is not None and after.wait_for is not None:
                needs |= after.branch.needs()
            if needs or step.branch.conditional:
                out[step.key] = frozenset(needs)
        return out

    def locale_for(self, wanted: str | None) -> str:
        if wanted:
            if wanted in self.locales:
                return wanted
            base = wanted.split("-")[0].split("_")[0].lower()
            if base in self.locales:
                return base
        return self.fallback_locale


def _localized(value: Localized | None, locales: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {loc: value for loc in locales}
    return dict(value)


def _format_error(path: Path, data: dict, err: dict) -> str:
    loc = list(err["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps") or []
        key = (
            steps[loc[1]].get("key")
            if loc[1] < len(steps) and isinstance(steps[loc[1]], dict)
            else None
        )
        where = f" step {loc[1] + 1}" + (f" ({key})" if key else "")
        loc = loc[2:]
    field = ".".join(str(p) for p in loc if not str(p).startswith(("str", "dict["))) or "-"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{path.name}:{where} field {field}: {msg}"


def parse_campaign(path: Path, templates_dir: Path) -> Campaign:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DefinitionError([f"{path.name}: not valid YAML: {exc}"]) from None
    except ValueError as exc:  # a date that does not exist, such as 2026-13-02
        raise DefinitionError([f"{path.name}: not a valid date: {exc}"]) from None
    except OSError as exc:
        raise DefinitionError([f"{path}: cannot read: {exc.strerror}"]) from None
    if not isinstance(data, dict):
        raise DefinitionError([f"{path.name}: field -: the file must hold a mapping of fields"])
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError([_format_error(path, data, e) for e in exc.errors()]) from None

    problems: list[str] = goal_problems(path, spec.goal, [s.key for s in spec.steps])
    problems += trigger_problems(path, spec.enroll_on, parse_delay)
    if path.stem != spec.key:
        problems.append(
            f"{path.name}: field key: {spec.key!r} must match the file name {path.stem!r}"
        )
    steps = []
    for i, s in enumerate(spec.steps):
        where = f"{path.name}: step {i + 1} ({s.key})"
        subject = _localized(s.subject, spec.locales)
        for loc in spec.locales:
            if Channel.EMAIL in s.channels and not subject.get(loc):
                problems.append(f"{where} field subject: no subject for locale {loc!r}")
            for channel in s.channels + ([s.fallback] if s.fallback else []):
                for name in template_files(s.template, channel):
                    f = templates_dir / spec.key / loc / name
                    if not f.is_file():
                        rel = (
                            f.relative_to(templates_dir.parent)
                            if templates_dir.parent in f.parents
                            else f
                        )
                        problems.append(
                            f"{where} field template: unknown template, {rel} does not exist"
                        )
        for v in s.variants or ():
            problems += _variant_problems(v, s, spec.key, spec.locales, where, templates_dir)
        if s.wait_for is not None and s.delay is not None:
            problems.append(
                f"{where} field delay: give `delay` or `wait_for`, not both (a wait's "
                "`at_most` is the step's delay)"
            )
        elif s.wait_for is None and s.delay is None:
            problems.append(f"{where} field delay: Field required (or `wait_for`)")
        branch = _branch(s, spec, i, where, problems)
        steps.append(
            Step(
                key=s.key,
                index=i,
                delay=branch.wait_for.at_most if branch.wait_for else parse_delay(s.delay or 0),
                channels=tuple(s.channels),
                template=s.template,
                subject=subject,
                preheader=_localized(s.preheader, spec.locales),
                topic=s.topic,
                fallback=s.fallback.value if s.fallback else None,
                review=Review(s.review.by, s.review.on, s.review.fingerprint) if s.review else None,
                branch=branch,
                variants=tuple(
                    Variant(
                        v.name,
                        v.weight,
                        v.template,
                        _localized(v.subject, spec.locales) if v.subject is not None else None,
                        _localized(v.preheader, spec.locales) if v.preheader is not None else None,
                    )
                    for v in s.variants or ()
                ),
                experiment=s.experiment,
                question=QUESTIONS[s.asks] if s.asks else None,
            )
        )
    if problems:
        raise DefinitionError(problems)
    return Campaign(
        key=spec.key,
        version=spec.version,
        names=_localized(spec.name, spec.locales),
        description=spec.description,
        locales=tuple(spec.locales),
        window=spec.send_window.window(),
        on_contact_request=spec.on_contact_request,
        steps=tuple(steps),
        source=path,
        goal=goal_of(spec.goal),
        enroll_on=triggers_of(spec.enroll_on, parse_delay),
        reentry=spec.reentry,
        frequency_cap=spec.frequency_cap.override() if spec.frequency_cap else None,
        holdout=float(spec.holdout),
    )


def _variant_problems(v, s, campaign_key, locales, where, templates_dir: Path) -> list[str]:
    """An arm's template exists in every locale and channel, and its subject (its own or
    the step's) covers every locale."""
    problems = []
    here = f"{where} field variants.{v.name}"
    subject = _localized(v.subject, locales) if v.subject is not None else {}
    own = _localized(s.subject, locales)
    for loc in locales:
        if Channel.EMAIL in s.channels and not (subject.get(loc, own.get(loc)) or "").strip():
            problems.append(f"{here}.subject: no subject for locale {loc!r}")
        if v.template is None:
            continue
        for channel in s.channels + ([s.fallback] if s.fallback else []):
            for name in template_files(v.template, channel):
                if not (templates_dir / campaign_key / loc / name).is_file():
                    problems.append(
                        f"{here}.template: unknown template, "
                        f"{campaign_key}/{loc}/{name} does not exist"
                    )
    return problems


def _branch(s: StepSpec, spec: CampaignSpec, i: int, where: str, problems: list[str]) -> Branch:
    """The step's `if`, `unless` and `wait_for`, checked against the rest of the file: the
    steps they name come earlier (a condition is judged when its step falls due), an open
    is only known for a step that emails, a locale is one the course has."""
    earlier = {step.key: step for step in spec.steps[:i]}

    def emails(key: str) -> bool:
        step = earlier[key]
        return Channel.EMAIL in step.channels or step.fallback == Channel.EMAIL

    conditions = {}
    for name, written in (("if", s.when), ("unless", s.unless)):
        if written is None:
            continue
        condition = conditions[name] = Condition.from_spec(written)
        for test, key in condition.named_steps():
            if key not in earlier:
                later = any(step.key == key for step in spec.steps[i:])
                problems.append(
                    f"{where} field {name}.{test}: {key!r} is "
                    + (
                        "not an earlier step: a condition can only look back"
                        if later
                        else "not a step of this course"
                    )
                )
            elif test == "opened" and not emails(key):
                problems.append(
                    f"{where} field {name}.opened: step {key!r} sends no email, and only "
                    "emails tell us they were opened (use clicked)"
                )
        for locale in sorted(condition.locales() - set(spec.locales)):
            problems.append(
                f"{where} field {name}.locale: {locale!r} is not one of the course's "
                f"locales ({', '.join(spec.locales)})"
            )
    wait = None
    if s.wait_for is not None:
        w = s.wait_for
        wait = WaitFor(w.event, w.step, parse_delay(w.at_most))
        if i == 0:
            problems.append(
                f"{where} field wait_for: the first step has no step before it to wait "
                "after; give it a delay"
            )
        elif w.step not in earlier:
            problems.append(
                f"{where} field wait_for.step: {w.step!r} is not an earlier step of this course"
            )
        elif w.event == "opened" and not emails(w.step):
            problems.append(
                f"{where} field wait_for.step: step {w.step!r} sends no email, and only "
                "emails tell us they were opened (wait for clicked)"
            )
    return Branch(conditions.get("if"), conditions.get("unless"), wait)


def template_files(template: str, channel: str) -> tuple[str, ...]:
    if channel == Channel.EMAIL:
        return (f"{template}.html", f"{template}.txt")
    return (f"{template}.sms.txt",)
