"""Promoting an experiment's winner where the campaign runs from its revisions: the
running revision's files are promoted in a scratch copy (campaigns.content.promote, the
same edit as on a file) and published as the next revision.

    promote_running(session, clock, actor, key, step, variant, shared_templates) -> Promoted

The promote's own audit entry (`campaign.promote`) and the publish's (`sequence.publish`,
source promote) are written in the caller's transaction. A winner's copy is copy a
clinician signed (the step's review covered every arm), so the review gate of a publish
does not apply; the lint's other checks do not either, as for a promote on a file.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.content.promote import Promoted, PromoteError
from campaigns.sequences.bundles import read_bundle, scratch
from campaigns.sequences.deployed import DeployedRegistry
from campaigns.sequences.store import PublishError, bundle_of, head, publish
from campaigns.staff import audited
from campaigns.staff.audit import Actor


def promote_running(
    session: Session,
    clock: Clock,
    actor: Actor,
    key: str,
    step: str,
    variant: str,
    shared_templates: Path,
) -> Promoted:
    current = head(session, key)
    if current is None:
        raise PromoteError(f"{key} has no running revision")
    with scratch(bundle_of(current), shared_templates) as (path, templates):
        done = audited.promote_variant(session, clock, actor, path, templates, step, variant)
        promoted = read_bundle(path.parent, templates, key)
    try:
        publish(
            session,
            clock,
            actor,
            promoted,
            shared_templates,
            source="promote",
            note=done.sentence[:500],
            expect_head=current.number,
        )
    except PublishError as exc:
        raise PromoteError("; ".join(exc.problems)) from None
    return done


def promote_step(
    session: Session,
    clock: Clock,
    actor: Actor,
    registry,
    key: str,
    step: str,
    variant: str,
    shared_templates: Path,
) -> Promoted:
    """Promote where the campaign runs from: its revisions (a DeployedRegistry), or its
    file (SEQUENCES_SOURCE=files). The caller refreshes the registry after the commit."""
    if isinstance(registry, DeployedRegistry):
        return promote_running(session, clock, actor, key, step, variant, shared_templates)
    try:
        campaign = registry.get(key)
    except (LookupError, ValueError):
        raise PromoteError(f"{key!r} is not deployed") from None
    if campaign.source is None:
        raise PromoteError("this campaign has no file to edit")
    return audited.promote_variant(
        session, clock, actor, campaign.source, registry.templates_dir, step, variant
    )
