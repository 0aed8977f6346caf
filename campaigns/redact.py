"""Masking for logs (invariant 8): enough to tell two addresses apart, not to read one."""

from __future__ import annotations

import re


def mask(address: str | None) -> str:
    if not address:
        return "-"
    if "@" in address:
        local, domain = address.rsplit("@", 1)
        return f"{local[:1]}***@{domain}"
    digits = re.sub(r"\D", "", address)
    return f"+***{digits[-2:]}" if digits else "***"


# What a log line may hold by accident: an address in an exception's text, a payload, a
# caller that forgot mask(). E.164 (how numbers are stored) and the North American
# written forms; a date or a duration is not a phone number.
_EMAIL = re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE = re.compile(r"\+\d{8,15}\b|(?<![\w-])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b")


def mask_text(text: str) -> str:
    """`text` with every email address and phone number in it masked as mask() does."""
    if "@" in text:
        text = _EMAIL.sub(lambda m: mask(m.group()), text)
    return _PHONE.sub(lambda m: mask(m.group()), text)
