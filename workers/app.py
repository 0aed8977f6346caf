"""The Celery app: queues, routing, reliability settings and the beat schedule.

Broker: Redis when REDIS_URL is set; otherwise kombu's file-system transport under
BROKER_DIR, which needs no server and works across the processes of one machine. That
transport hands a message to one consumer and forgets it (at-most-once), which is why
the reaper re-enqueues queued messages whose task never started.

Reliability: acks_late with reject_on_worker_lost, so a task whose worker dies is
redelivered; every task is idempotent (it re-reads state and leases rows), so a
redelivery is harmless. Nothing is ever scheduled with a countdown of days: the database
holds the schedule and the broker only carries work that is due now.
"""

from __future__ import annotations

import logging
import os

from celery import Celery, signals
from celery.schedules import crontab
from kombu import Queue

from settings import SettingsError, get_settings
from workers import task_log  # noqa: F401 (one line per task run, by its signals)
from workers.filesystem_broker import register
from workers.logs import configure

QUEUES = ("schedule", "email", "sms", "events")


def _broker(settings) -> tuple[str, dict]:
    if settings.redis_url:
        options = {"visibility_timeout": settings.broker_visibility_timeout}
        if settings.redis_key_prefix:
            options["global_keyprefix"] = settings.redis_key_prefix
        return settings.redis_url, options
    folder = settings.broker_dir
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    # Each message written whole before it appears (workers/filesystem_broker.py): kombu's
    # own transport can hand a consumer an empty file, and the worker then stops.
    return register(), {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
        # kombu's default one-second poll takes about one message a second per free slot:
        # ticks, reaps and sends queue up behind each other until ticks expire unread.
        "polling_interval": 0.1,
    }


def make_app(settings=None) -> Celery:
    settings = settings or get_settings()
    broker, options = _broker(settings)
    app = Celery("drip", broker=broker, include=["workers.tasks"])
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="schedule",
        task_queues=[Queue(q, routing_key=q) for q in QUEUES],
        task_routes={
            "drip.tick": {"queue": "schedule"},
            "drip.reap": {"queue": "schedule"},
            "drip.send_email": {"queue": "email"},
            "drip.send_sms": {"queue": "sms"},
            "drip.notify": {"queue": "events"},
            "drip.triggers": {"queue": "schedule"},
            "drip.hits": {"queue": "events"},
            "drip.retention": {"queue": "schedule"},
        },
        beat_schedule={
            "tick": {
                "task": "drip.tick",
                "schedule": settings.tick_seconds,
                "options": {"expires": max(settings.tick_seconds * 3, 5)},
            },
            "reap": {
                "task": "drip.reap",
                "schedule": settings.reap_seconds,
                "options": {"expires": max(settings.reap_seconds * 3, 10)},
            },
            "notify": {
                "task": "drip.notify",
                "schedule": settings.reap_seconds,
                "options": {"expires": max(settings.reap_seconds * 3, 10)},
            },
            # Opens and clicks the pages queued in Redis (workers/hit_queue.py); without
            # Redis the pages record them themselves and there is nothing to drain.
            **(
                {
                    "hits": {
                        "task": "drip.hits",
                        "schedule": settings.hit_drain_seconds,
                        "options": {"expires": max(settings.hit_drain_seconds * 3, 5)},
                    }
                }
                if settings.redis_url
                else {}
            ),
            # Campaigns that enroll people by themselves (campaigns.journeys.triggers).
            "triggers": {
                "task": "drip.triggers",
                "schedule": settings.reap_seconds,
                "options": {"expires": max(settings.reap_seconds * 3, 10)},
            },
            # Daily, at a quiet hour (campaigns.reporting.retention).
            "retention": {
                "task": "drip.retention",
                "schedule": crontab(hour=3, minute=17),
                "options": {"expires": 6 * 3600},
            },
        },
        beat_max_loop_interval=min(5.0, settings.tick_seconds),
        # Says a broker outage once, not a traceback per task it could not publish.
        beat_scheduler="workers.beat:QuietScheduler",
        worker_hijack_root_logger=False,
        timezone="UTC",
    )
    return app


try:
    app = make_app()
except SettingsError as exc:
    # `drip` and `celery -A workers.app` import this module first: a bad setting is one
    # message naming the variable and exit status 1, not a traceback through the imports.
    raise SystemExit(f"drip: {exc}") from None


@signals.celeryd_init.connect
@signals.setup_logging.connect
def _setup_logging(loglevel=None, **_kwargs) -> None:
    # A setup_logging receiver means Celery configures no logging of its own: its lines
    # and ours go through one handler, as LOG_FORMAT says (workers/logs.py), at Celery's
    # `-l` (`drip worker` and `drip beat` pass LOG_LEVEL unless told otherwise).
    # celeryd_init comes first, before the worker's start-up warnings (running as root),
    # so those are lines of the format too.
    settings = get_settings()
    configure(settings.log_format, loglevel or settings.log_level)


@signals.worker_init.connect
def _check_schema(**_kwargs) -> None:
    # Fail at start-up, with the fix in the message, rather than on the first task. Only
    # the schema: providers (and their threads) are built in each pool process after fork.
    from workers.runtime import check_schema

    check_schema(get_settings())


@signals.worker_init.connect
def _serve_metrics(**_kwargs) -> None:
    # In the main process, before the pool forks: it only reads the pool's files.
    from workers import metrics

    settings = get_settings()
    if settings.worker_metrics_port is None:
        return
    if metrics.multiprocess_dir() is None:
        logging.getLogger(__name__).warning(
            "WORKER_METRICS_PORT without PROMETHEUS_MULTIPROC_DIR: the pool processes' "
            "counts are not seen; start the worker with `drip worker`, which sets it"
        )
    try:
        metrics.serve(settings.worker_metrics_port, settings.worker_metrics_host)
    except OSError as exc:  # a port in use: the worker still works, without its metrics
        logging.getLogger(__name__).error(
            "WORKER_METRICS_PORT %s on %s: %s; this worker's metrics are not served",
            settings.worker_metrics_port,
            settings.worker_metrics_host,
            exc.strerror or exc,
        )


@signals.worker_process_shutdown.connect
def _pool_process_gone(pid=None, **_kwargs) -> None:
    from workers import metrics

    metrics.process_exited(pid or os.getpid())
