"""`drip import FILE --campaign KEY [--source NAME] [--dry-run]`: subscribers from a CSV.

A click command of its own, registered on the `drip` group by workers/cli.py. The work is
campaigns.audience.imports; this only finds the runtime, prints the summary and maps a file that
cannot be imported to a clear error and exit status 1.
"""

from __future__ import annotations

from pathlib import Path

import click


def _runtime():
    # Imported late, as in workers.cli: `drip --help` must not need a database.
    from campaigns.migrate import SchemaError
    from settings import SettingsError, get_settings
    from workers.runtime import runtime

    try:
        get_settings()
        return runtime()
    except (SettingsError, SchemaError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--campaign", required=True, help="Campaign key to enroll consenting subscribers in.")
@click.option("--source", default="import", show_default=True,
              help="Where the list came from; kept as evidence on each consent record.")
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@click.pass_context
def import_command(ctx: click.Context, file: Path, campaign: str, source: str, dry_run: bool) -> None:
    """Import subscribers from a CSV file and enroll those with consent.

    Columns: email, phone, first_name, locale, timezone, consent_email, consent_sms
    (yes/no), and optionally consent_source, consent_date. Bad rows are skipped with
    their line number and reason, and written to FILE.rejects.csv.
    """
    from campaigns.sequences.campaign import DefinitionError
    from campaigns.audience.imports import ImportFileError, import_file, summary

    # Tests (or another tool) may hand in their own runtime as the context object.
    rt = ctx.obj if ctx.obj is not None and hasattr(ctx.obj, "factory") else _runtime()
    try:
        report = import_file(rt.factory, rt.clock, rt.registry, rt.policy, file, campaign_key=campaign,
                             source=source, dry_run=dry_run)
    except (ImportFileError, DefinitionError) as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    click.echo(summary(report))
