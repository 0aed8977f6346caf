"""`drip import FILE --campaign KEY [--source NAME] [--dry-run]`: subscribers from a CSV;
`drip import-events FILE [--dry-run]`: person events from a CSV.

The work is campaigns.intake.imports and campaigns.intake.event_imports; these only print
the summary and map a file that cannot be imported to a clear error and exit status 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from campaigns.intake import event_imports
from campaigns.intake.imports import ImportFileError, import_file, summary
from campaigns.sequences.campaign import DefinitionError
from workers.cli.context import Drip, pass_drip


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--campaign", required=True, help="Campaign key to enroll consenting subscribers in.")
@click.option(
    "--source",
    default="import",
    show_default=True,
    help="Where the list came from; kept as evidence on each consent record.",
)
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@pass_drip
def import_command(drip: Drip, file: Path, campaign: str, source: str, dry_run: bool) -> None:
    """Import subscribers from a CSV file and enroll those with consent.

    Columns: email, phone, first_name, locale, timezone, consent_email, consent_sms
    (yes/no), and optionally consent_source, consent_date. Bad rows are skipped with
    their line number and reason, and written to FILE.rejects.csv.
    """
    rt = drip.runtime()
    try:
        report = import_file(
            rt.factory,
            rt.clock,
            rt.registry,
            rt.policy,
            file,
            campaign_key=campaign,
            source=source,
            dry_run=dry_run,
            sms_countries=rt.settings.sms_countries,
        )
    except (ImportFileError, DefinitionError) as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    click.echo(summary(report))


@click.command("import-events")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@pass_drip
def import_events_command(drip: Drip, file: Path, dry_run: bool) -> None:
    """Import person events (a visit booked...) from a CSV file; goals they reach apply.

    Columns: event_id, name, email, phone, subscriber_token, occurred_at, properties (a
    JSON object). Bad rows are skipped with their line number and reason, and written to
    FILE.rejects.csv; importing a file again records nothing twice.
    """
    rt = drip.runtime()
    try:
        report = event_imports.import_events(
            rt.factory,
            rt.clock,
            rt.registry,
            rt.policy,
            file,
            region=rt.settings.default_country,
            dry_run=dry_run,
        )
    except ImportFileError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    click.echo(event_imports.summary(report))
