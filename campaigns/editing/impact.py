"""What publishing new files would change, and for how many people already enrolled:
the shape (campaigns.sequences.diffing, by the live-edit rules) and the copy, down to
each subject, preheader and template file that differs.

    impact(session, old, new, shared_templates) -> Impact
        old, new: Bundles (what runs, and a draft or the files to push)

A copy edit reaches everyone who has not yet received the step (messages are rendered at
send time), so its count is the people the step is still ahead of.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from campaigns.sequences.bundles import Bundle, parse_bundle
from campaigns.sequences.campaign import Campaign, Step, template_files
from campaigns.sequences.diffing import Change, diff, holding_counts, people
from campaigns.sequences.revisions import structure


@dataclass(frozen=True)
class FileEdit:
    name: str  # "en/welcome.html"
    step: str | None  # the step whose copy it is (None: a file no step names)
    lines: list[str]  # the unified diff
    added: int
    removed: int


@dataclass
class Impact:
    enrolled: int
    changes: list[Change] = field(default_factory=list)
    files: list[FileEdit] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.files


def step_files(campaign: Campaign, step: Step) -> list[str]:
    """The template files (relative to the campaign's folder) a step sends from."""
    names: list[str] = []
    for version in step.versions:
        for locale in campaign.locales:
            for channel in version.sends_on:
                for name in template_files(version.template, channel):
                    if f"{locale}/{name}" not in names:
                        names.append(f"{locale}/{name}")
    return names


def _copy_lines(old: Step, new: Step, locales: list[str]) -> list[str]:
    out = []
    for part in ("subject", "preheader"):
        before, after = getattr(old, part), getattr(new, part)
        for loc in locales:
            if before.get(loc, "") != after.get(loc, ""):
                out.append(f"{part} ({loc}) {before.get(loc, '')!r} -> {after.get(loc, '')!r}")
    return out


def _unified(name: str, before: str | None, after: str | None) -> FileEdit:
    lines = list(
        difflib.unified_diff(
            (before or "").splitlines(),
            (after or "").splitlines(),
            f"deployed/{name}" if before is not None else "/dev/null",
            f"new/{name}" if after is not None else "/dev/null",
            n=1,
            lineterm="",
        )
    )
    added = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
    removed = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
    return FileEdit(name, None, lines, added, removed)


def file_edits(old: Bundle, new: Bundle, campaign: Campaign) -> list[FileEdit]:
    owner = {name: s.key for s in campaign.steps for name in step_files(campaign, s)}
    edits = []
    for name in sorted(set(old.templates) | set(new.templates)):
        before, after = old.templates.get(name), new.templates.get(name)
        if before != after:
            edit = _unified(name, before, after)
            edits.append(FileEdit(edit.name, owner.get(name), edit.lines, edit.added, edit.removed))
    return edits


def impact(session: Session, old: Bundle, new: Bundle, shared_templates: Path) -> Impact:
    """Raises DefinitionError when either bundle does not parse."""
    before, after = parse_bundle(old, shared_templates), parse_bundle(new, shared_templates)
    everyone = people(session, after.key)
    changes = [
        c
        for c in diff(structure(before), after, everyone, before, before.version)
        if c.kind != "copy"  # said below, with what changed in each locale and file
    ]
    edits = file_edits(old, new, after)
    ahead = holding_counts(structure(before), after, everyone)
    for step in after.steps:
        was = before.step(step.key)
        if was is None:
            continue
        parts = []
        if was.template != step.template:
            parts.append(f"template {was.template} -> {step.template}")
        parts += _copy_lines(was, step, after.locales)
        touched = [e.name for e in edits if e.step == step.key]
        if touched:
            parts.append("body " + ", ".join(touched))
        if parts:
            changes.append(Change("copy", step.key, "; ".join(parts), ahead.get(step.key, 0)))
    return Impact(len(everyone), changes, edits)
