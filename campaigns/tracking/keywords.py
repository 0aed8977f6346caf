"""What a text asks for: a keyword (STOP, START, HELP), or, in free words, to stop.

Texts are compared after Unicode NFKC folding (full-width `ＳＴＯＰ` is STOP), with accents,
punctuation and spacing removed, so `Stop.`, `stop all`, `OPT-OUT` and `Opt out` all read
the same. The FCC's 2024 rule asks that a revocation "by any reasonable means" be honoured:
besides the keywords, a message that clearly asks to stop texting, in English or Spanish,
is an opt-out too. The patterns are narrow on purpose ("stop" alone inside a sentence about
pain is not one); whatever they miss is kept for a person to read.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class Intent(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


# Whole-message keywords (CTIA, the FCC's 2024 revocation words), English and Spanish,
# in their compact form: upper case, no spaces or punctuation.
KEYWORDS: dict[str, Intent] = {
    **dict.fromkeys(
        [
            "STOP",
            "STOPALL",
            "UNSUBSCRIBE",
            "CANCEL",
            "END",
            "QUIT",
            "REVOKE",
            "OPTOUT",
            "STOPTEXTING",
            "STOPTEXTS",
            "STOPMESSAGES",
            "PARAR",
            "ALTO",
            "CANCELAR",
            "BAJA",
            "DARDEBAJA",
        ],
        Intent.STOP,
    ),
    **dict.fromkeys(["START", "UNSTOP"], Intent.START),
    **dict.fromkeys(["HELP", "INFO", "AYUDA"], Intent.HELP),
}

_TEXTS = r"(?:text\w*|messag\w*|msgs?|sms)"
# Free text that asks to stop, matched on the folded, lower-case message.
STOP_PHRASES = [
    re.compile(p)
    for p in (
        # please stop texting me; stop sending me these (not "stop the exercise your text...")
        rf"\b(?:stop|quit|cease)\s+(?:{_TEXTS}|sending|contacting|messaging)\b",
        r"\b(?:stop|quit|cease)\s+(?:sending|texting|messaging)\s+me\b",
        rf"\bno\s+more\s+{_TEXTS}\s*(?:please|thanks?|thank\s+you)?\s*$",  # no more texts
        r"\b(?:do\s*n[o']?t|never)\s+(?:text|message|contact)\s+me\b",  # don't text me
        r"\bunsubscribe\s+me\b",
        r"\bopt\s*(?:me\s+)?out\b",
        rf"\b(?:remove|take)\s+me\s+(?:off|from)\s+(?:your\s+|the\s+|this\s+)?(?:list|{_TEXTS})",
        r"\b(?:dejen?|deja)\s+de\s+(?:enviar|mandar|escribir)",  # dejen de enviarme
        r"\bno\s+me\s+(?:envi|mand|escrib)\w*\s+(?:mas|ningun)",  # no me envien mas
        r"\bno\s+mas\s+(?:mensajes|textos|sms)\b",  # no mas mensajes
        r"\b(?:dar(?:me)?|dame|denme)\s+de\s+baja\b",  # darme de baja
        r"\bya\s+no\s+(?:quiero|deseo)\s+(?:recibir|mas|mensajes|textos)",  # ya no quiero mas
        r"\bno\s+(?:quiero|deseo)\s+(?:recibir\s+)?(?:mas\s+)?(?:mensajes|textos)",
    )
]
# Words that may stand beside a stop keyword in a short reply ("Stop please", "STOP STOP").
COURTESY = {"PLEASE", "PLS", "NOW", "IT", "THANKS", "THANK", "YOU", "POR", "FAVOR", "YA", "GRACIAS"}


def fold(body: str | None) -> str:
    """NFKC, accents off, punctuation to spaces, single spaces, upper case."""
    text = unicodedata.normalize("NFKC", body or "")
    # Phones type curly apostrophes (don’t): they are the same letter as '.
    text = text.translate({0x2018: "'", 0x2019: "'", 0x02BC: "'"})
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = re.sub(r"[^\w\s']|_", " ", text).replace("'", "")
    return " ".join(text.split()).upper()


def keyword(body: str | None) -> str:
    """The whole message as one folded phrase: `stop all!` is `STOP ALL`."""
    return fold(body)


def intent(body: str | None) -> Intent | None:
    """The keyword a whole message is, if it is one."""
    return KEYWORDS.get(fold(body).replace(" ", ""))


# A yes to the "reply YES" confirmation text, English or Spanish (SÍ folds to SI).
YES_WORDS = frozenset({"YES", "SI"})


def says_yes(body: str | None) -> bool:
    """The whole message is a yes: `Yes!`, `yes`, `Sí`, full-width `ＹＥＳ`."""
    return fold(body).replace(" ", "") in YES_WORDS


def asks_to_stop(body: str | None) -> bool:
    """A keyword STOP, a short reply of stop words and courtesies ("Stop please"), or
    free words that clearly ask to stop texting."""
    if intent(body) is Intent.STOP:
        return True
    words = fold(body).split()
    stops = [w for w in words if KEYWORDS.get(w) is Intent.STOP]
    if stops and all(w in COURTESY or KEYWORDS.get(w) is Intent.STOP for w in words):
        return True
    text = " ".join(words).lower()
    return any(p.search(text) for p in STOP_PHRASES)
