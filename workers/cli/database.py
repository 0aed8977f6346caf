"""`drip db upgrade`: bring DATABASE_URL to the code's schema, and seed the campaigns' first
revisions from their files."""

from __future__ import annotations

import click

from campaigns.migrate import upgrade
from workers.cli.context import Drip, pass_drip


@click.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@pass_drip
def db_upgrade(drip: Drip) -> None:
    """Apply all migrations to DATABASE_URL; then, where campaigns run from the database,
    publish each campaign file that has no revision yet (if the lint finds no error)."""
    upgrade(drip.settings.database_url)
    click.echo("database is at the latest schema")
    seeded = drip.runtime().seed_sequences()
    if seeded:
        click.echo(f"campaigns seeded from their files as revision 1: {', '.join(seeded)}")
