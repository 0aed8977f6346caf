"""`drip contacts`: the care team's contact queue from a terminal.

    drip contacts [--reveal]                      requests not yet closed, oldest first
    drip contacts --mark ID --as contacted|closed [--note TEXT] [--by NAME]
    drip contacts list [--status S] [--assignee NAME|unassigned|anyone] [--channel C]
                       [--overdue] [--page N] [--reveal]
    drip contacts assign ID NAME [--by NAME]      give a request to a care-team member
    drip contacts unassign ID [--by NAME]
    drip contacts note ID TEXT [--by NAME]        add a staff note (at most 2000 characters)

Phone numbers and addresses are masked unless given --reveal: terminal output ends up in
scrollback, CI logs and tickets more easily than a web page does. Every change is written
to the audit log as `cli:<name>` (--by, or the login name), like the web's actions.
"""

from __future__ import annotations

import getpass
from datetime import timedelta

import click

from campaigns.care import contact_notes, contact_queue
from campaigns.db import transaction
from campaigns.redact import mask
from campaigns.staff.audit import Actor
from campaigns.staff.roles import ADMIN
from workers.cli.context import Drip, pass_drip
from workers.cli.reports import table

BY = click.option("--by", default=None, help="Who acts (default: the login name).")
REVEAL = click.option("--reveal", is_flag=True, help="Show phone numbers and addresses in full.")
LATE = {contact_queue.OVERDUE: "OVERDUE", contact_queue.DUE_SOON: "due soon"}


def _actor(by: str | None) -> Actor:
    return Actor(f"cli:{(by or '').strip() or getpass.getuser()}", ADMIN, "cli")


def _target(drip: Drip) -> timedelta:
    return timedelta(hours=drip.settings.contact_response_target_hours)


def _change(drip: Drip, change) -> None:
    """Run one change (and its audit entry) in a transaction; a refusal is an error line."""
    rt = drip.runtime()
    try:
        with transaction(rt.factory) as session:
            said = change(session, rt.clock)
    except contact_queue.QueueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(said)


@click.group("contacts", invoke_without_command=True)
@click.option("--mark", "mark_id", type=int, default=None, help="The id of a request to mark.")
@click.option(
    "--as", "status", type=click.Choice([m.value for m in contact_queue.MARKS]), default=None
)
@click.option("--note", default=None, help="What was done (kept in the request's history).")
@BY
@REVEAL
@click.pass_context
def contacts_group(ctx: click.Context, mark_id, status, note, by, reveal) -> None:
    """The contact queue: alone, the requests not yet closed, oldest first; or mark one."""
    if ctx.invoked_subcommand is not None:
        if mark_id is not None or status or note or by or reveal:
            raise click.UsageError("put the options after the subcommand")
        return
    if (mark_id is None) != (status is None):
        raise click.UsageError("--mark ID and --as contacted|closed go together")
    drip = ctx.find_object(Drip)
    if mark_id is not None:

        def change(session, clock) -> str:
            actor = _actor(by)
            done = contact_queue.set_status(session, clock, actor, mark_id, status, note)
            if (note or "").strip():
                contact_notes.add_note(session, clock, actor, done.id, note)
            return f"contact request {mark_id}: {done.status}"

        _change(drip, change)
        return
    _print(drip, contact_queue.Filters(), 1, reveal)


@contacts_group.command("list")
@click.option(
    "--status",
    type=click.Choice(list(contact_queue.STATUS_FILTERS)),
    default=contact_queue.WAITING,
    show_default=True,
)
@click.option(
    "--assignee",
    default=contact_queue.ANYONE,
    show_default=True,
    help="A care-team member's name, 'unassigned' or 'anyone'.",
)
@click.option("--channel", type=click.Choice(contact_queue.PREFERRED_CHANNELS), default=None)
@click.option("--overdue", is_flag=True, help="Only open requests past the response target.")
@click.option("--page", type=int, default=1, show_default=True)
@REVEAL
@pass_drip
def list_command(drip: Drip, status, assignee, channel, overdue, page, reveal) -> None:
    """Contact requests, open ones first, oldest first, 50 a page."""
    try:
        wanted = contact_queue.filters(status, assignee, channel, overdue)
    except contact_queue.QueueError as exc:
        raise click.BadParameter(str(exc)) from None
    _print(drip, wanted, page, reveal)


def _print(drip: Drip, wanted: contact_queue.Filters, page: int, reveal: bool) -> None:
    rt = drip.runtime()
    try:
        with rt.factory() as session:
            found = contact_queue.search(session, rt.clock.now(), _target(drip), wanted, page)
    except contact_queue.QueueError as exc:  # a page out of range
        raise click.BadParameter(str(exc)) from None
    if not found.items:
        click.echo(
            "nobody is waiting"
            if wanted == contact_queue.Filters()
            else "no contact request matches these filters"
        )
        return
    for line in contact_lines(found.items, rt.clock.now(), reveal):
        click.echo(line)
    if found.pages > 1:
        click.echo(f"page {found.number} of {found.pages} ({found.total} requests; --page N)")


@contacts_group.command("assign")
@click.argument("request_id")
@click.argument("name")
@BY
@pass_drip
def assign_command(drip: Drip, request_id, name, by) -> None:
    """Give request ID to the care-team member NAME."""

    def change(session, clock) -> str:
        done = contact_notes.assign(session, clock, _actor(by), request_id, name)
        return f"contact request {done.id}: with {done.assigned_to}"

    _change(drip, change)


@contacts_group.command("unassign")
@click.argument("request_id")
@BY
@pass_drip
def unassign_command(drip: Drip, request_id, by) -> None:
    """Take request ID from whoever has it."""

    def change(session, clock) -> str:
        done = contact_notes.assign(session, clock, _actor(by), request_id, None)
        return f"contact request {done.id}: with nobody"

    _change(drip, change)


@contacts_group.command("note")
@click.argument("request_id")
@click.argument("text")
@BY
@pass_drip
def note_command(drip: Drip, request_id, text, by) -> None:
    """Add a staff note to request ID (what was tried, what was agreed)."""

    def change(session, clock) -> str:
        note = contact_notes.add_note(session, clock, _actor(by), request_id, text)
        return f"contact request {note.request_id}: note {note.id} added"

    _change(drip, change)


def contact_lines(items, now, reveal: bool = False) -> list[str]:
    """The queue as lines of text (the demo's summary too)."""
    if not items:
        return ["nobody is waiting"]
    show = (lambda v: v or "-") if reveal else mask
    rows = []
    for r in items:
        waited = now - r.created_at
        hours = int(waited.total_seconds() // 3600)
        rows.append(
            [
                r.id,
                r.status,
                f"{r.created_at:%Y-%m-%d %H:%M}",
                f"{hours // 24}d {hours % 24}h",
                LATE.get(r.urgency or "", "-"),
                r.first_name or "-",
                show(r.phone),
                show(r.email),
                r.preferred_channel or "-",
                r.preferred_time or "-",
                f"{r.campaign_key or '-'}/{r.step_key or '-'}",
                r.assigned_to or "-",
            ]
        )
    headers = [
        "id",
        "status",
        "asked (UTC)",
        "waited",
        "target",
        "name",
        "phone",
        "email",
        "prefers",
        "when",
        "from",
        "assignee",
    ]
    out = table(headers, rows, right_from=len(headers))
    if not reveal:
        out.append("(contact details masked; --reveal to show them)")
    return out
