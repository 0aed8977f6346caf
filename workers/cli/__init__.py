"""The `drip` command: one group, its commands in modules by what they act on.

    database.py   db upgrade
    sequences.py  campaigns validate | lint | preview | diff | test-send | review
    sequence_store.py  campaigns push | pull | history | rollback | deployed (revisions)
    experiments.py  campaigns promote; the experiments part of `drip report`
    delivery.py   enroll, channels [list] | pause | resume, outbox list | settle
    status.py     status (backlog, paused channels, contacts, unconfirmed, schedulers)
    reports.py    report
    contacts.py   contacts [list | assign | unassign | note] (the care team's queue)
    simulate.py   simulate (a course's timing for a cohort, nothing sent)
    inbox.py      inbox (texts waiting for a person)
    people.py     people find | show | export | erase
    imports.py    import, import-events
    api_keys.py   api-keys create | list | revoke
    hits.py       hits [status] | requeue (the queue of opens and clicks)
    retention.py  retention run [--dry-run] (roll up, prune old events and detail)
    users.py      users add | list | set-role | enable | disable | reset-password; audit
    processes.py  worker, beat, web, demo
    health.py     health worker | beat (container healthchecks)
    params.py     parameter types shared by commands (Seconds: finite, bounded)

Every command takes the shared `Drip` context (context.py): settings read once, and the
runtime from workers/runtime.py built only when a command needs it.
"""

from __future__ import annotations

import contextlib
import sys

import click

from workers.cli.api_keys import api_keys_group
from workers.cli.contacts import contacts_group
from workers.cli.context import Drip
from workers.cli.database import db_group
from workers.cli.delivery import channels_group, enroll, outbox_group
from workers.cli.experiments import campaigns_promote
from workers.cli.health import health_group
from workers.cli.hits import hits_group
from workers.cli.imports import import_command, import_events_command
from workers.cli.inbox import inbox_command
from workers.cli.people import people_group
from workers.cli.processes import beat, demo, web, worker
from workers.cli.reports import report_command
from workers.cli.retention import retention_group
from workers.cli.sequence_store import campaigns_group
from workers.cli.simulate import simulate_command
from workers.cli.status import status
from workers.cli.users import audit_command, users_group
from workers.logs import configure_from


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Patient-education drip campaigns: scheduler, workers and tools."""
    drip = ctx.ensure_object(Drip)
    ctx.call_on_close(drip.close)
    # Logs as LOG_FORMAT says, when `drip` is the process. Run in-process (a test's
    # CliRunner swaps stderr for a buffer it closes after), logging stays the caller's.
    # A bad setting is left for the command that reads settings to report.
    if sys.stderr is sys.__stderr__:
        with contextlib.suppress(click.ClickException):
            configure_from(drip.settings)


for command in (
    db_group,
    campaigns_group,
    enroll,
    status,
    channels_group,
    outbox_group,
    report_command,
    contacts_group,
    simulate_command,
    inbox_command,
    people_group,
    import_command,
    import_events_command,
    api_keys_group,
    users_group,
    audit_command,
    retention_group,
    hits_group,
    worker,
    beat,
    web,
    demo,
    health_group,
):
    main.add_command(command)
campaigns_group.add_command(campaigns_promote)
