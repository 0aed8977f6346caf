"""`drip db upgrade`: bring DATABASE_URL to the code's schema."""

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
    """Apply all migrations to DATABASE_URL."""
    upgrade(drip.settings.database_url)
    click.echo("database is at the latest schema")
