"""The FastAPI application. Run with `uvicorn --factory web.app:create_app`.

Everything a route needs comes from one `Runtime` (workers/runtime.py, the composition
root), built once per app and laid out on `app.state`: the settings, one session factory
(a pool per process), the clock, registry, renderer, signer and policy. Tests pass their
own factory and fixed clock; production builds them from settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from campaigns.clock import Clock
from campaigns.content.shapes import Shapes
from campaigns.db import reader
from settings import Settings, get_settings
from web import (
    access,
    admin,
    api,
    audit,
    contacts,
    hits,
    login,
    metrics,
    ops,
    page_pool,
    pages,
    people,
    previews,
    results,
    sequences,
    signup,
    staff,
    webhooks,
)
from web.body_limits import BodyLimit
from web.request_log import RequestLog
from web.storm import StormPages
from workers import logs
from workers.runtime import build_runtime

# FastAPI's own OpenTelemetry hooks, off: drip exports Prometheus metrics (web/metrics.py)
# and configures no OpenTelemetry provider, and asking the global providers whether one
# is set cost a sixth of the open pixel's time (bench/web_load.py).
log = logging.getLogger(__name__)
TELEMETRY_OFF = {"tracing": False, "metrics": False, "logs": False}


async def keep_loaded(registry, settings) -> None:
    """The campaigns looked for anew in a thread (every SEQUENCES_REFRESH_SECONDS, at most
    every 2 s: a registry trusts what it loaded only so long, Registry.loaded), so the
    link pages on the event loop read the registry as loaded (web/hits.py AsLoaded) and
    never wait on its files or database themselves."""
    while True:
        try:
            await run_in_threadpool(registry.campaigns)
        except Exception:  # the registry says what went wrong itself; keep looking
            log.exception("the campaigns could not be looked for")
        await asyncio.sleep(min(settings.sequences_refresh_seconds, 2.0))


_frozen = False


def freeze_start_up() -> None:
    """What start-up built (settings, templates, the registry, SQLAlchemy's mappers) lives
    as long as the process: out of the collector's sight, so a full collection walks only
    what requests made (each one paused every request of the process: the link pages'
    slowest answers under load, bench/web_load.py). Once per process: a test session
    starts many apps."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def create_app(
    settings: Settings | None = None,
    factory: sessionmaker[Session] | None = None,
    clock: Clock | None = None,
    dispatch: Callable | None = None,
) -> FastAPI:
    if settings is None:
        # Run by uvicorn (`--factory`): this process logs as LOG_FORMAT says, uvicorn too.
        settings = get_settings()
        logs.configure_from(settings)
        logs.take_over_uvicorn()
        logs.lean_records()
    built_here = factory is None
    rt = build_runtime(settings, factory=factory, clock=clock)
    rt.seed_sequences()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        freeze_start_up()
        fresh = asyncio.create_task(keep_loaded(rt.registry, rt.settings))
        yield
        fresh.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fresh  # its thread done before the pools below close
        if rt.hit_queue is not None:
            await rt.hit_queue.aclose()
        if app.state.page_pool is not None:
            await app.state.page_pool.close()
        rt.dispose()  # only closes a pool this app created

    # No interactive docs: nothing here is for browsing, and the webhook shapes are the
    # providers' own.
    app = FastAPI(
        title="Lunara drip",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=TELEMETRY_OFF,
    )
    app.state.runtime = rt
    app.state.settings = rt.settings
    app.state.factory = rt.factory
    app.state.clock = rt.clock
    app.state.registry = rt.registry
    app.state.renderer = rt.renderer
    app.state.signer = rt.signer
    app.state.policy = rt.policy
    app.state.engagement = rt.engagement
    # Read-only look-ups of the link pages, per process (web/hits.py).
    app.state.lookups = hits.Lookups()
    app.state.loaded = hits.AsLoaded(rt.registry)  # what the event loop may read of it
    # Lessons rendered once per shape and filled per person (campaigns.content.shapes).
    app.state.shapes = Shapes(rt.renderer)
    app.state.reader = reader(rt.factory)
    app.state.page_pool = page_pool.build_page_pool(rt.factory)  # None but on PostgreSQL
    if dispatch is None and built_here:
        # Production: ops actions (resend, resume) hand work straight to the workers. Apps
        # built around a test's own database stay broker-free; the reaper picks work up.
        def dispatch(work):
            from workers.tasks import dispatch as celery_dispatch

            celery_dispatch(work, settings)

    app.state.dispatch = dispatch
    # Innermost: the pages a click storm hits, ahead of FastAPI's router (web/storm.py).
    app.add_middleware(StormPages)
    # Outside every route, so no body is read past its route's cap (web/body_limits.py).
    app.add_middleware(BodyLimit)
    # Outermost: one line per request, whatever an inner layer answered or raised.
    app.add_middleware(RequestLog)
    # The link pages first: routes are matched in order, and a click storm is their
    # requests by the thousand. No other router's paths overlap theirs.
    app.include_router(pages.router)
    app.include_router(webhooks.router)
    app.include_router(previews.router)
    app.include_router(signup.router)
    # A staff page refused (the sign-in redirect, a 403 or 429 page) is a page, not JSON.
    app.add_exception_handler(access.Refusal, access.refusal_response)
    app.include_router(login.router)
    app.include_router(admin.router)
    app.include_router(results.router)
    app.include_router(sequences.router)
    app.include_router(contacts.router)
    app.include_router(people.router)
    app.include_router(staff.router)
    app.include_router(audit.router)
    app.include_router(ops.router)
    app.include_router(metrics.router)
    app.include_router(api.router)
    return app
