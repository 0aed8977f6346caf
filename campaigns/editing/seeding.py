"""A new deployment's first revisions: each campaign file with no revision in the
database is published as revision 1, if it parses and the lint finds no error in it.

    seed_checked(session, clock, definitions_dir, templates_dir, ctx) -> keys seeded

The long-running processes call it as they start (workers.runtime); commands do not, so
`drip campaigns push --dry-run` of a new file publishes nothing. The clinical review is
not asked for here: these are the files the image was built with, and the build refused
any without one (`drip campaigns lint --strict`); people's publishes ask for it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sqlalchemy.orm import Session

from campaigns.clock import Clock
from campaigns.content.lint import LintContext
from campaigns.editing.publishing import check_bundle
from campaigns.sequences.bundles import Bundle
from campaigns.sequences.store import seed


def seed_checked(
    session: Session,
    clock: Clock,
    definitions_dir: Path,
    templates_dir: Path,
    ctx: LintContext,
) -> list[str]:
    lint = replace(ctx, strict=False, today=None)

    def errors(bundle: Bundle, keys: set[str]) -> list[str]:
        return [str(f) for f in check_bundle(bundle, lint, templates_dir, keys).errors]

    return seed(session, clock, definitions_dir, templates_dir, templates_dir, errors)
