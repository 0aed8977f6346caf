"""`drip users add | list | set-role | enable | disable | reset-password` (staff accounts of
the workspace) and `drip audit` (the audit log). The work is campaigns.staff; every
change is recorded in the audit log as `cli:<os user>`.

A password is never an argument (it would sit in the shell's history and in `ps`): it is
asked for twice at a prompt that does not echo, or read as one line from stdin with
--password-stdin, for scripts.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from campaigns.db import transaction
from campaigns.staff import accounts, audit
from campaigns.staff.accounts import AccountError
from campaigns.staff.roles import ROLES, areas_for
from workers.cli.context import Drip, cli_actor, pass_drip

ROLE = click.Choice(ROLES)


def _roles_help() -> str:
    return "; ".join(f"{role}: {', '.join(areas_for(role))}" for role in ROLES)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.ClickException("--password-stdin: nothing on stdin")
        return line.rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        click.echo("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


def _change(drip: Drip, work):
    rt = drip.runtime()
    try:
        with transaction(rt.factory) as session:
            return work(session, rt.clock, cli_actor())
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("users", help=f"Staff accounts of the workspace (/admin). Roles: {_roles_help()}.")
def users_group() -> None:
    pass


@users_group.command("add")
@click.argument("name")
@click.option("--role", type=ROLE, required=True, help="What the account may use.")
@click.option("--display-name", default=None, help="A full name to show beside NAME.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@pass_drip
def users_add(drip: Drip, name, role, display_name, password_stdin) -> None:
    """Make an account NAME (lower case) with a password of at least 12 characters."""
    bootstrap = drip.settings.admin_user
    password = _password(password_stdin)
    row = _change(
        drip,
        lambda s, clock, actor: accounts.add(
            s, clock, actor, name, role, password, display_name, bootstrap_name=bootstrap
        ),
    )
    click.echo(f"staff account {row.name} ({row.role}) added; sign in at /admin/login")


@users_group.command("list")
@pass_drip
def users_list(drip: Drip) -> None:
    """Every account: name, display name, role, made, last sign-in, disabled."""
    rt = drip.runtime()
    with rt.factory() as session:
        rows = accounts.listing(session)
    if not rows:
        click.echo("no staff accounts (drip users add NAME --role ROLE)")
        return
    table = [["name", "display name", "role", "created (UTC)", "last sign-in", "disabled"]]
    table += [
        [
            r.name,
            r.display_name or "-",
            r.role,
            _when(r.created_at),
            _when(r.last_login_at),
            _when(r.disabled_at),
        ]
        for r in rows
    ]
    _table(table)


@users_group.command("set-role")
@click.argument("name")
@click.argument("role", type=ROLE)
@pass_drip
def users_set_role(drip: Drip, name, role) -> None:
    """Give NAME the role ROLE; its signed-in sessions have it from their next page."""
    changed = _change(drip, lambda s, clock, actor: accounts.set_role(s, clock, actor, name, role))
    click.echo(f"{accounts.normal_name(name)}: {'now' if changed else 'already'} {role}")


@users_group.command("disable")
@click.argument("name")
@pass_drip
def users_disable(drip: Drip, name) -> None:
    """Stop NAME signing in; its sessions end at once."""
    changed = _change(drip, lambda s, clock, actor: accounts.disable(s, clock, actor, name))
    click.echo(f"{accounts.normal_name(name)}: {'disabled' if changed else 'already disabled'}")


@users_group.command("enable")
@click.argument("name")
@pass_drip
def users_enable(drip: Drip, name) -> None:
    """Let a disabled NAME sign in again (with the password it had)."""
    changed = _change(drip, lambda s, clock, actor: accounts.enable(s, clock, actor, name))
    click.echo(f"{accounts.normal_name(name)}: {'enabled' if changed else 'already enabled'}")


@users_group.command("reset-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@pass_drip
def users_reset_password(drip: Drip, name, password_stdin) -> None:
    """Give NAME a new password; every session it has ends."""
    password = _password(password_stdin)
    ended = _change(
        drip, lambda s, clock, actor: accounts.reset_password(s, clock, actor, name, password)
    )
    click.echo(f"{accounts.normal_name(name)}: new password set; {ended} session(s) ended")


@click.command("audit")
@click.option("--actor", default=None, help="A staff name, or cli:<os user>.")
@click.option("--action", default=None, help="e.g. channel.pause, login.failed")
@click.option("--target", default=None, help="A type, or type:id (channel:sms).")
@click.option("--since", default=None, help="From this day on (YYYY-MM-DD, UTC).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@pass_drip
def audit_command(drip: Drip, actor, action, target, since, limit, as_json) -> None:
    """The audit log, newest first: who did what, on what, before and after."""
    start = None
    if since:
        try:
            start = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise click.BadParameter("a date like 2026-03-01", param_hint="--since") from None
    target_type, _, target_id = (target or "").partition(":")
    rt = drip.runtime()
    with rt.factory() as session:
        rows = audit.entries(
            session,
            limit=limit,
            actor=actor,
            action=action,
            target_type=target_type or None,
            target_id=target_id or None,
            since=start,
        )
    if not rows:
        click.echo("no audit entries" + (" match" if actor or action or target or since else ""))
        return
    for e in rows:
        fields = {
            "at": e.at.isoformat(),
            "actor": e.actor,
            "role": e.role,
            "action": e.action,
            "target": f"{e.target_type}:{e.target_id}" if e.target_id else e.target_type,
            "before": e.before,
            "after": e.after,
            "origin": e.origin,
        }
        if as_json:
            click.echo(json.dumps(fields, sort_keys=True))
            continue
        click.echo(
            f"{e.at:%Y-%m-%d %H:%M:%S}  {e.actor} ({e.role})  {e.action}  {fields['target']}"
            f"  before={json.dumps(e.before, sort_keys=True)}"
            f"  after={json.dumps(e.after, sort_keys=True)}"
        )
