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
        rf"\b(?:stop|quit|cease)\s+(?:\w+\s+){{0,3}}{_TEXTS}",  # please stop texting me
        rf"\bno\s+more\s+(?:\w+\s+){{0,2}}{_TEXTS}",  # no more texts
        r"\b(?:do\s*n[o']?t|never)\s+(?:text|message|contact)\s+me\b",  # don't text me
        r"\b(?:unsubscribe|opt\s*out|remove)\s+me\b",  # unsubscribe me, remove me
        r"\btake\s+me\s+off\b",  # take me off your list
        r"\b(?:dejen?|deja)\s+de\s+(?:enviar|mandar|escribir)",  # dejen de enviarme
        r"\bno\s+me\s+(?:envi|mand|escrib)\w*\s+(?:mas|ningun)",  # no me envien mas
        r"\b(?:dar(?:me)?|dame|denme)\s+de\s+baja\b",  # darme de baja
        r"\bya\s+no\s+(?:quiero|deseo)\s+(?:recibir|mas|mensajes|textos)",  # ya no quiero mas
        r"\bno\s+(?:quiero|deseo)\s+(?:recibir\s+)?(?:mas\s+)?(?:mensajes|textos)",
    )
]


def fold(body: str | None) -> str:
    """NFKC, accents off, punctuation to spaces, single spaces, upper case."""
    text = unicodedata.normalize("NFKC", body or "")
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
    """A keyword STOP, or free words that clearly ask to stop texting."""
    if intent(body) is Intent.STOP:
        return True
    text = fold(body).lower()
    return any(p.search(text) for p in STOP_PHRASES)
