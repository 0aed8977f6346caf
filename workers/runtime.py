"""What a worker process needs, built once per process from settings.

Built lazily and keyed by pid: Celery's prefork pool forks children after import, and a
database connection pool must never be shared across a fork.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import Clock, clock_from_settings
from campaigns.db import make_engine, make_session_factory
from campaigns.sequences.campaign import Registry
from campaigns.tracking.links import Signer
from campaigns.migrate import check_current
from campaigns.content.rendering import Renderer, Sender
from campaigns.delivery.claiming import Policy
from campaigns.delivery.sending import SendContext
from settings import Settings, get_settings
from workers.providers import build_providers
from workers.ratelimit import build_limiters


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    clock: Clock
    registry: Registry
    policy: Policy
    send: SendContext


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.database_url)
    check_current(engine)  # a worker on an old schema must stop at once, saying why
    factory = make_session_factory(engine)
    clock = clock_from_settings(settings)
    registry = Registry(settings.definitions_dir, settings.templates_dir)
    policy = Policy.from_settings(settings)
    email, sms = build_providers(settings)
    renderer = Renderer(settings.templates_dir, Sender(settings.brand_name, settings.postal_address))
    send = SendContext(
        factory=factory, clock=clock, registry=registry, renderer=renderer,
        signer=Signer(settings.secret_key.get_secret_value().encode()), policy=policy,
        base_url=settings.public_base_url, email_provider=email, sms_provider=sms,
        limiters=build_limiters(settings),
        lease=timedelta(seconds=settings.lease_seconds), max_attempts=settings.max_attempts,
        retry_base=settings.retry_base_seconds, retry_cap=settings.retry_cap_seconds,
    )
    return Runtime(settings, engine, factory, clock, registry, policy, send)


_runtime: Runtime | None = None
_pid: int | None = None


def runtime() -> Runtime:
    global _runtime, _pid
    if _runtime is None or _pid != os.getpid():
        _runtime = build_runtime(get_settings())
        _pid = os.getpid()
    return _runtime
