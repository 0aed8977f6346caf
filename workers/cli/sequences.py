"""`drip campaigns ...`: the marketer's tools for sequence files (validate, lint, preview,
diff, test-send) and the clinician's sign-off (review). Only `diff` and `test-send` need
the database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from campaigns.audience.subscribers import InvalidSubscriber, check_timezone
from campaigns.clock import clock_from_settings
from campaigns.content.lint import LintContext, lint_folder
from campaigns.content.preview import timeline_text, write_preview
from campaigns.content.rendering import RenderError
from campaigns.content.review import ReviewError, record_reviews
from campaigns.delivery.testsend import SendTestRequest, send_test
from campaigns.editing.impact import impact
from campaigns.sequences.bundles import Bundle, BundleError, read_bundle
from campaigns.sequences.campaign import DefinitionError, parse_campaign
from campaigns.sequences.diffing import diff, people
from campaigns.sequences.registry import load_all
from campaigns.sequences.revisions import latest_revision
from campaigns.sequences.store import bundle_of, head
from workers.cli.context import Drip, pass_drip
from workers.cli.git_files import bundle_at_revision
from workers.runtime import sender_from

FOLDER_HELP = "Folder of campaign YAML files (default: DEFINITIONS_DIR)."


def folder_options(command):
    """--dir and --templates: where the campaign files and their templates are."""
    command = click.option(
        "--templates",
        type=click.Path(exists=True, file_okay=False),
        default=None,
        help="Templates folder (default: TEMPLATES_DIR).",
    )(command)
    return click.option(
        "--dir",
        "folder",
        type=click.Path(exists=True, file_okay=False),
        default=None,
        help=FOLDER_HELP,
    )(command)


@click.group("campaigns")
def campaigns_group() -> None:
    """Sequence files: validate, lint, preview, test-send, diff, review."""


@campaigns_group.command("validate")
@click.option(
    "--dir", "folder", type=click.Path(exists=True, file_okay=False), default=None, help=FOLDER_HELP
)
@pass_drip
@click.pass_context
def campaigns_validate(ctx: click.Context, drip: Drip, folder) -> None:
    """Check every campaign file; name the file, step and field of each error."""
    s = drip.settings
    try:
        found = load_all(Path(folder) if folder else s.definitions_dir, s.templates_dir)
    except DefinitionError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        ctx.exit(1)
    for c in found.values():
        click.echo(
            f"ok: {c.key} v{c.version}: {len(c.steps)} steps, locales {', '.join(c.locales)}"
        )


@campaigns_group.command("lint")
@folder_options
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors.")
@click.option(
    "--strict",
    is_flag=True,
    help="A step not clinically reviewed (never, changed since, over a year ago) is an error.",
)
@pass_drip
@click.pass_context
def campaigns_lint(ctx: click.Context, drip: Drip, folder, templates, quiet, strict) -> None:
    """Render every step, channel and locale and check it, and each step's clinical
    review; exit 1 on any error."""
    s = drip.settings
    lint = LintContext(
        Path(templates) if templates else s.templates_dir,
        s.public_base_url,
        s.brand_name,
        s.postal_address,
        today=local_today(s),
        strict=strict,
        sender=sender_from(s),
    )
    findings = lint_folder(Path(folder) if folder else s.definitions_dir, lint)
    for f in findings:
        if not (quiet and f.severity == "info"):
            click.echo(str(f), err=f.severity == "error")
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    click.echo(f"{errors} error(s), {warnings} warning(s)")
    ctx.exit(1 if errors else 0)


def local_today(settings) -> date:
    """Today where the command runs (the reviewer's own calendar day)."""
    return clock_from_settings(settings).now().astimezone().date()


@campaigns_group.command("review")
@click.argument("campaign")
@click.argument("steps", nargs=-1)
@click.option(
    "--by", required=True, help='The clinician who reviewed the copy: "Name, credential".'
)
@click.option(
    "--on", "on", default=None, help="The day of the review, YYYY-MM-DD (default: today)."
)
@folder_options
@pass_drip
def campaigns_review(drip: Drip, campaign, steps, by, on, folder, templates) -> None:
    """Record that STEPS (default: every step) of CAMPAIGN had their copy clinically
    reviewed: writes each step's `review` (by, date, fingerprint of its copy now) into the
    campaign file, keeping the rest of the file as it is."""
    s = drip.settings
    folder = Path(folder) if folder else s.definitions_dir
    path = next(
        (p for p in (folder / f"{campaign}.yaml", folder / f"{campaign}.yml") if p.is_file()), None
    )
    if path is None:
        raise click.ClickException(f"no campaign {campaign!r} in {folder}")
    try:
        day = date.fromisoformat(on) if on else local_today(s)
    except ValueError:
        raise click.BadParameter(
            f"{on!r} is not a date like 2026-11-28", param_hint="--on"
        ) from None
    try:
        signed = record_reviews(
            path,
            Path(templates) if templates else s.templates_dir,
            list(dict.fromkeys(steps)),
            by,
            day,
            local_today(s),
        )
    except ReviewError as exc:
        raise click.ClickException(str(exc)) from None
    for r in signed:
        click.echo(
            f"signed {campaign} {r.step_key}: reviewed by {r.by} on {r.on}, copy {r.copy}"
            + (f" ({r.previous})" if r.previous else "")
        )
    click.echo(f"{len(signed)} step(s) signed in {path}")


@campaigns_group.command("preview")
@click.argument("campaign")
@click.option("--locale", default=None, help="Default: every locale of the campaign.")
@click.option("--first-name", default="Maria")
@click.option(
    "--timezone",
    "zone",
    default=None,
    help="IANA zone for the timeline (default: DEFAULT_TIMEZONE).",
)
@click.option(
    "--joined", default=None, help="When the sample person joins, ISO 8601 (default: now)."
)
@click.option("--out", default="preview", show_default=True)
@click.option(
    "--timeline",
    "timeline_only",
    is_flag=True,
    help="Only print when each step would arrive, for each route through the course "
    "(opens every email, opens none, asked for a call, text only...); write no files.",
)
@pass_drip
def campaigns_preview(
    drip: Drip, campaign, locale, first_name, zone, joined, out, timeline_only
) -> None:
    """Write every step as the subscriber will see it, and when each would arrive."""
    rt = drip.runtime(needs_database=False)
    try:
        c = rt.registry.get(campaign)
        zone = check_timezone(zone) or rt.settings.default_timezone
        when = datetime.fromisoformat(joined) if joined else datetime.now(UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(zone))
        for loc in [locale] if locale else c.locales:
            if loc not in c.locales:
                raise click.ClickException(
                    f"{campaign} has no locale {loc!r} (it has {', '.join(c.locales)})"
                )
            if timeline_only:
                click.echo(f"{loc}:")
                click.echo(timeline_text(c, loc, zone, when, rt.policy))
                continue
            files = write_preview(
                c,
                rt.renderer,
                Path(out),
                locale=loc,
                first_name=first_name or None,
                zone=zone,
                joined=when,
                policy=rt.policy,
                base_url=rt.base_url,
            )
            click.echo(f"{loc}: {len(files)} files in {files[0].parent}/")
            click.echo((files[0].parent / "timeline.txt").read_text())
    except (DefinitionError, RenderError, InvalidSubscriber, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def show_impact(session, old: Bundle | None, new: Bundle, shared: Path, bodies: bool) -> bool:
    """Print what `new` changes against `old`; False when it cannot be known (one of them
    does not parse: a revision a newer version of the code refuses is no reason to
    block the push that replaces it)."""
    if old is None:
        click.echo("  a new campaign: nobody is enrolled yet")
        return True
    try:
        found = impact(session, old, new, shared)
    except DefinitionError as exc:
        click.echo(f"  impact unknown: {'; '.join(exc.problems)}", err=True)
        return False
    for change in found.changes:
        click.echo(f"  {change}")
    if bodies:
        for edit in found.files:
            click.echo(f"  body {edit.name}: +{edit.added} -{edit.removed} lines")
            for line in edit.lines:
                click.echo(f"    {line}")
    if found.empty:
        click.echo("  no changes to the sequence's shape or copy")
    return True


@campaigns_group.command("diff")
@click.argument("new_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--templates",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The new file's templates folder (default: TEMPLATES_DIR).",
)
@click.option(
    "--against",
    "old_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="An older copy of the file (default: the revision running in the database).",
)
@click.option(
    "--against-templates",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The older copy's templates folder (default: the new file's).",
)
@click.option(
    "--against-rev",
    default=None,
    help="A git revision (HEAD~1, a tag): the file and its templates as they were there.",
)
@click.option("--bodies/--no-bodies", default=True, help="Show each template edit's lines.")
@pass_drip
def campaigns_diff(
    drip: Drip, new_file, templates, old_file, against_templates, against_rev, bodies
) -> None:
    """Say what an edited campaign file changes (its shape, each subject, preheader and
    template body) and how many enrolled people each change affects."""
    rt = drip.runtime()
    new_templates = Path(templates) if templates else rt.settings.templates_dir
    path = Path(new_file)
    if old_file and against_rev:
        raise click.UsageError("give --against or --against-rev, not both")
    try:
        new = read_bundle(path.parent, new_templates, path.stem)
        old = None
        if old_file:
            old_path = Path(old_file)
            old = read_bundle(
                old_path.parent,
                Path(against_templates) if against_templates else new_templates,
                path.stem,
                file=old_path,
            )
        elif against_rev:
            old = bundle_at_revision(against_rev, path, new_templates)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    with rt.factory() as session:
        if old is not None:
            label = old_file or f"{against_rev}:{path}"
        else:
            row = head(session, new.key)
            if row is not None:
                old, label = bundle_of(row), f"running revision {row.number}"
        if old is not None:
            click.echo(
                f"{new.key}: {label} -> {new_file}; "
                f"{len(people(session, new.key))} people enrolled and not finished"
            )
            if not show_impact(session, old, new, rt.settings.templates_dir, bodies):
                raise click.ClickException("the impact cannot be worked out (above)")
            return
        shape = latest_revision(session, new.key)
        if shape is None:
            raise click.ClickException(
                f"{new.key} has not been deployed yet; nothing to compare with"
            )
        # Files mode: the deployed copy is these very templates; only the shape is kept.
        try:
            campaign = parse_campaign(path, new_templates)
        except DefinitionError as exc:
            raise click.ClickException(str(exc)) from None
        everyone = people(session, new.key)
    click.echo(
        f"{new.key}: deployed shape {shape.revision} -> {new_file}; {len(everyone)} people "
        "enrolled and not finished (no revision in the database: copy edits are not "
        "compared; use --against or --against-rev)"
    )
    for change in diff(shape.structure, campaign, everyone, None, shape.version):
        click.echo(f"  {change}")


@campaigns_group.command("test-send")
@click.argument("campaign")
@click.argument("steps", nargs=-1)
@click.option("--email")
@click.option("--phone")
@click.option("--locale", default="en", show_default=True)
@click.option("--first-name", default="Maria", show_default=True)
@click.option("--force", is_flag=True, help="Send even to a suppressed address.")
@click.option("--variant", default=None, help="An experiment's arm (default: the step's copy).")
@pass_drip
@click.pass_context
def campaigns_test_send(
    ctx: click.Context,
    drip: Drip,
    campaign,
    steps,
    email,
    phone,
    locale,
    first_name,
    force,
    variant,
) -> None:
    """Send STEPS (default: every step) of CAMPAIGN to your own address, marked [TEST]."""
    rt = drip.runtime()
    try:
        with rt.factory() as session:
            results = send_test(
                session,
                rt.registry,
                rt.renderer,
                rt.signer,
                rt.base_url,
                rt.email_provider,
                rt.sms_provider,
                SendTestRequest(
                    campaign, list(steps), locale, email, phone, first_name or None, variant
                ),
                force,
            )
    except (DefinitionError, InvalidSubscriber, RenderError) as exc:
        raise click.ClickException(str(exc)) from None
    for delivery in results:
        click.echo(delivery.line())
    if any(r.outcome.value != "accepted" for r in results):
        ctx.exit(1)
