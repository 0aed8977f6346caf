"""Ops endpoints: /healthz for load balancers and compose, /metrics for Prometheus.

GET /healthz   200 {"status": "ok", ...} when the database answers SELECT 1 and its schema
               is at the code's migration head; 503 {"status": "error", "reason": ...}
               otherwise. The broker is reported too, but only for information: the web
               process serves pages and webhooks without it, so it never fails the check.
               So is the scheduler, for information too: whether one leads, its heartbeat's
               age, the last tick's age and how many stand by (not who: no host names).
               No authentication; the answer names no host, path or credential (the full
               reason goes to the log).

GET /metrics   Prometheus text exposition format 0.0.4, written by hand. Every value is
               read from the database (and the broker) at scrape time, so all are gauges.
               Access: HTTP basic auth of an admin or ops staff account, or of the
               bootstrap admin (ADMIN_USER / ADMIN_PASSWORD); required whenever
               ADMIN_PASSWORD is set or credentials are sent. Otherwise only from
               loopback and only when no proxy header (Forwarded, X-Forwarded-For,
               X-Real-IP) says the request came from further away, since a reverse proxy
               on the same machine also connects from loopback.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from campaigns.care import contact_queue
from campaigns.clock import SystemClock
from campaigns.db import ping
from campaigns.delivery.leadership import read_leadership
from campaigns.delivery.pauses import all_paused
from campaigns.migrate import SchemaError, check_current
from campaigns.reporting.overview import read_status
from campaigns.reporting.provider_health import ChannelHealth, channel_health
from campaigns.staff.roles import ADMIN, OPS
from campaigns.states import CHANNELS, EnrollmentStatus, MessageStatus
from web.access import basic_staff, bootstrap_of

log = logging.getLogger(__name__)
router = APIRouter()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BROKER_TIMEOUT = 3.0  # seconds; a down Redis takes about two to refuse
PROVIDER_WINDOW_MINUTES = 15
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
# One thread for broker probes, so a hanging broker cannot pile up threads.
_broker_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-probe")


def _queue_depths(request: Request) -> Callable:
    # Tests and embedders may put their own probe on app.state; the default asks Celery.
    probe = getattr(request.app.state, "queue_depths", None)
    if probe is None:
        from workers.queues import queue_depths as probe
    return probe


def broker_depths(request: Request) -> tuple[bool, dict[str, int], str | None]:
    """(up, depths of the queues that answered, why not) within BROKER_TIMEOUT."""
    probe = _queue_depths(request)
    settings = request.app.state.settings
    try:
        result = _broker_pool.submit(probe, settings).result(timeout=BROKER_TIMEOUT)
    except FutureTimeout:
        return False, {}, f"no answer within {BROKER_TIMEOUT:.0f}s"
    except Exception as exc:  # reported, never raised
        return False, {}, f"unavailable ({type(exc).__name__})"
    depths = {name: n for name, n in result.items() if isinstance(n, int)}
    failed = [str(n) for n in result.values() if not isinstance(n, int)]
    if failed and not depths:
        return False, {}, failed[0]
    return True, depths, None


# ---------------------------------------------------------------- /healthz


def _check_database(request: Request) -> str | None:
    """None when healthy, else a reason fit for an unauthenticated reader."""
    factory = request.app.state.factory
    try:
        engine = ping(factory)
    except Exception as exc:  # any failure is the answer
        log.warning("healthz: database does not answer: %s", exc)
        return f"database does not answer ({type(exc).__name__})"
    try:
        check_current(engine)
    except SchemaError as exc:
        log.warning("healthz: %s", exc)
        return "database schema is not at the code's migration head; run `drip db upgrade`"
    except Exception as exc:  # an unreadable schema is reported, not raised
        log.warning("healthz: schema check failed: %s", exc)
        return f"database schema check failed ({type(exc).__name__})"
    return None


def _scheduler(request: Request) -> dict | str:
    """The schedulers' lease and heartbeat rows, as information: a missing leader is for
    `drip status` and alerts to report, the web process works without one."""
    try:
        with request.app.state.factory() as session:
            state = read_leadership(
                session, SystemClock(), request.app.state.settings.scheduler_lease_seconds
            )
    except Exception as exc:  # reported, never raised
        log.warning("healthz: scheduler rows unreadable: %s", exc)
        return "unknown"
    return {
        "leader": state.leader is not None,
        "heartbeat_age_seconds": _rounded(state.leader_heartbeat_age_seconds),
        "last_tick_age_seconds": _rounded(state.last_tick_age_seconds),
        "standby": len(state.standby),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    problem = await run_in_threadpool(_check_database, request)
    up, _, why = await run_in_threadpool(broker_depths, request)
    body = {
        "status": "ok" if problem is None else "error",
        "database": "ok" if problem is None else "error",
        "broker": "ok" if up else f"unreachable: {why}",
        "scheduler": (
            "unknown" if problem is not None else await run_in_threadpool(_scheduler, request)
        ),
    }
    if problem is not None:
        body["reason"] = problem
    return JSONResponse(
        body, status_code=200 if problem is None else 503, headers={"Cache-Control": "no-store"}
    )


# ---------------------------------------------------------------- /metrics


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exposition:
    """Families in the order added; each HELP and TYPE line written once."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(
        self, name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            self.lines.append(
                f"{name}{{{label_text}}} {_number(value)}" if labels else f"{name} {_number(value)}"
            )

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _database_metrics(request: Request, out: Exposition) -> bool:
    state = request.app.state
    try:
        with state.factory() as session:
            status = read_status(session, state.clock)
            paused = {p.channel for p in all_paused(session)}
            waiting = contact_queue.waiting(session)
            open_requests, oldest_open = waiting.count, waiting.oldest
            health = channel_health(session, state.clock, PROVIDER_WINDOW_MINUTES)
            now = state.clock.now()
    except Exception as exc:  # the scrape still says the database is down
        log.warning("metrics: database read failed: %s", exc)
        return False
    out.gauge(
        "drip_due_backlog",
        "Active enrollments whose next step is due now.",
        [({}, status.due_backlog)],
    )
    out.gauge(
        "drip_oldest_due_age_seconds",
        "Age of the oldest due enrollment or waiting message; 0 when nothing is due.",
        [({}, status.oldest_due_age_seconds or 0.0)],
    )
    counts = status.by_channel
    channels = sorted(set(CHANNELS) | {c for _, c in counts} | paused | set(health))
    statuses = list(MessageStatus) + sorted({s for s, _ in counts} - set(MessageStatus))
    out.gauge(
        "drip_messages",
        "Outbox messages by status and channel.",
        [({"status": s, "channel": c}, counts.get((s, c), 0)) for s in statuses for c in channels],
    )
    enrollment_statuses = list(EnrollmentStatus) + sorted(
        set(status.enrollments) - set(EnrollmentStatus)
    )
    out.gauge(
        "drip_enrollments",
        "Enrollments by status.",
        [({"status": s}, status.enrollments.get(s, 0)) for s in enrollment_statuses],
    )
    out.gauge(
        "drip_channel_paused",
        "1 while the channel is paused (provider configuration error or ops).",
        [({"channel": c}, c in paused) for c in channels],
    )
    out.gauge(
        "drip_contact_requests_open",
        "Contact requests nobody has handled yet.",
        [({}, open_requests)],
    )
    out.gauge(
        "drip_contact_request_oldest_open_age_seconds",
        "How long the oldest unhandled contact request has waited; 0 when none.",
        [({}, (now - oldest_open).total_seconds() if oldest_open else 0.0)],
    )
    out.gauge(
        "drip_inbox_open",
        "Texts from people that are neither a keyword nor an opt-out, waiting for a person.",
        [({}, status.inbox.count)],
    )
    out.gauge(
        "drip_inbox_oldest_open_age_seconds",
        "How long the oldest unread text has waited; 0 when none.",
        [({}, (now - status.inbox.oldest).total_seconds() if status.inbox.oldest else 0.0)],
    )
    outcome_samples = []
    for c in channels:
        h = health.get(c) or ChannelHealth(c)
        for outcome in ("sent", "transient", "permanent", "unconfirmed"):
            outcome_samples.append(({"channel": c, "outcome": outcome}, getattr(h, outcome)))
    out.gauge(
        "drip_provider_outcomes",
        "Messages by their latest provider call outcome in the last "
        f"{PROVIDER_WINDOW_MINUTES} minutes.",
        outcome_samples,
    )
    return True


def _render_metrics(request: Request) -> str:
    out = Exposition()
    db_up = _database_metrics(request, out)
    out.gauge("drip_database_up", "1 when the database answered this scrape.", [({}, db_up)])
    up, depths, _ = broker_depths(request)
    out.gauge("drip_broker_up", "1 when the broker answered this scrape.", [({}, up)])
    out.gauge(
        "drip_queue_depth",
        "Messages waiting in each broker queue.",
        [({"queue": q}, n) for q, n in depths.items()],
    )
    return out.text()


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
    body = await run_in_threadpool(_render_metrics, request)
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
