"""`drip hits [status] | requeue`: the queue of opens and clicks the link pages hand to
the workers (workers/hit_queue.py): how many wait, and failed ones back in line.

`requeue` changes Redis only, never the database: what it moves is recorded (or not)
by the drainer as any queued hit, exactly once by its id, so there is no staff change
of data to audit; it says what it moved, and the drainer logs what it records."""

from __future__ import annotations

import click

from workers.cli.context import Drip, pass_drip
from workers.hit_queue import ATTEMPTS, COLLAPSE_SECONDS, HitQueue, build_hit_queue


def _queue(drip: Drip) -> HitQueue:
    queue = build_hit_queue(drip.settings)
    if queue is None:
        raise click.ClickException("no hit queue: REDIS_URL is not set (pages record hits)")
    return queue


@click.group("hits", invoke_without_command=True)
@click.pass_context
def hits_group(ctx: click.Context) -> None:
    """The queue of opens and clicks waiting to be recorded."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(hits_status)


@hits_group.command("status")
@pass_drip
def hits_status(drip: Drip) -> None:
    """How many hits are pending, being recorded, and failed (kept for ops)."""
    queue = _queue(drip)
    try:
        depth = queue.depth()
        failures = queue.failures()
        repeats = int(queue.redis.get(queue.repeats) or 0)
    except Exception as exc:  # redis.RedisError and its kin: one line, not a traceback
        raise click.ClickException(f"redis does not answer: {exc}") from None
    click.echo(
        f"pending {depth['pending']}, processing {depth['processing']}, failed {depth['failed']}"
    )
    given_up = sum(1 for _, entry in failures if entry.get("attempts", ATTEMPTS) >= ATTEMPTS)
    click.echo(f"repeats answered and not queued (within {COLLAPSE_SECONDS} s), ever: {repeats}")
    if failures:
        click.echo(f"  of the failed, {given_up} no longer retried (`drip hits requeue`)")
        reasons: dict[str, int] = {}
        for _, entry in failures:
            reason = str(entry.get("reason", "unreadable"))[:80]
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            click.echo(f"  {n:>6}  {reason}")


@hits_group.command("requeue")
@pass_drip
def hits_requeue(drip: Drip) -> None:
    """Put every failed hit back in line, its attempts counted from nought (after the
    cause is fixed: a hit that fails again goes back to failed)."""
    queue = _queue(drip)
    try:
        moved = queue.retry_failed(everything=True)
        left = queue.depth()["failed"]
    except Exception as exc:
        raise click.ClickException(f"redis does not answer: {exc}") from None
    click.echo(f"requeued {moved} failed hit(s); {left} left (not hits: nothing can record them)")
