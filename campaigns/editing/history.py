"""A campaign's published revisions, each with what it changed from the one before: the
workspace's history page, from which a marketer rolls back.

    revision_rows(session, key) -> [RevisionRow], newest first
    file_diffs(old, new)        -> [FileDiff]: the definition's and each template's lines
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from campaigns.sequences import store
from campaigns.sequences.bundles import Bundle

# A diff longer than this is cut (a rewritten lesson): the page stays readable.
MAX_DIFF_LINES = 400


@dataclass(frozen=True)
class FileDiff:
    name: str  # hip_and_back.yaml, en/welcome.html
    lines: list[str]
    added: int
    removed: int


@dataclass
class RevisionRow:
    number: int
    at: datetime
    by: str
    source: str
    note: str | None
    running: bool
    diffs: list[FileDiff] = field(default_factory=list)


def _diff(name: str, before: str | None, after: str | None) -> FileDiff:
    lines = list(
        difflib.unified_diff(
            (before or "").splitlines(),
            (after or "").splitlines(),
            "before" if before is not None else "/dev/null",
            "after" if after is not None else "/dev/null",
            n=1,
            lineterm="",
        )
    )[2:]
    added = sum(1 for x in lines if x.startswith("+"))
    removed = sum(1 for x in lines if x.startswith("-"))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... {len(lines) - MAX_DIFF_LINES} more lines"]
    return FileDiff(name, lines, added, removed)


def file_diffs(old: Bundle | None, new: Bundle) -> list[FileDiff]:
    """Every file that differs; against nothing (a first revision) every file is new."""
    out = []
    if old is None or old.definition != new.definition:
        out.append(_diff(new.file_name, old.definition if old else None, new.definition))
    before = old.templates if old else {}
    for name in sorted(set(before) | set(new.templates)):
        if before.get(name) != new.templates.get(name):
            out.append(_diff(name, before.get(name), new.templates.get(name)))
    return out


def revision_rows(session: Session, key: str) -> list[RevisionRow]:
    revisions = store.history(session, key)  # newest first
    rows = []
    for i, rev in enumerate(revisions):
        older = revisions[i + 1] if i + 1 < len(revisions) else None
        rows.append(
            RevisionRow(
                rev.number,
                rev.published_at,
                rev.published_by,
                rev.source,
                rev.note,
                running=i == 0,
                # The first revision is the whole course: listed as files, not as a diff.
                diffs=file_diffs(store.bundle_of(older), store.bundle_of(rev)) if older else [],
            )
        )
    return rows
