"""The deployed sequences, as revisions in the database.

    head(session, key)                         -> the revision that runs, or None
    heads(session)                             -> {key: number} for every campaign
    history(session, key)                      -> every revision, newest first
    revision(session, key, number)             -> one revision
    bundle_of(row)                             -> its files (campaigns.sequences.bundles)
    publish(session, clock, actor, bundle, source=..., note=..., expect_head=...)
                                               -> Published (a new number, or unchanged)
    rollback(session, clock, actor, key, number, note)
    seed(session, clock, definitions_dir, templates_dir, shared_templates, check=...)
                                               -> keys seeded from files with no revision

A publish checks that the bundle parses (the schema, every template file present) and
writes the audit entry in the same transaction; what else must hold first (lint, clinical
review) is the caller's policy (campaigns.sequences.publishing). Rows are never updated
or deleted: a rollback publishes the older files again under the next number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from campaigns.clock import Clock
from campaigns.models import SequenceRevision
from campaigns.sequences.bundles import (
    Bundle,
    BundleError,
    file_keys,
    parse_bundle,
    read_bundle,
)
from campaigns.sequences.campaign import DefinitionError
from campaigns.staff.audit import Actor, record

log = logging.getLogger(__name__)

SOURCES = ("seed", "push", "browser", "rollback", "promote")
SYSTEM = Actor("system", "system", "seed")


class PublishError(ValueError):
    """A publish refused; `problems` says why, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Published:
    key: str
    number: int
    previous: int | None
    unchanged: bool  # the files equal the running revision's: nothing was published


def head(session: Session, key: str) -> SequenceRevision | None:
    return session.scalars(
        select(SequenceRevision)
        .where(SequenceRevision.campaign_key == key)
        .order_by(SequenceRevision.number.desc())
        .limit(1)
    ).first()


def heads(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(SequenceRevision.campaign_key, func.max(SequenceRevision.number)).group_by(
            SequenceRevision.campaign_key
        )
    )
    return {key: number for key, number in rows}


def head_digests(session: Session) -> dict[str, tuple[int, str]]:
    """{key: (number, digest)} of each campaign's running revision: a process compares
    both, so a database restored with other files under the same number is noticed."""
    newest = (
        select(SequenceRevision.campaign_key, func.max(SequenceRevision.number).label("n"))
        .group_by(SequenceRevision.campaign_key)
        .subquery()
    )
    rows = session.execute(
        select(
            SequenceRevision.campaign_key, SequenceRevision.number, SequenceRevision.digest
        ).join(
            newest,
            (newest.c.campaign_key == SequenceRevision.campaign_key)
            & (newest.c.n == SequenceRevision.number),
        )
    )
    return {key: (number, digest) for key, number, digest in rows}


def history(session: Session, key: str, *, files: bool = True) -> list[SequenceRevision]:
    """Newest first; without `files`, the rows' text is not loaded (a list of numbers,
    dates and notes over a long history)."""
    query = select(SequenceRevision).where(SequenceRevision.campaign_key == key)
    if not files:
        query = query.options(defer(SequenceRevision.definition), defer(SequenceRevision.templates))
    return list(session.scalars(query.order_by(SequenceRevision.number.desc())))


def revision(session: Session, key: str, number: int) -> SequenceRevision | None:
    return session.scalars(
        select(SequenceRevision).where(
            SequenceRevision.campaign_key == key, SequenceRevision.number == number
        )
    ).first()


def bundle_of(row) -> Bundle:
    """The files of a revision (or of a draft: the same columns)."""
    return Bundle(row.campaign_key, row.definition, dict(row.templates or {}), row.file_name)


def publish(
    session: Session,
    clock: Clock,
    actor: Actor,
    bundle: Bundle,
    shared_templates: Path,
    *,
    source: str,
    note: str | None = None,
    expect_head: int | None | bool = False,
) -> Published:
    """Make `bundle` the running revision of its campaign. `expect_head` (when given, even
    None for "no revision yet") refuses a publish if someone published since: a draft
    started from revision 3 does not silently undo revision 4."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    try:
        campaign = parse_bundle(bundle, shared_templates)
    except DefinitionError as exc:
        raise PublishError(exc.problems) from None
    if campaign.key != bundle.key:
        raise PublishError([f"the file defines {campaign.key!r}, not {bundle.key!r}"])
    current = head(session, bundle.key)
    number = current.number if current is not None else None
    if expect_head is not False and expect_head != number:
        raise PublishError(
            [
                f"{bundle.key}: revision {number} was published after this draft began from "
                f"revision {expect_head}; start the draft again from revision {number}"
            ]
        )
    if current is not None and current.digest == bundle.digest:
        return Published(bundle.key, current.number, current.number, unchanged=True)
    new = SequenceRevision(
        campaign_key=bundle.key,
        number=(number or 0) + 1,
        file_name=bundle.file_name,
        definition=bundle.definition,
        templates=dict(bundle.templates),
        digest=bundle.digest,
        source=source,
        note=(note or None) and note[:500],
        published_by=actor.name[:80],
        published_at=clock.now(),
    )
    try:
        with session.begin_nested():  # a lost race leaves the caller's transaction usable
            session.add(new)
            session.flush()
    except IntegrityError:
        # Two publishes at once took the same number: the later one is refused whole.
        raise PublishError(
            [f"{bundle.key}: another revision was published at the same moment; try again"]
        ) from None
    record(
        session,
        clock,
        actor,
        f"sequence.{'seed' if source == 'seed' else 'publish'}",
        "campaign",
        bundle.key,
        before={"revision": number},
        after={
            "revision": new.number,
            "source": source,
            "version": campaign.version,
            "digest": bundle.digest[:16],
        },
    )
    return Published(bundle.key, new.number, number, unchanged=False)


def rollback(
    session: Session,
    clock: Clock,
    actor: Actor,
    key: str,
    number: int,
    shared_templates: Path,
    note: str | None = None,
) -> Published:
    old = revision(session, key, number)
    if old is None:
        raise PublishError([f"{key} has no revision {number}"])
    current = head(session, key)
    if current is not None and current.number == number:
        raise PublishError([f"{key}: revision {number} is the one running"])
    return publish(
        session,
        clock,
        actor,
        bundle_of(old),
        shared_templates,
        source="rollback",
        note=note or f"rollback to revision {number}",
        expect_head=current.number if current is not None else None,
    )


def seed(
    session: Session,
    clock: Clock,
    definitions_dir: Path,
    templates_dir: Path,
    shared_templates: Path,
    check: Callable[[Bundle, set[str]], list[str]] | None = None,
) -> list[str]:
    """Publish, as revision 1, every campaign file whose campaign has no revision yet, so a
    new deployment starts from the files it shipped with. A file that does not parse, or
    in which `check` (given the bundle and the campaigns there will be) finds problems, is
    left out (logged); its campaign waits for a push."""
    known = set(heads(session))
    keys = file_keys(definitions_dir)
    seeded = []
    for key in keys:
        if key in known:
            continue
        try:
            bundle = read_bundle(definitions_dir, templates_dir, key)
            problems = check(bundle, known | set(keys)) if check else []
            if problems:
                raise PublishError(problems)
            publish(
                session,
                clock,
                SYSTEM,
                bundle,
                shared_templates,
                source="seed",
                note="the shipped file",
                expect_head=None,
            )
        except (BundleError, PublishError) as exc:
            if head(session, key) is None:
                log.error("campaign file %s not seeded: %s", key, exc)
            # else another process starting at the same moment seeded it
            continue
        seeded.append(key)
    return seeded
