"""`drip health worker | beat`: container healthchecks. Each exits 0 when the process on
this host is alive, otherwise non-zero with one line saying why.

    worker  a worker whose node name is on this host answers a broadcast ping in time
            (node names end in @<host>: `drip worker` names them worker-<pid>@<host>)
    beat    a scheduler on this host wrote its heartbeat row lately (leading or standby:
            a standby is healthy, it is ready to take over)
"""

from __future__ import annotations

import re
import socket

import click

from campaigns.clock import SystemClock
from campaigns.delivery.leadership import read_leadership
from workers.cli.context import Drip, pass_drip


@click.group("health")
def health_group() -> None:
    """Is this host's worker or scheduler alive (for container healthchecks)."""


@health_group.command("worker")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=60),
    default=3.0,
    show_default=True,
    help="Seconds to wait for the answers.",
)
@pass_drip
def health_worker(drip: Drip, timeout) -> None:
    """Exit 0 when a worker on this host answers a ping within TIMEOUT seconds."""
    from workers.app import make_app  # builds the Celery app: only this command needs it

    host = socket.gethostname()
    app = make_app(drip.settings)
    try:
        # Only this host's workers answer (pidbox matches the pattern on each node), so a
        # healthcheck per container does not make every worker of the deployment reply.
        answers = app.control.ping(
            timeout=timeout, pattern=f".*@{re.escape(host)}$", matcher="pcre"
        )
    except Exception as exc:  # the broker is away: that is the answer, in one line
        raise click.ClickException(f"broker unreachable ({type(exc).__name__}: {exc})") from None
    finally:
        app.close()
    nodes = [name for answer in answers for name in answer]
    here = [n for n in nodes if n.rpartition("@")[2] == host]
    if not here:
        seen = f" (others answered: {', '.join(sorted(nodes))})" if nodes else ""
        raise click.ClickException(f"no worker on {host} answered a ping within {timeout:g}s{seen}")
    click.echo(f"ok: {', '.join(sorted(here))}")


@health_group.command("beat")
@click.option(
    "--max-age",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Oldest heartbeat that counts, in seconds (default: SCHEDULER_LEASE_SECONDS).",
)
@pass_drip
def health_beat(drip: Drip, max_age) -> None:
    """Exit 0 when a scheduler on this host wrote its heartbeat lately."""
    host = socket.gethostname()
    limit = max_age or drip.settings.scheduler_lease_seconds
    try:
        with drip.runtime().factory() as session:
            state = read_leadership(session, SystemClock(), limit)
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(f"database unreachable ({type(exc).__name__})") from None
    fresh = state.fresh_on(host, limit)
    if not fresh:
        raise click.ClickException(f"no scheduler heartbeat on {host} in the last {limit:g}s")
    best = fresh[0]
    click.echo(f"ok: {best.holder} {best.role}, heartbeat {best.heartbeat_age_seconds:.1f}s ago")
