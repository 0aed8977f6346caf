"""CSV a spreadsheet opens safely: the import's rejects file (campaigns.intake.imports)
and the results page's exports (campaigns.reporting.tables) write their cells here."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence

# A cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL_OUT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def spreadsheet_safe(cell: object) -> str:
    """A cell a spreadsheet shows as text: a leading formula character gets a quote in
    front (OWASP), and control characters are escaped like undecodable bytes."""
    text = _CONTROL_OUT.sub(lambda m: f"\\x{ord(m.group()):02x}", str(cell))
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_text(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """Every cell made safe and quoted, so a spreadsheet that splits on ";" keeps a cell
    whole. Numbers are written as they are: a negative number stays a number."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow([spreadsheet_safe(c) for c in header])
    for row in rows:
        writer.writerow([_cell(c) for c in row])
    return buffer.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return spreadsheet_safe(value)
