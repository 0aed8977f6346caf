"""GSM-7 encoding and segment counting for text messages.

A text with any character outside the GSM-7 alphabet is sent as UCS-2: 70 characters a
segment instead of 160 (67 and 153 once a message spans several segments). A single
curly apostrophe is enough to halve the room, so the lint refuses them.
"""

from __future__ import annotations

import unicodedata

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")  # each costs two septets


def non_gsm_characters(text: str) -> list[str]:
    return sorted({ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENDED})


def is_gsm7(text: str) -> bool:
    return not non_gsm_characters(text)


def segments(text: str) -> tuple[str, int]:
    """(encoding, number of segments) as a carrier would count them."""
    if is_gsm7(text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        # UCS-2 counts UTF-16 code units: an emoji is two.
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    if units <= single:
        return encoding, 1 if units else 0
    return encoding, -(-units // multi)


def to_gsm7(text: str) -> str:
    """`text` with what GSM-7 lacks spelled without its accent ("sábado" -> "sabado"),
    for words the service composes itself (hours, names of days) rather than a writer."""
    out = []
    for ch in text.replace("\u202f", " ").replace("\xa0", " "):
        if ch in GSM7_BASIC or ch in GSM7_EXTENDED:
            out.append(ch)
            continue
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        out.append(base if base and is_gsm7(base) else "?")
    return "".join(out)
