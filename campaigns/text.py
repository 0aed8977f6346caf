"""Text from outside (forms, links, provider payloads, admin forms) checked before it is
stored or compared: one rule for every field, so no route needs its own special case.

    clean_text(value, field, max_len=..., multiline=False) -> value, or UncleanText
    plain_id(value, field, max_len=...) -> a provider's id: printable ASCII, no spaces

Refused: control characters (NUL above all: PostgreSQL text cannot hold it, and SQLite
would store what no person typed), except tab and line breaks where a field is
multi-line; and lone surrogates, which JSON can carry but UTF-8 cannot encode. Refusing
rather than stripping keeps what we store exactly what was sent.
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL; tab, LF and CR are allowed only in multi-line fields.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_PLAIN_ID = re.compile(r"[!-~]+")  # printable ASCII, no space


class UncleanText(ValueError):
    """A field holds what no person or provider means to send; str() names the field."""


def clean_text(value: str, field: str, *, max_len: int | None = None, multiline=False) -> str:
    pattern = _CONTROL if multiline else _CONTROL_ONE_LINE
    if pattern.search(value):
        raise UncleanText(f"{field}: contains a control character")
    if max_len is not None and len(value) > max_len:
        raise UncleanText(f"{field}: longer than {max_len} characters")
    return value


def plain_id(value: str, field: str, *, max_len: int) -> str:
    if not _PLAIN_ID.fullmatch(value) or len(value) > max_len:
        raise UncleanText(f"{field}: not an id (printable ASCII, at most {max_len} characters)")
    return value
