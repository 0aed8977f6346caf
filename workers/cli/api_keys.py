"""`drip api-keys create NAME | list | revoke ID`: keys for the events API
(POST /api/v1/events). The work is campaigns.api_keys; a key is printed once, when made."""

from __future__ import annotations

import click

from campaigns.api_keys import ApiKeyError, list_keys
from campaigns.db import transaction
from campaigns.staff import audited
from workers.cli.context import Drip, cli_actor, pass_drip


@click.group("api-keys")
def api_keys_group() -> None:
    """Keys for the events API (POST /api/v1/events)."""


@api_keys_group.command("create")
@click.argument("name")
@pass_drip
def create(drip: Drip, name: str) -> None:
    """Make a key named NAME (who or what uses it). The key is shown once: store it now."""
    rt = drip.runtime()
    try:
        with transaction(rt.factory) as session:
            made = audited.create_api_key(session, rt.clock, cli_actor(), name)
    except ApiKeyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"API key {made.id} ({made.name}): {made.key}")
    click.echo("Shown once: only its hash is kept. Send it as 'Authorization: Bearer <key>'.")


@api_keys_group.command("list")
@pass_drip
def list_command(drip: Drip) -> None:
    """Every key: id, name, prefix, made, last used, revoked."""
    rt = drip.runtime()
    with rt.factory() as session:
        keys = list_keys(session)
    if not keys:
        click.echo("no API keys (drip api-keys create NAME)")
        return

    def when(value) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value else "-"

    rows = [["id", "name", "prefix", "created (UTC)", "last used", "revoked"]]
    rows += [
        [
            str(k.id),
            k.name,
            k.prefix + "…",
            when(k.created_at),
            when(k.last_used_at),
            when(k.revoked_at),
        ]
        for k in keys
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        click.echo("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


@api_keys_group.command("revoke")
@click.argument("key_id")
@pass_drip
def revoke(drip: Drip, key_id: str) -> None:
    """Revoke key KEY_ID at once: its next request gets a 401."""
    rt = drip.runtime()
    try:
        with transaction(rt.factory) as session:
            key, changed = audited.revoke_api_key(session, rt.clock, cli_actor(), key_id)
    except ApiKeyError as exc:
        raise click.ClickException(str(exc)) from None
    state = "revoked" if changed else f"already revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC"
    click.echo(f"API key {key.id} ({key.name}, {key.prefix}…): {state}")
