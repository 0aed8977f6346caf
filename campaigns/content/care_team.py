"""How the care team can be reached, worded for a lesson, a page or a HELP reply.

Settings give the facts once (phone number, opening hours, time zone, how soon a call
request is answered); this module words them per locale with Babel's CLDR data, so the
Spanish lesson says "de lunes a viernes, de 8:00 a.m. a 6:00 p.m., hora oriental" without
anyone translating a time by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo

import phonenumbers
from babel.dates import format_time, get_day_names, get_timezone_name

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# "mon-fri 08:00-18:00; sat 09:00-13:00"
_DAY = "(mon|tue|wed|thu|fri|sat|sun)"
PART = re.compile(
    rf"^\s*{_DAY}(?:\s*-\s*{_DAY})?\s+(\d{{1,2}}):(\d{{2}})\s*-\s*(\d{{1,2}}):(\d{{2}})\s*$"
)
# US English and US Spanish by default (README: the Spanish course is written for the US).
BABEL_LOCALE = {"en": "en_US", "es": "es_US"}
WORDS = {
    "en": {
        "range": "{first} to {last}",
        "hours": "{days}, {start} to {end}",
        "and": "; ",
        "zone": "{hours}, {zone}",
        "reply": {1: "one business day", 2: "two business days"},
        "reply_n": "{n} business days",
    },
    "es": {
        "range": "de {first} a {last}",
        "hours": "{days}, de {start} a {end}",
        "and": "; ",
        "zone": "{hours}, {zone}",
        "reply": {1: "un día hábil", 2: "dos días hábiles"},
        "reply_n": "{n} días hábiles",
    },
}


def parse_hours(spec: str) -> list[tuple[int, int, time, time]]:
    """[(first day, last day, opens, closes)] from "mon-fri 08:00-18:00; sat 09:00-13:00"."""
    out = []
    for part in spec.split(";"):
        match = PART.match(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not like 'mon-fri 08:00-18:00'")
        first, last, h1, m1, h2, m2 = match.groups()
        opens, closes = time(int(h1), int(m1)), time(int(h2), int(m2))
        if closes <= opens:
            raise ValueError(f"{part.strip()!r}: closing time must be after opening time")
        out.append((DAYS.index(first), DAYS.index(last or first), opens, closes))
    return out


@dataclass(frozen=True)
class CareTeam:
    phone: str  # E.164
    hours: str  # "mon-fri 08:00-18:00"
    timezone: str
    reply_days: int

    def phone_display(self) -> str:
        try:
            number = phonenumbers.parse(self.phone, None)
        except phonenumbers.NumberParseException:
            return self.phone
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)

    def hours_text(self, locale: str) -> str:
        lang = _lang(locale)
        words, where = WORDS[lang], BABEL_LOCALE[lang]
        names = get_day_names("wide", locale=where)
        parts = []
        for first, last, opens, closes in parse_hours(self.hours):
            days = (
                names[first]
                if first == last
                else words["range"].format(first=names[first], last=names[last])
            )
            parts.append(
                words["hours"].format(
                    days=days,
                    start=format_time(opens, "short", locale=where),
                    end=format_time(closes, "short", locale=where),
                )
            )
        zone = get_timezone_name(
            ZoneInfo(self.timezone), "long", locale=where, zone_variant="generic"
        )
        text = words["zone"].format(hours=words["and"].join(parts), zone=zone)
        # CLDR puts narrow no-break spaces in "8:00 AM"; texts and plain mail want a space.
        return text.replace("\u202f", " ").replace("\xa0", " ")

    def reply_within(self, locale: str) -> str:
        words = WORDS[_lang(locale)]
        return words["reply"].get(self.reply_days) or words["reply_n"].format(n=self.reply_days)

    def for_locale(self, locale: str) -> dict[str, str]:
        """What templates see as `care`."""
        return {
            "phone": self.phone_display(),
            "phone_uri": f"tel:{self.phone}",
            "hours": self.hours_text(locale),
            "reply_within": self.reply_within(locale),
        }


def _lang(locale: str) -> str:
    lang = (locale or "en").split("-")[0].split("_")[0].lower()
    return lang if lang in WORDS else "en"


EXAMPLE = CareTeam(
    phone="+18005550199", hours="mon-fri 08:00-18:00", timezone="America/New_York", reply_days=1
)
