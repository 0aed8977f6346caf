"""Check-in questions: a step that asks the person something and records the answer.

    asks: pain_score          # on a step: "how is your pain today, 0 to 10?"

The vocabulary is small on purpose: one question kind, a whole number on a fixed scale.
What the step says is in its templates like any copy (an email shows the scale as links,
a text asks for a reply); the scale lives here, so the answer pages, the reading of a
text reply and the report agree on it.

A reply by text counts as an answer when the whole message is one number of the scale
(`7`, ` 7 `, `7/10`, `7 of 10`, `7 out of 10`, `7 de 10`, `7.`) or that number as a word
in English or Spanish (`seven`, `siete`, `zero`, `cero`, `diez`). Anything else (`7.5`,
`11`, `about 6`, `6-7`, `7 but worse at night`) is not read as an answer: it goes to the
inbox for a person, with the question beside it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    key: str
    low: int
    high: int
    label: str  # for reports and the inbox; never sent to the person

    @property
    def values(self) -> range:
        return range(self.low, self.high + 1)


QUESTIONS: dict[str, Question] = {
    "pain_score": Question("pain_score", 0, 10, "pain today, 0 (none) to 10 (worst)"),
}

_WORDS = {
    **dict.fromkeys(["zero", "cero"], 0),
    **dict.fromkeys(["one", "uno", "una"], 1),
    **dict.fromkeys(["two", "dos"], 2),
    **dict.fromkeys(["three", "tres"], 3),
    **dict.fromkeys(["four", "cuatro"], 4),
    **dict.fromkeys(["five", "cinco"], 5),
    **dict.fromkeys(["six", "seis"], 6),
    **dict.fromkeys(["seven", "siete"], 7),
    **dict.fromkeys(["eight", "ocho"], 8),
    **dict.fromkeys(["nine", "nueve"], 9),
    **dict.fromkeys(["ten", "diez"], 10),
}
_NUMBER = r"(\d{1,2}|[a-z]+)"
# The scale may follow the number: 7/10, 7 of 10, 7 out of 10, 7 de 10.
_REPLY = re.compile(rf"^{_NUMBER}(?:\s*(?:/|of|out of|de|sobre)\s*(\d{{1,2}}))?\s*[.!]?$")


def _folded(body: str) -> str:
    text = unicodedata.normalize("NFKC", body or "")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(text.split()).lower()


def read_reply(question: Question, body: str | None) -> int | None:
    """The value a text reply gives, or None when the whole message is not one value of
    the scale (such a reply is for a person to read)."""
    match = _REPLY.match(_folded(body or "")[:40])
    if match is None:
        return None
    number, scale = match.groups()
    if scale is not None and int(scale) != question.high:
        return None
    value = int(number) if number.isdigit() else _WORDS.get(number)
    if value is None or value not in question.values:
        return None
    return value
