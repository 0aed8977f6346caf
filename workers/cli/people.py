"""`drip people find QUERY | show ID | export ID | erase ID`: the person page and data
rights from a terminal. Addresses are masked unless --reveal; exports and erasures are
in the audit log as the operator `cli:<user>`. The work is campaigns.people."""

from __future__ import annotations

from pathlib import Path

import click

from campaigns.db import transaction
from campaigns.models import is_row_id
from campaigns.people import erasure, export, profile, search
from campaigns.redact import mask
from workers.cli.context import Drip, cli_actor, pass_drip


def _when(value) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


def _person_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and is_row_id(int(raw))):
        raise click.ClickException(f"no person {raw!r}: an id is a whole number")
    return int(raw)


@click.group("people")
def people_group() -> None:
    """Find a person, show everything held on them, export it, or erase them."""


@people_group.command("find")
@click.argument("query")
@click.option("--page", default=1, type=click.IntRange(1, 10_000), show_default=True)
@click.option("--reveal", is_flag=True, help="Show full addresses and phone numbers.")
@pass_drip
def find(drip: Drip, query: str, page: int, reveal: bool) -> None:
    """People whose first name, email or phone matches QUERY (or #ID)."""
    rt = drip.runtime()
    with rt.factory() as session:
        found = search.search(session, query, page)
    if not found.people:
        click.echo(
            f"Nobody matches {found.query!r}." if found.query else "Give a name, email or phone."
        )
        return
    show = (lambda a: a or "-") if reveal else mask
    for p in found.people:
        courses = ", ".join(f"{k} ({s})" for k, s in p.campaigns) or "no course"
        click.echo(
            f"#{p.id}  {p.first_name or '-'}  {show(p.email)}  {show(p.phone)}  "
            f"{p.locale or '-'}  {p.status}  {courses}"
        )
    if found.has_next:
        click.echo(f"More: --page {page + 1}")


@people_group.command("show")
@click.argument("person_id")
@click.option("--reveal", is_flag=True, help="Show full addresses and phone numbers.")
@pass_drip
def show(drip: Drip, person_id: str, reveal: bool) -> None:
    """Everything the person page shows, as text."""
    sid = _person_id(person_id)
    rt = drip.runtime()
    show_ = (lambda a: a or "-") if reveal else mask
    with rt.factory() as session:
        try:
            view = profile.profile(session, sid)
        except profile.NotFound as exc:
            raise click.ClickException(str(exc)) from None
        sub, rec = view.subscriber, view.records
        click.echo(f"Person {sub.id}: {sub.first_name or '-'}  {sub.status}")
        click.echo(f"  email {show_(sub.email)}  phone {show_(sub.phone)}")
        click.echo(f"  language {sub.locale or '-'}  time zone {sub.timezone or '-'}")
        click.echo(
            f"  since {_when(sub.created_at)}"
            + (f"  erased {_when(sub.erased_at)}" if sub.erased_at else "")
        )
        sections = [
            (
                "Courses",
                [
                    f"#{c.enrollment.id} {c.enrollment.campaign_key}: {c.enrollment.status}, "
                    f"next {c.enrollment.next_step_key or '-'} at {_when(c.enrollment.next_due_at)}"
                    + (f" ({c.enrollment.exit_reason})" if c.enrollment.exit_reason else "")
                    for c in view.courses
                ],
            ),
            (
                "Messages",
                [
                    f"#{s.message.id} {s.message.campaign_key}/{s.message.step_key} "
                    f"{s.message.channel}: {s.message.status}, sent {_when(s.message.sent_at)}"
                    + "".join(
                        f"; {e.type}{' (machine)' if e.automated else ''} {_when(e.occurred_at)}"
                        for e in s.events
                    )
                    for s in view.messages
                ],
            ),
            (
                "Consent",
                [
                    f"{_when(c.created_at)} {c.channel} {c.action} via {c.source}"
                    for c in rec.consent_records
                ],
            ),
            (
                "Suppressions",
                [
                    f"{s.channel}: {s.reason} ({s.source}, {_when(s.created_at)})"
                    + (" [hashed]" if s.address.startswith("hmac:") else "")
                    for s in rec.suppressions
                ],
            ),
            (
                "Contact requests",
                [f"#{r.id} {_when(r.created_at)} {r.status}" for r in rec.contact_requests],
            ),
            ("Answers", [f"{_when(a.answered_at)} {a.question}: {a.value}" for a in rec.answers]),
            ("Person events", [f"{_when(p.occurred_at)} {p.name}" for p in rec.person_events]),
            (
                "Cap holds",
                [
                    f"{_when(h.held_at)} {h.campaign_key}/{h.step_key} until {_when(h.held_until)}"
                    for h in rec.cap_holds
                ],
            ),
        ]
    for title, lines in sections:
        click.echo(f"{title}:")
        for line in lines or ["none"]:
            click.echo(f"  {line}")


@people_group.command("export")
@click.argument("person_id")
@click.option(
    "--format", "fmt", type=click.Choice(export.FORMATS), default="json", show_default=True
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write (csv: a zip, one CSV per table).",
)
@pass_drip
def export_command(drip: Drip, person_id: str, fmt: str, out: Path) -> None:
    """Everything held on a person, as JSON or CSV."""
    sid = _person_id(person_id)
    rt = drip.runtime()
    try:
        with transaction(rt.factory) as session:
            body, _name = export.export(session, rt.clock, cli_actor(), sid, fmt)
    except profile.NotFound as exc:
        raise click.ClickException(str(exc)) from None
    try:
        out.write_bytes(body)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    click.echo(f"person {sid}: {len(body)} bytes of {fmt} written to {out}")


@people_group.command("erase")
@click.argument("person_id")
@click.option("--yes", is_flag=True, help="Really erase: there is no undo.")
@pass_drip
def erase_command(drip: Drip, person_id: str, yes: bool) -> None:
    """Wipe a person's personal data; keep their messages and events without identity and
    their opt-outs as keyed hashes."""
    sid = _person_id(person_id)
    if not yes:
        raise click.ClickException(f"erasing cannot be undone: run again with --yes to erase {sid}")
    rt = drip.runtime()
    try:
        with transaction(rt.factory) as session:
            done = erasure.erase(session, rt.clock, cli_actor(), sid)
    except profile.NotFound as exc:
        raise click.ClickException(str(exc)) from None
    if done.already:
        click.echo(f"person {sid} was already erased; nothing changed")
        return
    c = done.counts
    click.echo(
        f"person {sid} erased: {c['messages']} message(s), {c['events']} event(s) kept without "
        f"identity; {c['suppressions_hashed']} suppression(s) kept hashed"
    )
