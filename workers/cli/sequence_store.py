"""`drip campaigns push | pull | history | rollback | deployed`: the campaign files in a
checkout and the revisions that run, kept in step.

    push [KEY...]       the files become the running revision (checked like a publish
                        from the workspace; --dry-run shows the impact and the checks only)
    pull [KEY...]       the running revision (or --revision N) written to the files
    history KEY         every revision, newest first
    rollback KEY N      revision N's files run again, as the next revision
    deployed            each campaign: the revision running, and whether the files differ
"""

from __future__ import annotations

from pathlib import Path

import click

from campaigns.db import transaction
from campaigns.editing.drafts import rollback_checked
from campaigns.editing.publishing import check_bundle, publish_checked
from campaigns.sequences.bundles import (
    BundleError,
    file_keys,
    read_bundle,
    write_bundle,
)
from campaigns.sequences.store import (
    PublishError,
    bundle_of,
    head,
    heads,
    history,
    revision,
)
from workers.cli.context import Drip, cli_actor, pass_drip
from workers.cli.sequences import campaigns_group, folder_options, local_today, show_impact
from workers.runtime import lint_context


def _folders(drip: Drip, folder, templates) -> tuple[Path, Path]:
    s = drip.settings
    return (
        Path(folder) if folder else s.definitions_dir,
        Path(templates) if templates else s.templates_dir,
    )


@campaigns_group.command("push")
@click.argument("keys", nargs=-1)
@folder_options
@click.option("--note", default=None, help="Why: kept with the revision.")
@click.option("--dry-run", is_flag=True, help="Check and show the impact; publish nothing.")
@click.option("--bodies/--no-bodies", default=True, help="Show each template edit's lines.")
@pass_drip
def campaigns_push(drip: Drip, keys, folder, templates, note, dry_run, bodies) -> None:
    """Publish campaign files as the running revision (every campaign file by default).
    Refused whole on a lint error in any of them, and on copy without a current clinical
    review while PUBLISH_REQUIRES_REVIEW is set: the rules of a publish from the
    workspace. All the campaigns are published together, or none."""
    definitions, templates_dir = _folders(drip, folder, templates)
    rt = drip.runtime()
    s = rt.settings
    wanted = list(dict.fromkeys(keys)) or file_keys(definitions)
    if not wanted:
        raise click.ClickException(f"no campaign files in {definitions}")
    try:
        bundles = [read_bundle(definitions, templates_dir, key) for key in wanted]
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    ctx = lint_context(s, local_today(s), strict=s.publish_requires_review)
    checks, errors = {}, 0
    with rt.factory() as session:
        running = {key: head(session, key) for key in wanted}
        known = set(heads(session)) | set(wanted)
        for bundle in bundles:
            current = running[bundle.key]
            click.echo(
                f"{bundle.key}: {f'revision {current.number}' if current else 'no revision'}"
                f" running -> {definitions / bundle.file_name}"
            )
            show_impact(session, current and bundle_of(current), bundle, s.templates_dir, bodies)
            check = checks[bundle.key] = check_bundle(bundle, ctx, s.templates_dir, known)
            for finding in check.errors:
                click.echo(f"  {finding}", err=True)
            errors += len(check.errors)
    if dry_run:
        click.echo(f"dry run: {errors} error(s); nothing published")
        if errors:
            raise click.ClickException("these files would be refused")
        return
    if errors:
        raise click.ClickException(f"{errors} error(s) above: nothing published")
    done = []
    try:
        with transaction(rt.factory) as session:
            for bundle in bundles:
                current = running[bundle.key]
                done.append(
                    publish_checked(
                        session,
                        rt.clock,
                        cli_actor(),
                        bundle,
                        ctx,
                        s.templates_dir,
                        source="push",
                        note=note,
                        expect_head=current.number if current else None,
                        require_review=s.publish_requires_review,
                        check=checks[bundle.key],
                    )
                )
    except PublishError as exc:
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        raise click.ClickException("refused: nothing published") from None
    for published in done:
        if published.unchanged:
            click.echo(f"{published.key}: unchanged: the files are revision {published.number}")
        else:
            click.echo(f"{published.key}: published revision {published.number}")


@campaigns_group.command("pull")
@click.argument("keys", nargs=-1)
@folder_options
@click.option("--revision", "number", type=click.IntRange(min=1), default=None)
@pass_drip
def campaigns_pull(drip: Drip, keys, folder, templates, number) -> None:
    """Write the running revision (or --revision N) of each campaign to the files: the
    YAML and the campaign's templates folder then equal it, byte for byte."""
    definitions, templates_dir = _folders(drip, folder, templates)
    if number is not None and len(keys) != 1:
        raise click.UsageError("--revision needs exactly one campaign")
    rt = drip.runtime()
    with rt.factory() as session:
        wanted = list(keys) or sorted(heads(session))
        if not wanted:
            click.echo("no campaign has a revision yet: nothing to pull")
            return
        rows = []
        for key in wanted:
            row = revision(session, key, number) if number else head(session, key)
            if row is None:
                raise click.ClickException(
                    f"{key} has no revision {number}" if number else f"{key} has no revision"
                )
            rows.append(row)
        bundles = [(row.number, bundle_of(row)) for row in rows]
    for n, bundle in bundles:
        try:
            changed = write_bundle(bundle, definitions, templates_dir)
        except (BundleError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"{bundle.key}: revision {n}: "
            + (f"{len(changed)} file(s) written or removed" if changed else "files already equal")
        )


@campaigns_group.command("history")
@click.argument("key")
@pass_drip
def campaigns_history(drip: Drip, key) -> None:
    """Every revision of a campaign, newest first."""
    rt = drip.runtime()
    with rt.factory() as session:
        rows = history(session, key, files=False)
        if not rows:
            known = sorted(set(heads(session)) | set(file_keys(rt.settings.definitions_dir)))
            if key not in known:
                raise click.BadParameter(
                    f"no campaign {key!r} (known: {', '.join(known) or 'none'})",
                    param_hint="'KEY'",
                )
            click.echo(f"{key}: no revisions yet (its file seeds one at the next start)")
            return
        for i, row in enumerate(rows):
            running = "  (running)" if i == 0 else ""
            note = f"  {row.note}" if row.note else ""
            click.echo(
                f"{row.number:>4}  {row.published_at:%Y-%m-%d %H:%M}  {row.source:<8} "
                f"{row.published_by}{note}{running}"
            )


@campaigns_group.command("rollback")
@click.argument("key")
@click.argument("number", type=click.IntRange(min=1))
@click.option("--note", default=None)
@pass_drip
def campaigns_rollback(drip: Drip, key, number, note) -> None:
    """Run revision NUMBER's files again, published as the next revision, with the checks
    of any publish (the lint, and the clinical review while PUBLISH_REQUIRES_REVIEW)."""
    rt = drip.runtime()
    s = rt.settings
    ctx = lint_context(s, local_today(s), strict=s.publish_requires_review)
    try:
        with transaction(rt.factory) as session:
            old, current = revision(session, key, number), head(session, key)
            if old is None or current is None:
                raise click.ClickException(f"{key} has no revision {number}")
            click.echo(f"{key}: revision {current.number} running -> revision {number}'s files")
            show_impact(session, bundle_of(current), bundle_of(old), s.templates_dir, False)
            done = rollback_checked(
                session,
                rt.clock,
                cli_actor(),
                key,
                number,
                ctx,
                s.templates_dir,
                require_review=s.publish_requires_review,
                note=note,
            )
    except PublishError as exc:
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        raise click.ClickException("refused: nothing published") from None
    if done.unchanged:
        click.echo(f"  unchanged: revision {done.number} already has these files")
    else:
        click.echo(f"  published revision {done.number}")


@campaigns_group.command("deployed")
@folder_options
@pass_drip
def campaigns_deployed(drip: Drip, folder, templates) -> None:
    """Each campaign's running revision, and whether the files here differ from it."""
    definitions, templates_dir = _folders(drip, folder, templates)
    rt = drip.runtime()
    with rt.factory() as session:
        running = {k: head(session, k) for k in heads(session)}
        rows = [(k, r.number, r.source, r.published_by, r.digest) for k, r in running.items()]
    files = set(file_keys(definitions))
    if rt.settings.sequences_source == "files":
        click.echo("SEQUENCES_SOURCE=files: the campaigns run from the files, not these revisions")
    if not rows and not files:
        click.echo("no campaigns: no revisions and no campaign files")
        return
    for key in sorted(files | {r[0] for r in rows}):
        row = next((r for r in rows if r[0] == key), None)
        try:
            local = read_bundle(definitions, templates_dir, key).digest if key in files else None
        except BundleError as exc:
            local, where = None, f"files unreadable: {exc}"
        else:
            where = (
                "no file here"
                if local is None
                else ("files equal it" if row and local == row[4] else "files differ: push or pull")
            )
        if row is None:
            click.echo(f"{key}: no revision (seeded on the next start, or push it); file here")
        else:
            click.echo(f"{key}: revision {row[1]} ({row[2]} by {row[3]}); {where}")
