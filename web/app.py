"""The FastAPI application. Run with `uvicorn --factory web.app:create_app`.

Everything a route needs is built once per app and kept on `app.state`: the settings,
one engine and session factory (a pool per process), and the clock. Tests pass their own
factory and fixed clock; production builds them from settings.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock, clock_from_settings
from campaigns.db import make_engine, make_session_factory
from campaigns.sequences.campaign import Registry
from campaigns.tracking.links import Signer
from campaigns.content.rendering import Renderer, Sender
from campaigns.delivery.claiming import Policy
from settings import Settings, get_settings
from web import admin, ops, pages, signup, webhooks


def create_app(settings: Settings | None = None, factory: sessionmaker[Session] | None = None,
               clock: Clock | None = None, dispatch: Callable | None = None) -> FastAPI:
    settings = settings or get_settings()
    built_here = factory is None
    engine = None
    if factory is None:
        engine = make_engine(settings.database_url)
        factory = make_session_factory(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if engine is not None:  # only dispose what this app created
            engine.dispose()

    # No interactive docs: nothing here is for browsing, and the webhook shapes are the
    # providers' own.
    app = FastAPI(title="Lunara drip", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.settings = settings
    app.state.factory = factory
    app.state.clock = clock or clock_from_settings(settings)
    # Built once: the registry re-reads campaign files only when they change.
    app.state.registry = Registry(settings.definitions_dir, settings.templates_dir)
    app.state.renderer = Renderer(settings.templates_dir, Sender(settings.brand_name, settings.postal_address))
    app.state.signer = Signer(settings.secret_key.get_secret_value().encode())
    app.state.policy = Policy.from_settings(settings)
    if dispatch is None and built_here:
        # Production: ops actions (resend, resume) hand work straight to the workers. Apps
        # built around a test's own database stay broker-free; the reaper picks work up.
        def dispatch(work):
            from workers.tasks import dispatch as celery_dispatch

            celery_dispatch(work)
    app.state.dispatch = dispatch
    app.include_router(webhooks.router)
    app.include_router(pages.router)
    app.include_router(signup.router)
    app.include_router(admin.router)
    app.include_router(ops.router)
    return app
