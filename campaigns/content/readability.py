"""Reading level of lesson text, offline.

English: Flesch-Kincaid grade level. Spanish: Fernández-Huerta reading ease (the Flesch
formula re-weighted for Spanish; 70-80 reads as "fairly easy", about 7th grade, 60-70 as
"standard", about 8th-9th). Syllables: in English, vowel groups less a silent final e (the
classic estimate); in Spanish, Pyphen's hyphenation points plus one, since Spanish
hyphenation follows syllables.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import pyphen

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)
# A sentence ends at . ! or ?, or where a paragraph or a list item ends (a bullet reads as
# one sentence); a colon or semicolon does not end one.
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)|\n\s*\n|\n\s*[-*•]\s")
_URL = re.compile(r"https?://\S+|\S+@\S+")

# What "at or below 8th grade" means per language.
LIMITS = {"en": ("Flesch-Kincaid grade", "max", 8.0), "es": ("Fernández-Huerta ease", "min", 70.0)}


@dataclass(frozen=True)
class Reading:
    measure: str
    score: float
    ok: bool
    words: int
    sentences: int


@functools.lru_cache(maxsize=8)
def _dic(lang: str) -> pyphen.Pyphen:
    return pyphen.Pyphen(lang={"en": "en_US", "es": "es"}.get(lang, lang))


_VOWELS = re.compile(r"[aeiouy]+")


def syllables(word: str, lang: str) -> int:
    word = word.lower()
    if lang == "en":
        # Vowel groups, less a silent final e ("made"), but not "-le" ("table"): English
        # hyphenation dictionaries leave out short breaks and would undercount.
        count = len(_VOWELS.findall(word))
        if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and count > 1:
            count -= 1
        return max(1, count)
    # Spanish hyphenation follows syllables closely.
    return len(_dic(lang).positions(word)) + 1


def _counts(text: str, lang: str) -> tuple[int, int, int]:
    text = _URL.sub(" ", text)
    words = _WORD.findall(text)
    sentences = max(1, len([p for p in _SENTENCE_END.split(text) if _WORD.search(p)]))
    return len(words), sentences, sum(syllables(w, lang) for w in words)


def reading_level(text: str, locale: str) -> Reading:
    lang = locale.split("-")[0].split("_")[0].lower()
    words, sentences, syl = _counts(text, lang)
    if not words:
        return Reading("none", 0.0, True, 0, 0)
    if lang == "es":
        score = 206.84 - 0.60 * (100 * syl / words) - 1.02 * (100 * sentences / words)
        name, _, limit = LIMITS["es"]
        return Reading(name, round(score, 1), score >= limit, words, sentences)
    score = 0.39 * (words / sentences) + 11.8 * (syl / words) - 15.59
    name, _, limit = LIMITS["en"]
    return Reading(name, round(score, 1), score <= limit, words, sentences)
