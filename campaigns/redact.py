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
