"""Conditions and waits: when a step applies to a person, and how long it waits for
something the person does. The vocabulary a marketer writes in a campaign file:

    - key: diagnosis_by_text
      wait_for: {event: opened, step: diagnosis, at_most: 2d}   # instead of `delay`
      if: {has_channel: [email, sms]}        # the step goes only when this holds...
      unless: {opened: diagnosis}            # ...and not when this holds

A condition is a mapping of tests; every test in it must hold:

    opened: <step>          opened the email of that earlier step (a click in it counts
                            too: many mail apps block the open pixel)
    clicked: <step>         followed a link in that earlier step (read online, request a call)
    asked_for_call: true    has asked the care team for a call (false: has not)
    has_channel: email      may be sent to on it now: an address, consent, not unsubscribed,
                            not bounced (a list: on every one of them)
    lacks_channel: sms      may not be sent to on it (a list: on none of them)
    locale: es              reads the course in this language (a list: any of them)
    attribute: {plan: medicare}   the subscriber's attribute has this value (a list: any
                            of them); compared as text, ignoring case; a person without
                            the attribute matches no value
    any: [{...}, {...}]     at least one of these conditions holds
    all: [{...}, {...}]     every one of them holds

`wait_for` makes a step due `at_most` after the previous step went out, or as soon as the
event arrives if that is sooner (campaigns.sequences.waits wakes the waiting cursor); its
`if` / `unless` then decide whether it sends. A step whose condition does not hold is not
sent: each of its channels gets an outbox row `skipped` with the reason `condition`, and
the course moves on (campaigns.delivery.claiming).

Everything here is pure: the facts a condition is judged on (a `Situation`) are read for
a whole batch by campaigns.sequences.situations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from campaigns.sequences.delays import format_delay, parse_delay
from campaigns.states import CHANNELS, Channel

TESTS = (
    "opened",
    "clicked",
    "asked_for_call",
    "has_channel",
    "lacks_channel",
    "locale",
    "attribute",
    "any",
    "all",
)
EVENTS = ("opened", "clicked")
_NAME = r"^[a-z][a-z0-9_]{0,39}$"
_CHANNEL_WORDS = {Channel.EMAIL: "email", Channel.SMS: "text"}


# ---------------------------------------------------------------- the file's shape


def _as_list(value):
    return value if isinstance(value, list) else [value]


class ConditionSpec(BaseModel):
    """A condition as written in the file (`if:`, `unless:`, or an item of `any`/`all`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    opened: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,62}$")
    clicked: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,62}$")
    asked_for_call: bool | None = None
    has_channel: list[Channel] | None = Field(None, min_length=1)
    lacks_channel: list[Channel] | None = Field(None, min_length=1)
    locale: list[str] | None = Field(None, min_length=1)
    attribute: dict[str, list[str]] | None = Field(None, min_length=1)
    any_of: list[ConditionSpec] | None = Field(None, alias="any", min_length=1)
    all_of: list[ConditionSpec] | None = Field(None, alias="all", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _vocabulary(cls, value):
        if not isinstance(value, dict):
            raise ValueError("write a condition as a mapping, like {opened: welcome}")
        if not value:
            raise ValueError("a condition needs at least one test, like {opened: welcome}")
        for key in value:
            if key not in TESTS:
                raise ValueError(f"unknown condition {key!r} (known: {', '.join(TESTS)})")
        return value

    @field_validator("has_channel", "lacks_channel", "locale", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return _as_list(value)

    @field_validator("locale")
    @classmethod
    def _locales(cls, value):
        for locale in value:
            if not isinstance(locale, str) or not locale:
                raise ValueError(f"{locale!r} is not a language code like en or es")
        return value

    @field_validator("attribute", mode="before")
    @classmethod
    def _attributes(cls, value):
        if not isinstance(value, dict):
            raise ValueError("write attributes as a mapping, like {plan: medicare}")
        out = {}
        for name, wanted in value.items():
            if not isinstance(name, str) or not re.match(_NAME, name):
                raise ValueError(
                    f"attribute name {name!r}: lower-case letters, digits and _, "
                    "starting with a letter"
                )
            values = []
            for item in _as_list(wanted):
                if isinstance(item, (dict, list)) or item is None:
                    raise ValueError(f"attribute {name}: a value is text, a number or yes/no")
                values.append(attribute_text(item))
            out[name] = values
        return out


def attribute_text(value) -> str:
    """An attribute value as conditions compare it: text, ignoring case and outer spaces
    (YAML's true and an import's "TRUE" are the same)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().lower()


class WaitForSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: Literal["opened", "clicked"]
    step: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    at_most: str | int

    @field_validator("at_most")
    @classmethod
    def _at_most(cls, value):
        if parse_delay(value) <= timedelta(0):
            raise ValueError("at_most must be longer than 0m: how long to wait at most")
        return value


# ---------------------------------------------------------------- what a condition is judged on


@dataclass(frozen=True)
class Situation:
    """What is known of one person in one course when a step falls due."""

    opened: frozenset[str] = frozenset()  # steps whose message they opened or clicked in
    clicked: frozenset[str] = frozenset()  # steps they followed a link in
    asked_for_call: bool = False
    channels: frozenset[str] = frozenset()  # channels they may be sent to now
    locale: str = ""  # the course's language for them
    attributes: Mapping[str, str] = field(default_factory=dict)  # as attribute_text


# ---------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Condition:
    """A parsed condition: `tests` is ((name, value), ...), all of which must hold."""

    tests: tuple[tuple[str, object], ...]

    @classmethod
    def from_spec(cls, spec: ConditionSpec) -> Condition:
        tests: list[tuple[str, object]] = []
        for name in ("opened", "clicked", "asked_for_call"):
            value = getattr(spec, name)
            if value is not None:
                tests.append((name, value))
        for name in ("has_channel", "lacks_channel"):
            value = getattr(spec, name)
            if value is not None:
                tests.append((name, tuple(sorted({str(c) for c in value}, key=_channel_order))))
        if spec.locale is not None:
            tests.append(("locale", tuple(spec.locale)))
        if spec.attribute is not None:
            tests.append(
                ("attribute", tuple((k, tuple(v)) for k, v in sorted(spec.attribute.items())))
            )
        for name, items in (("any", spec.any_of), ("all", spec.all_of)):
            if items is not None:
                tests.append((name, tuple(cls.from_spec(i) for i in items)))
        return cls(tuple(tests))

    def holds(self, s: Situation) -> bool:
        return all(_holds(name, value, s) for name, value in self.tests)

    # -- what it refers to and needs

    def steps(self) -> set[str]:
        """Steps it names (opened / clicked), at any depth."""
        return {step for _, step in self.named_steps()}

    def named_steps(self) -> list[tuple[str, str]]:
        """(test, step) for every opened / clicked test, at any depth."""
        out = []
        for name, value in self.tests:
            if name in EVENTS:
                out.append((name, value))
            elif name in ("any", "all"):
                for c in value:
                    out += c.named_steps()
        return out

    def locales(self) -> set[str]:
        out = set()
        for name, value in self.tests:
            if name == "locale":
                out |= set(value)
            elif name in ("any", "all"):
                for c in value:
                    out |= c.locales()
        return out

    def needs(self) -> set[str]:
        """What must be read to judge it: engagement, calls, person (locale, attributes);
        channels come with every claim."""
        out = set()
        for name, value in self.tests:
            if name in EVENTS:
                out.add("engagement")
            elif name == "asked_for_call":
                out.add("calls")
            elif name in ("locale", "attribute"):
                out.add("person")
            elif name in ("any", "all"):
                for c in value:
                    out |= c.needs()
        return out

    # -- for people

    def describe(self) -> str:
        parts = [_describe(name, value) for name, value in self.tests]
        return " and ".join(parts)

    def as_data(self) -> dict:
        """The condition as plain data, as the file would write it (for revisions)."""
        out: dict = {}
        for name, value in self.tests:
            if name in ("has_channel", "lacks_channel", "locale"):
                out[name] = list(value)
            elif name == "attribute":
                out[name] = {k: list(v) for k, v in value}
            elif name in ("any", "all"):
                out[name] = [c.as_data() for c in value]
            else:
                out[name] = value
        return out


def _channel_order(channel: str) -> int:
    return CHANNELS.index(channel) if channel in CHANNELS else len(CHANNELS)


def _holds(name: str, value, s: Situation) -> bool:
    if name == "opened":
        return value in s.opened
    if name == "clicked":
        return value in s.clicked
    if name == "asked_for_call":
        return s.asked_for_call == value
    if name == "has_channel":
        return all(c in s.channels for c in value)
    if name == "lacks_channel":
        return not any(c in s.channels for c in value)
    if name == "locale":
        return s.locale in value
    if name == "attribute":
        return all(s.attributes.get(k) in wanted for k, wanted in value)
    if name == "any":
        return any(c.holds(s) for c in value)
    if name == "all":
        return all(c.holds(s) for c in value)
    raise ValueError(name)


def _words(channels) -> str:
    return " and ".join(_CHANNEL_WORDS.get(c, c) for c in channels)


def _describe(name: str, value) -> str:
    if name in EVENTS:
        return f"{name} {value}"
    if name == "asked_for_call":
        return "asked for a call" if value else "has not asked for a call"
    if name == "has_channel":
        return f"has {_words(value)}"
    if name == "lacks_channel":
        return f"has no {' or '.join(_CHANNEL_WORDS.get(c, c) for c in value)}"
    if name == "locale":
        return f"reads {' or '.join(value)}"
    if name == "attribute":
        return " and ".join(f"{k} is {' or '.join(v)}" for k, v in value)
    joined = (" or " if name == "any" else " and ").join(c.describe() for c in value)
    return f"({joined})"


# ---------------------------------------------------------------- waits


@dataclass(frozen=True)
class WaitFor:
    """Wait at most `at_most` after the previous step went out for `event` on `step`."""

    event: str  # opened | clicked
    step: str
    at_most: timedelta

    def happened(self, s: Situation) -> bool:
        return self.step in (s.opened if self.event == "opened" else s.clicked)

    def with_event(self, s: Situation) -> Situation:
        """`s` as it would be once the event came."""
        clicked = s.clicked | {self.step} if self.event == "clicked" else s.clicked
        return replace(s, opened=s.opened | {self.step}, clicked=clicked)

    def describe(self) -> str:
        what = "an open of" if self.event == "opened" else "a click in"
        return f"up to {format_delay(self.at_most)} for {what} {self.step}"

    def as_data(self) -> dict:
        return {
            "event": self.event,
            "step": self.step,
            "at_most": int(self.at_most.total_seconds()),
        }


@dataclass(frozen=True)
class Branch:
    """A step's `if`, `unless` and `wait_for`, as parsed (all optional)."""

    when: Condition | None = None
    unless: Condition | None = None
    wait_for: WaitFor | None = None

    @property
    def conditional(self) -> bool:
        return self.when is not None or self.unless is not None

    def applies(self, s: Situation) -> bool:
        return self.why_not(s) is None

    def why_not(self, s: Situation) -> str | None:
        """None when the step applies to this person; else which part stops it, for the
        outbox row's reason ("unless opened diagnosis, which holds")."""
        if self.when is not None and not self.when.holds(s):
            return f"if {self.when.describe()}, which does not hold"
        if self.unless is not None and self.unless.holds(s):
            return f"unless {self.unless.describe()}, which holds"
        return None

    def wait_is_over(self, s: Situation) -> bool:
        """A wait that need not go on: its event has come, or the step will not go to this
        person whether it comes or not (someone without a phone waits for nothing before
        a text they will never get)."""
        w = self.wait_for
        if w is None:
            return False
        if w.happened(s):
            return True
        return self.why_not(s) is not None and self.why_not(w.with_event(s)) is not None

    def describe(self) -> str:
        """The step's conditions for people: "if has email and text, unless opened
        diagnosis" ("" for an unconditional step)."""
        parts = []
        if self.when is not None:
            parts.append(f"if {self.when.describe()}")
        if self.unless is not None:
            parts.append(f"unless {self.unless.describe()}")
        return ", ".join(parts)

    def needs(self) -> set[str]:
        out = set()
        for c in (self.when, self.unless):
            if c is not None:
                out |= c.needs()
        if self.wait_for is not None:
            out.add("engagement")
        return out

    def conditions(self) -> list[Condition]:
        return [c for c in (self.when, self.unless) if c is not None]
