"""Ops endpoints: /healthz for load balancers and compose (/metrics: web/metrics.py).

GET /healthz   200 {"status": "ok", ...} when the database answers SELECT 1 and its schema
               is at the code's migration head; 503 {"status": "error", "reason": ...}
               otherwise. The broker is reported too, but only for information: the web
               process serves pages and webhooks without it, so it never fails the check.
               So is the scheduler, for information too: whether one leads, its heartbeat's
               age, the last tick's age and how many stand by (not who: no host names).
               No authentication; the answer names no host, path or credential (the full
               reason goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from campaigns.clock import SystemClock
from campaigns.db import ping
from campaigns.delivery.leadership import read_leadership
from campaigns.migrate import SchemaError, check_current

log = logging.getLogger(__name__)
router = APIRouter()

BROKER_TIMEOUT = 3.0  # seconds; a down Redis takes about two to refuse
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
