"""The counters and histograms that move as things happen, in one place (prometheus_client).

The gauges read from the database at scrape time live beside the /metrics route
(web/metrics.py); these are the events the database does not keep a count of: sends by
outcome, provider calls and their latency, webhook deliveries, inbound texts, ticks.

Multi-process mode: Celery's prefork pool and `uvicorn --workers N` are several
processes, each with its own memory. When PROMETHEUS_MULTIPROC_DIR is set before
prometheus_client is imported, every process writes its values to files there and a
scrape adds them up (`registry()`); `drip worker` and `drip web` set it to a fresh
private directory when it is unset (`prepare_multiprocess_dir`). Without it (tests
in one process, an embedder) the values stay in this process and `registry()` serves
them from memory.
"""

from __future__ import annotations

import functools
import glob
import os
import tempfile
import time
from pathlib import Path

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

ENV = "PROMETHEUS_MULTIPROC_DIR"
# The per-series "_created" gauges only double the exposition; multiprocess mode has none.
prometheus_client.disable_created_metrics()

# Ours only, never the default registry: in one process a scrape serves exactly these,
# and in multiprocess mode the files hold exactly these.
REGISTRY = CollectorRegistry(auto_describe=True)

# Provider calls take tens of milliseconds to tens of seconds (a timeout).
CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Due to sent: seconds when all is well, hours when texts wait for the morning.
DELAY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 3 * 3600, 12 * 3600, 86400)
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SEND_OUTCOMES = Counter(
    "drip_send_outcomes_total",
    "Messages a send task handled, by channel and what became of them (the fields of "
    "campaigns.delivery.outcomes.BatchReport: sent, retry, failed, unconfirmed, suppressed, "
    "skipped, deferred, not_ours, paused, waiting).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
PROVIDER_REQUESTS = Counter(
    "drip_provider_requests_total",
    "Provider API requests by channel, provider, outcome (accepted, transient, permanent, "
    "unknown) and HTTP status class (2xx, 4xx, 5xx, none when no answer came).",
    ["channel", "provider", "outcome", "code_class"],
    registry=REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "drip_provider_request_duration_seconds",
    "Time one provider API request took, answered or not.",
    ["channel", "provider"],
    buckets=CALL_BUCKETS,
    registry=REGISTRY,
)
SEND_DELAY = Histogram(
    "drip_send_delay_seconds",
    "From a message's due time to its provider call, for messages recorded as sent.",
    ["channel"],
    buckets=DELAY_BUCKETS,
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "drip_webhook_deliveries_total",
    "Webhook requests by provider and result: accepted, refused (bad signature, 403), "
    "bad_payload (400), not_configured (503).",
    ["provider", "result"],
    registry=REGISTRY,
)
WEBHOOK_EVENTS = Counter(
    "drip_webhook_events_total",
    "Events in accepted webhook requests by provider and result: applied, duplicate, "
    "unknown_message.",
    ["provider", "result"],
    registry=REGISTRY,
)
INBOUND_TEXTS = Counter(
    "drip_inbound_texts_total",
    "Texts from people by what was done with them (campaigns.tracking.inbound.Kind).",
    ["kind"],
    registry=REGISTRY,
)
TICKS = Counter(
    "drip_ticks_total",
    "Scheduler ticks run, by result: ok, or database_down.",
    ["result"],
    registry=REGISTRY,
)


@functools.cache
def _tick_metrics() -> tuple[Histogram, Gauge]:
    # Made on first use: a metric without labels opens its file in PROMETHEUS_MULTIPROC_DIR
    # as it is made, and every `drip` command imports this module, not only the workers.
    duration = Histogram(
        "drip_tick_duration_seconds",
        "Time one tick took (claim due enrollments, write outbox rows, dispatch).",
        buckets=TICK_BUCKETS,
        registry=REGISTRY,
    )
    last = Gauge(
        "drip_last_tick_timestamp_seconds",
        "Unix time the last tick that reached the database ended.",
        registry=REGISTRY,
        # Any pool process may run the tick: the scrape takes the latest of them.
        multiprocess_mode="max",
    )
    return duration, last


def code_class(status: int | None) -> str:
    """An HTTP status as its class label; none when no answer came."""
    if status is None or not 100 <= status <= 599:
        return "none"
    return f"{status // 100}xx"


def record_provider_call(
    channel: str, provider: str, outcome: str, status: int | None, seconds: float
) -> None:
    PROVIDER_REQUESTS.labels(channel, provider, outcome, code_class(status)).inc()
    PROVIDER_LATENCY.labels(channel, provider).observe(seconds)


def record_batch(channel: str, report) -> None:
    """A send task's BatchReport as counters: every outcome field, and each sent
    message's delay after its due time."""
    for outcome, n in vars(report).items():
        if isinstance(n, int) and n:
            SEND_OUTCOMES.labels(channel, outcome).inc(n)
    for seconds in report.sent_delays:
        SEND_DELAY.labels(channel).observe(max(0.0, seconds))


def record_tick(seconds: float, ok: bool) -> None:
    TICKS.labels("ok" if ok else "database_down").inc()
    if ok:
        duration, last = _tick_metrics()
        duration.observe(seconds)
        last.set(time.time())


# ---------------------------------------------------------------- multiprocess mode


def multiprocess_dir() -> str | None:
    return os.environ.get(ENV) or None


def registry() -> CollectorRegistry:
    """What a scrape serves of these metrics: every process's files added up in
    multiprocess mode, else this process's values."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    scrape = CollectorRegistry()
    multiprocess.MultiProcessCollector(scrape, path=path)
    return scrape


def prepare_multiprocess_dir(role: str) -> str:
    """Before a long-running command starts its processes: the directory they will share,
    a fresh private one when PROMETHEUS_MULTIPROC_DIR is unset; a given one is emptied of
    the files a previous run left (their counts would be added to this run's)."""
    path = multiprocess_dir()
    if path is None:
        return tempfile.mkdtemp(prefix=f"drip-{role}-metrics-")
    Path(path).mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    return path


def process_exited(pid: int) -> None:
    """Bookkeeping when a pool process ends: its live gauges go (counters stay counted)."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """The worker's own /metrics over HTTP, from its main process, adding up its pool
    children's files (a thread of prometheus_client's; no route of ours)."""
    prometheus_client.start_http_server(port, addr=host, registry=registry())
