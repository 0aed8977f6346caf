"""Commands that act on who gets what: `drip enroll`, `drip channels ...`
(pause and resume a whole channel) and `drip outbox ...` (list and settle messages, one
or in bulk)."""

from __future__ import annotations

from datetime import timedelta

import click

from campaigns.audience.subscribers import InvalidSubscriber, upsert_subscriber
from campaigns.db import transaction
from campaigns.delivery.enrollment import enroll as enroll_subscriber
from campaigns.delivery.pauses import all_paused
from campaigns.delivery.unconfirmed import (
    OPS_OUTCOMES,
    OpsError,
    Selection,
    preview_many,
)
from campaigns.reporting.outbox import messages_in
from campaigns.sequences.campaign import DefinitionError
from campaigns.staff import audited
from campaigns.states import CHANNELS, MessageStatus
from workers.cli.context import Drip, cli_actor, pass_drip


def _dispatch(drip: Drip, work) -> None:
    # Imported here: workers.tasks builds the Celery app (and reads the broker settings)
    # when imported, which only the commands that hand work to the workers need.
    from workers.tasks import dispatch

    dispatch(work, drip.settings)


@click.command("enroll")
@click.option("--campaign", required=True)
@click.option("--email")
@click.option("--phone")
@click.option("--first-name")
@click.option("--timezone", "tz")
@click.option("--locale")
@pass_drip
def enroll(drip: Drip, campaign, email, phone, first_name, tz, locale) -> None:
    """Add a subscriber (consenting to the channels given) and enroll them."""
    rt = drip.runtime()
    consent = tuple(c for c, v in (("email", email), ("sms", phone)) if v)
    try:
        with transaction(rt.factory) as session:
            sub = upsert_subscriber(
                session,
                rt.clock,
                email=email,
                phone=phone,
                first_name=first_name,
                timezone=tz,
                locale=locale,
                consent=consent,
                source="cli",
            )
            e = enroll_subscriber(
                session, rt.clock, rt.registry, sub, campaign, rt.policy, source="cli"
            )
            click.echo(
                f"enrollment {e.id}: next step {e.next_step_key} "
                f"due {e.next_due_at:%Y-%m-%d %H:%M} UTC"
            )
    except (InvalidSubscriber, DefinitionError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group("channels", invoke_without_command=True)
@click.pass_context
def channels_group(ctx: click.Context) -> None:
    """Each channel's state; pause and resume a whole channel (a provider outage, a
    credential change)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(channels_list)


@channels_group.command("list")
@pass_drip
def channels_list(drip: Drip) -> None:
    """Each channel: sending, or paused since when, by whom and why."""
    with drip.runtime().factory() as session:
        paused = {row.channel: row for row in all_paused(session)}
    for channel in CHANNELS:
        row = paused.get(channel.value)
        if row is None:
            click.echo(f"{channel.value}: sending")
        else:
            click.echo(
                f"{channel.value}: paused since {row.created_at:%Y-%m-%d %H:%M} UTC "
                f"by {row.paused_by}: {row.reason}"
            )
    if not paused:
        click.echo("no channel is paused")


@channels_group.command("pause")
@click.argument("channel", type=click.Choice([c.value for c in CHANNELS]))
@click.option("--reason", required=True)
@pass_drip
def channels_pause(drip: Drip, channel, reason) -> None:
    """Stop sending on CHANNEL; messages wait, queued, until it is resumed."""
    rt = drip.runtime()
    with transaction(rt.factory) as session:
        audited.pause_channel(session, rt.clock, cli_actor(), channel, reason)
    click.echo(f"{channel} paused")


@channels_group.command("resume")
@click.argument("channel", type=click.Choice([c.value for c in CHANNELS]))
@pass_drip
def channels_resume(drip: Drip, channel) -> None:
    """Resume CHANNEL and hand its waiting messages back to the workers."""
    rt = drip.runtime()
    with transaction(rt.factory) as session:
        _, work = audited.resume_channel(session, rt.clock, cli_actor(), channel)
    _dispatch(drip, work)
    click.echo(f"{channel} resumed; {len(work)} waiting messages handed to the workers")


@click.group("outbox")
def outbox_group() -> None:
    """Inspect and settle outbox messages."""


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@outbox_group.command("list")
@click.option(
    "--status",
    "status_",
    type=click.Choice([s.value for s in MessageStatus]),
    default=MessageStatus.UNCONFIRMED.value,
    show_default=True,
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@pass_drip
def outbox_list(drip: Drip, status_, limit) -> None:
    """Messages in one state, oldest change first, with each one's age in it."""
    rt = drip.runtime()
    now = rt.clock.now()
    with rt.factory() as session:
        rows = messages_in(session, status_, limit)
        if not rows:
            click.echo(f"no {status_} messages")
        for m in rows:
            # For an unconfirmed message, updated_at is when it became unconfirmed.
            age = age_text((now - m.updated_at).total_seconds())
            click.echo(
                f"#{m.id} {m.campaign_key}/{m.step_key} {m.channel} age={age} "
                f"attempts={m.attempts} provider_id={m.provider_message_id or '-'} "
                f"reason={m.reason}"
            )


@outbox_group.command("settle")
@click.argument("message_id", type=int)
@click.option("--as", "outcome", type=click.Choice(list(OPS_OUTCOMES)), required=True)
@pass_drip
def outbox_settle(drip: Drip, message_id, outcome) -> None:
    """Decide an unconfirmed message after checking the provider's own logs."""
    rt = drip.runtime()
    try:
        with transaction(rt.factory) as session:
            work = audited.settle_message(session, rt.clock, cli_actor(), message_id, outcome)
    except OpsError as exc:
        raise click.ClickException(str(exc)) from None
    _dispatch(drip, work)
    click.echo(f"message {message_id}: {outcome}")


@outbox_group.command("settle-all")
@click.option("--as", "outcome", type=click.Choice(list(OPS_OUTCOMES)), required=True)
@click.option("--channel", type=click.Choice([c.value for c in CHANNELS]))
@click.option(
    "--older-than",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Only messages unconfirmed for at least this many seconds.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_drip
def outbox_settle_all(drip: Drip, outcome, channel, older_than, yes) -> None:
    """Settle every unconfirmed message (on CHANNEL, older than N s) at once, after
    checking the provider's console; shows how many and asks before it acts."""
    rt = drip.runtime()
    # Only those listed now: one that turns unconfirmed while you read is left out.
    selection = Selection(channel, timedelta(seconds=older_than), as_of=rt.clock.now())
    with rt.factory() as session:
        count, oldest = preview_many(session, rt.clock, selection)
    if not count:
        click.echo("no unconfirmed messages match")
        return
    where = f" on {channel}" if channel else ""
    click.echo(
        f"{count} unconfirmed message(s){where}, oldest {age_text(oldest)}, "
        f"to be settled as {outcome}"
    )
    if not yes:
        click.confirm("Settle them?", abort=True)
    with transaction(rt.factory) as session:
        settled, work = audited.settle_all(session, rt.clock, cli_actor(), selection, outcome)
    _dispatch(drip, work)
    click.echo(f"{settled} message(s) settled: {outcome}")
