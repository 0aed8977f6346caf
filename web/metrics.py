"""GET /metrics for Prometheus, written by prometheus_client (text format 0.0.4).

Two kinds of family in one scrape:
- gauges read from the database (and the broker) at scrape time, by `DatabaseCollector`:
  backlog, messages and enrollments by status, paused channels, contact requests, the
  inbox, recent provider outcomes, queue depths, and whether the database and broker
  answered;
- counters and histograms that move as things happen in this process and, in
  multiprocess mode, in every other process sharing PROMETHEUS_MULTIPROC_DIR
  (workers/metrics.py): webhook deliveries, inbound texts. A worker serves its own
  (send outcomes, provider calls, ticks) on WORKER_METRICS_PORT.

Access: HTTP basic auth of an admin or ops staff account, or of the bootstrap admin
(ADMIN_USER / ADMIN_PASSWORD); required whenever ADMIN_PASSWORD is set or credentials
are sent. Otherwise only from loopback and only when no proxy header (Forwarded,
X-Forwarded-For, X-Real-IP) says the request came from further away, since a reverse
proxy on the same machine also connects from loopback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from campaigns.care import contact_queue
from campaigns.delivery.pauses import all_paused
from campaigns.delivery.unconfirmed import undecided
from campaigns.reporting.overview import read_status
from campaigns.reporting.provider_health import ChannelHealth, channel_health
from campaigns.staff.roles import ADMIN, OPS
from campaigns.states import CHANNELS, EnrollmentStatus, MessageStatus
from web.access import basic_staff, bootstrap_of
from web.ops import BROKER_TIMEOUT, _broker_pool, broker_depths
from workers import metrics as events

log = logging.getLogger(__name__)
router = APIRouter()

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PROVIDER_WINDOW_MINUTES = 15
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def _gauge(name: str, help_text: str, samples, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), float(value))
    return family


class DatabaseCollector(Collector):
    """The gauges of one scrape, read when the scrape asks (never cached)."""

    def __init__(self, request: Request):
        self.request = request

    def collect(self) -> Iterator[Metric]:
        families = self._database()
        yield from families or ()
        yield _gauge(
            "drip_database_up", "1 when the database answered this scrape.", [((), bool(families))]
        )
        up, depths, _ = broker_depths(self.request)
        yield _gauge("drip_broker_up", "1 when the broker answered this scrape.", [((), up)])
        yield _gauge(
            "drip_queue_depth",
            "Messages waiting in each broker queue.",
            [((q,), n) for q, n in depths.items()],
            ("queue",),
        )
        yield _gauge(
            "drip_hit_queue_depth",
            "Opens and clicks queued by the link pages and not yet recorded "
            "(pending, processing, failed: kept for ops).",
            [((k,), n) for k, n in hit_depths(self.request).items()],
            ("list",),
        )

    def _database(self) -> list[Metric] | None:
        state = self.request.app.state
        try:
            with state.factory() as session:
                status = read_status(session, state.clock)
                paused = {p.channel for p in all_paused(session)}
                waiting = contact_queue.waiting(session)
                health = channel_health(session, state.clock, PROVIDER_WINDOW_MINUTES)
                needs_ops, oldest_needs_ops = undecided(session, state.clock)
                now = state.clock.now()
        except Exception as exc:  # the scrape still says the database is down
            log.warning("metrics: database read failed: %s", exc)
            return None
        counts = status.by_channel
        channels = sorted(set(CHANNELS) | {c for _, c in counts} | paused | set(health))
        statuses = list(MessageStatus) + sorted({s for s, _ in counts} - set(MessageStatus))
        enrollment_statuses = list(EnrollmentStatus) + sorted(
            set(status.enrollments) - set(EnrollmentStatus)
        )
        outcomes = []
        for c in channels:
            h = health.get(c) or ChannelHealth(c)
            for outcome in ("sent", "transient", "permanent", "unconfirmed"):
                outcomes.append(((c, outcome), getattr(h, outcome)))
        oldest_request, oldest_text = waiting.oldest, status.inbox.oldest
        return [
            _gauge(
                "drip_due_backlog",
                "Active enrollments whose next step is due now.",
                [((), status.due_backlog)],
            ),
            _gauge(
                "drip_oldest_due_age_seconds",
                "Age of the oldest due enrollment or waiting message; 0 when nothing is due.",
                [((), status.oldest_due_age_seconds or 0.0)],
            ),
            _gauge(
                "drip_messages",
                "Outbox messages by status and channel.",
                [((s, c), counts.get((s, c), 0)) for s in statuses for c in channels],
                ("status", "channel"),
            ),
            _gauge(
                "drip_enrollments",
                "Enrollments by status.",
                [((s,), status.enrollments.get(s, 0)) for s in enrollment_statuses],
                ("status",),
            ),
            _gauge(
                "drip_channel_paused",
                "1 while the channel is paused (provider configuration error or ops).",
                [((c,), c in paused) for c in channels],
                ("channel",),
            ),
            _gauge(
                "drip_contact_requests_open",
                "Contact requests nobody has handled yet.",
                [((), waiting.count)],
            ),
            _gauge(
                "drip_contact_request_oldest_open_age_seconds",
                "How long the oldest unhandled contact request has waited; 0 when none.",
                [((), (now - oldest_request).total_seconds() if oldest_request else 0.0)],
            ),
            _gauge(
                "drip_contact_response_target_seconds",
                "The care team's response target for a contact request "
                "(CONTACT_RESPONSE_TARGET_HOURS), for alert rules to compare against.",
                [((), state.settings.contact_response_target_hours * 3600)],
            ),
            _gauge(
                "drip_unconfirmed_needs_ops",
                "Unconfirmed messages neither webhooks nor provider look-ups settled, waiting "
                "for ops (drip messages unconfirmed).",
                [((), needs_ops)],
            ),
            _gauge(
                "drip_unconfirmed_needs_ops_oldest_age_seconds",
                "How long the oldest of those has waited since it was flagged; 0 when none.",
                [((), oldest_needs_ops or 0.0)],
            ),
            _gauge(
                "drip_inbox_open",
                "Texts from people that are neither a keyword nor an opt-out, waiting for a "
                "person.",
                [((), status.inbox.count)],
            ),
            _gauge(
                "drip_inbox_oldest_open_age_seconds",
                "How long the oldest unread text has waited; 0 when none.",
                [((), (now - oldest_text).total_seconds() if oldest_text else 0.0)],
            ),
            _gauge(
                "drip_provider_outcomes",
                "Messages by their latest provider call outcome in the last "
                f"{PROVIDER_WINDOW_MINUTES} minutes.",
                outcomes,
                ("channel", "outcome"),
            ),
        ]


class _Events(Collector):
    """This process's counters, or every process's in multiprocess mode."""

    def collect(self) -> Iterator[Metric]:
        yield from events.registry().collect()


def hit_depths(request: Request) -> dict[str, int]:
    """The hit queue's lists (workers/hit_queue.py); none without Redis or when it does
    not answer within BROKER_TIMEOUT."""
    queue = request.app.state.runtime.hit_queue
    if queue is None:
        return {}
    try:
        return _broker_pool.submit(queue.depth).result(timeout=BROKER_TIMEOUT)
    except Exception:  # reported as missing samples (drip_broker_up says why), never raised
        return {}


def render(request: Request) -> bytes:
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(DatabaseCollector(request))
    scrape.register(_Events())
    return generate_latest(scrape)


def _allow_metrics(request: Request) -> None:
    if bootstrap_of(request.app.state.settings) or request.headers.get("authorization"):
        staff = basic_staff(request)
        if staff.role not in (ADMIN, OPS):
            raise HTTPException(403, f"metrics are for admin and ops; {staff.name} is {staff.role}")
        return
    host = request.client.host if request.client else None
    proxied = any(request.headers.get(h) for h in PROXY_HEADERS)
    if host not in LOOPBACK or proxied:
        raise HTTPException(
            403,
            "metrics: set ADMIN_PASSWORD to scrape with basic auth, or scrape from this machine",
        )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    _allow_metrics(request)
    body = await run_in_threadpool(render, request)
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
