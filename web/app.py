"""The FastAPI application. Run with `uvicorn --factory web.app:create_app`.

Everything a route needs is built once per app and kept on `app.state`: the settings,
one engine and session factory (a pool per process), and the clock. Tests pass their own
factory and fixed clock; production builds them from settings.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock, clock_from_settings
from campaigns.db import make_engine, make_session_factory
from settings import Settings, get_settings
from web import pages, webhooks


def create_app(settings: Settings | None = None, factory: sessionmaker[Session] | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
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
    app.include_router(webhooks.router)
    app.include_router(pages.router)
    return app
