"""Commands that become a long-running process: `drip worker`, `drip beat`, `drip web`
(each replaces this process with Celery or uvicorn, which build their own runtime from
the same environment) and `drip demo`."""

from __future__ import annotations

import os
import sys

import click

from workers.cli.context import Drip, pass_drip
from workers.demo import CAMPAIGN, run_demo

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOGLEVEL = click.option(
    "--loglevel",
    "-l",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Default: LOG_LEVEL.",
)


def default_node_name() -> str:
    """worker-<pid>@<host>: two workers on one host otherwise share Celery's default name
    (celery@<host>), and `celery inspect` and Flower see one node where there are two.
    The pid survives the exec into Celery, and is unique on the host while it runs."""
    return f"worker-{os.getpid()}@%h"


def _metrics_dir(role: str) -> None:
    """The directory the processes about to start share their metrics in (multiprocess
    mode, workers/metrics.py): set here, before they import prometheus_client."""
    from workers import metrics

    try:
        os.environ[metrics.ENV] = metrics.prepare_multiprocess_dir(role)
    except OSError as exc:
        raise click.ClickException(
            f"{metrics.ENV}={os.environ.get(metrics.ENV)}: {exc.strerror or exc}"
        ) from None


def _known_queues(value: str) -> str:
    """Only queues something routes to: a typo (`-Q emial`) would start a worker that
    waits for ever on a queue nothing publishes to. Checked after the settings: importing
    workers.app builds the Celery app from them."""
    from workers.app import QUEUES

    names = [q.strip() for q in value.split(",")]
    unknown = [q for q in names if q not in QUEUES]
    if unknown:
        raise click.BadParameter(
            f"unknown queue(s) {', '.join(repr(q) for q in unknown)} (known: {', '.join(QUEUES)})",
            param_hint="'--queues' / '-Q'",
        )
    return ",".join(dict.fromkeys(names))


@click.command(
    "worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.option(
    "--queues",
    "-Q",
    default="schedule,email,sms,events",
    show_default=True,
    help="Comma-separated, from: schedule, email, sms, events.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Pool processes (at least 1).",
)
@click.option(
    "--hostname",
    "-n",
    default=None,
    help="The worker's node name, as Celery's -n (%h is the host name). "
    "Default: worker-<pid>@<host>, unique per process.",
)
@LOGLEVEL
@click.option(
    "--beat", is_flag=True, help="Also run a scheduler in this process (it leads or stands by)."
)
@pass_drip
@click.pass_context
def worker(ctx: click.Context, drip: Drip, queues, concurrency, hostname, loglevel, beat) -> None:
    """Run a Celery worker (add more processes or machines to scale out)."""
    _ = drip.settings  # a bad setting stops here, with its name, not inside Celery
    if hostname is not None and not hostname.strip():
        raise click.BadParameter("must not be empty", param_hint="'--hostname'")
    queues = _known_queues(queues)
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-n",
        hostname or default_node_name(),
        "-l",
        loglevel or drip.settings.log_level.lower(),
        "--without-mingle",
        "--without-gossip",
    ]
    if beat:
        args += ["-B"]
    _metrics_dir("worker")
    os.execv(sys.executable, args + list(ctx.args))


@click.command("beat")
@LOGLEVEL
@pass_drip
def beat(drip: Drip, loglevel) -> None:
    """Run a scheduler. Several may run (on several hosts): one leads and publishes the
    schedule, the others stand by and take over within seconds if it dies."""
    _ = drip.settings  # a bad setting stops here, with its name, not inside Celery
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "beat",
            "-l",
            loglevel or drip.settings.log_level.lower(),
        ],
    )


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", "processes", default=1, show_default=True)
@pass_drip
def web(drip: Drip, host, port, processes) -> None:
    """Run the web app: subscriber pages, provider webhooks, admin pages, /metrics, /healthz."""
    _ = drip.settings  # a bad setting stops here, with its name, not inside uvicorn
    _metrics_dir("web")
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "web.app:create_app",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(processes),
            "--proxy-headers",
            "--no-server-header",
            # TCP_NODELAY on every connection: with --workers, uvicorn's own listener
            # leaves Nagle's algorithm on (web/server_protocol.py).
            "--http",
            "web.server_protocol:NoDelayHTTPProtocol",
        ],
    )


@click.command("demo")
@click.option("--workdir", default="var/demo", show_default=True)
@click.option("--campaign", default=CAMPAIGN, show_default=True, help="The course to run.")
@click.option(
    "--definitions",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of campaign files (default: DEFINITIONS_DIR).",
)
@click.option(
    "--templates",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Templates folder (default: TEMPLATES_DIR).",
)
@click.option(
    "--serve",
    is_flag=True,
    help="Afterwards, keep the web app up on the demo's data at PUBLIC_BASE_URL "
    "(default http://localhost:8000) so the links in its emails open; Ctrl-C stops it.",
)
@click.option("--timeout", default=300.0, show_default=True, help="Give up after these seconds.")
@click.pass_context
def demo(ctx: click.Context, workdir, campaign, definitions, templates, serve, timeout) -> None:
    """Run a whole course for seven sample people at its exact times, in about a minute."""
    # Not this invocation's settings: the demo sets its own environment (a scratch
    # database, the shared virtual clock) and builds its runtime from that.
    ctx.exit(
        run_demo(
            workdir,
            campaign=campaign,
            definitions=definitions,
            templates=templates,
            serve=serve,
            timeout=timeout,
        )
    )
