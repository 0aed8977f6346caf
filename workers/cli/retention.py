"""`drip retention run [--dry-run]`: the daily prune (campaigns.reporting.retention) by
hand, or what it would do now."""

from __future__ import annotations

import click

from campaigns.reporting import retention
from campaigns.staff import audit
from workers.cli.context import Drip, cli_actor, pass_drip
from workers.runtime import retention_policy


@click.group("retention")
def retention_group() -> None:
    """How long raw events and message detail are kept."""


def _prune(session, clock, policy: retention.Policy) -> retention.Outcome:
    """The prune run by a person: it commits batch by batch (a giant delete would hold its
    locks for minutes), so each batch that changed rows carries its own audit entry, in
    its own transaction. The daily task runs the same prune with none: no one acted."""
    actor = cli_actor()
    event_cutoff, message_cutoff = policy.cutoffs(clock.now())
    cutoffs = {
        "event_cutoff": event_cutoff and event_cutoff.isoformat(),
        "message_cutoff": message_cutoff and message_cutoff.isoformat(),
    }

    def entry(batch_session, batch: retention.Batch) -> None:
        after = {**cutoffs, **vars(batch)}
        audit.record(batch_session, clock, actor, "retention.prune", "retention", None, None, after)

    return retention.prune(session, clock, policy, on_batch=entry)


def _cutoff(label: str, at, days: int) -> str:
    if at is None:
        return f"{label}: kept forever (0 days)"
    return f"{label}: older than {days} days (before {at:%Y-%m-%d %H:%M} UTC)"


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Say what a run would do; change nothing.")
@pass_drip
def retention_run(drip: Drip, dry_run: bool) -> None:
    """Roll up old opens and clicks, delete old raw events, clear old messages' detail."""
    rt = drip.runtime()
    policy = retention_policy(drip.settings)
    with rt.factory() as session:
        if dry_run:
            out = retention.plan(session, rt.clock, policy)
        else:
            out = _prune(session, rt.clock, policy)
    click.echo(_cutoff("events", out.event_cutoff, policy.event_days))
    click.echo(_cutoff("message detail", out.message_cutoff, policy.message_days))
    if dry_run:
        click.echo(
            f"would roll up {out.events_rolled} open/click event(s) of "
            f"{out.messages_rolled} message(s), delete {out.events_deleted} event(s), "
            f"clear the detail of {out.messages_cleared} message(s)"
        )
        return
    rate = out.events_deleted / out.seconds if out.seconds else 0.0
    click.echo(
        f"rolled up {out.events_rolled} open/click event(s) into {out.rollup_rows} row(s), "
        f"deleted {out.events_deleted} event(s), cleared the detail of "
        f"{out.messages_cleared} message(s), in {out.batches} batch(es), "
        f"{out.seconds:.1f} s ({rate:,.0f} events/s)"
    )
