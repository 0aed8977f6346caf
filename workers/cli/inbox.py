"""`drip inbox`: the texts people wrote that wait for a person, oldest first, and marking
them done or treating them as an opt-out. Phone numbers are masked unless --reveal."""

from __future__ import annotations

import click

from campaigns.db import transaction
from campaigns.redact import mask
from campaigns.staff import audited
from campaigns.tracking import inbox
from workers.cli.context import Drip, cli_actor, pass_drip


@click.command("inbox")
@click.option("--done", "done_id", metavar="ID", help="Mark this text answered.")
@click.option("--opt-out", "opt_out_id", metavar="ID", help="Treat this text as a STOP.")
@click.option("--by", default=None, help="Who handled it (default: the login name).")
@click.option("--reveal", is_flag=True, help="Show full phone numbers (to call back).")
@pass_drip
def inbox_command(drip: Drip, done_id, opt_out_id, by, reveal) -> None:
    """Texts nobody's keyword matched, waiting for the care team."""
    if done_id and opt_out_id:
        raise click.UsageError("give --done or --opt-out, not both")
    rt = drip.runtime()
    if done_id or opt_out_id:
        action, item_id = ("done", done_id) if done_id else ("opt_out", opt_out_id)
        try:
            with transaction(rt.factory) as session:
                item = audited.handle_inbox_item(session, rt.clock, cli_actor(by), item_id, action)
                status = item.status
        except inbox.InboxError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"text {item_id}: {status}")
        return
    with rt.factory() as session:
        rows = inbox.listing(session)
    if not rows:
        click.echo("Nothing waits.")
        return
    now = rt.clock.now()
    for r in rows:
        waited = int((now - r.created_at).total_seconds() // 60)
        phone = r.phone if reveal else mask(r.phone)
        who = f"{r.first_name} " if r.first_name else ""
        click.echo(f"#{r.id}  {waited} min ago  {who}{phone}: {r.body}")
        if r.question:
            asked = f"{r.question_sent_at:%Y-%m-%d %H:%M} UTC" if r.question_sent_at else "-"
            click.echo(f"      (may answer the check-in question {r.question}, sent {asked})")
