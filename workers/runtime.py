"""The composition root: the one place that turns `Settings` into the running object graph.

The web app (`web/app.py`), the Celery tasks, the demo and every `drip` command get their
session factory, clock, registry, renderer, signer and policy from a `Runtime` built here,
so a new service is wired once and every process sees the same one.

Built eagerly, because they are cheap and nearly every caller uses them: the engine and
session factory (a pool that does not connect until first used), the clock, the
registry, the renderer, the signer and the policy. Built on first use, because they open
connections or start threads: the providers (a Twilio client runs its own event loop),
the rate limiters and the send context. A `drip status` never builds a Twilio client.

Workers call `runtime()`: one per process, keyed by pid, because Celery's prefork pool
forks children after import and a database connection pool must never be shared across
a fork. Everything else calls `build_runtime` with the settings (and, in tests, the
factory and clock) it has.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from campaigns.audience.suppression import KEY_INFO, address_key
from campaigns.clock import Clock, clock_from_settings
from campaigns.content.care_team import CareTeam
from campaigns.content.lint import LintContext
from campaigns.content.rendering import Renderer, Sender
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.delivery.sending import SendContext
from campaigns.editing.seeding import seed_checked
from campaigns.links import Signer
from campaigns.migrate import check_current
from campaigns.reporting.retention import Policy as RetentionPolicy
from campaigns.sequences.deployed import DeployedRegistry
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.tracking.machine import Rules
from settings import Settings, get_settings

log = logging.getLogger(__name__)


def retention_policy(settings: Settings) -> RetentionPolicy:
    """The daily task and `drip retention run` read the same settings."""
    return RetentionPolicy(
        settings.event_retention_days,
        settings.message_detail_retention_days,
        settings.retention_batch_size,
    )


@dataclass(eq=False)
class Runtime:
    """The object graph of one process (or one test)."""

    settings: Settings
    factory: sessionmaker[Session]
    clock: Clock
    registry: Registry | DeployedRegistry
    renderer: Renderer
    signer: Signer
    policy: Policy
    base_url: str
    engine: Engine | None = None
    # How opens and clicks a machine made are told apart (campaigns.tracking.machine).
    engagement: Rules = Rules()  # None when the caller brought its own session factory

    @cached_property
    def providers(self) -> tuple:
        """(email provider, sms provider), built on first use: they open clients."""
        from workers.providers import build_providers

        return build_providers(self.settings)

    @property
    def email_provider(self):
        return self.providers[0]

    @property
    def sms_provider(self):
        return self.providers[1]

    @cached_property
    def limiters(self) -> dict:
        """Send rates per channel; shared through Redis when REDIS_URL is set."""
        from workers.ratelimit import build_limiters

        return build_limiters(self.settings)

    @cached_property
    def hit_queue(self):
        """Where opens and clicks wait to be recorded (workers.hit_queue); None without
        Redis, when pages record them in the request."""
        from workers.hit_queue import build_hit_queue

        return build_hit_queue(self.settings)

    @cached_property
    def request_limits(self):
        """Sign-up and JOIN limits per client, address and number (workers.request_limits)."""
        from workers.request_limits import build_request_limits

        return build_request_limits(self.settings)

    @cached_property
    def send(self) -> SendContext:
        s = self.settings
        return SendContext(
            factory=self.factory,
            clock=self.clock,
            registry=self.registry,
            renderer=self.renderer,
            signer=self.signer,
            policy=self.policy,
            base_url=self.base_url,
            email_provider=self.email_provider,
            sms_provider=self.sms_provider,
            limiters=self.limiters,
            lease=timedelta(seconds=s.lease_seconds),
            max_attempts=s.max_attempts,
            retry_base=s.retry_base_seconds,
            retry_cap=s.retry_cap_seconds,
        )

    def check_schema(self) -> None:
        """Raise campaigns.migrate.SchemaError (which says `run drip db upgrade`) unless the
        database this runtime built is at the code's migration head."""
        if self.engine is not None:
            check_current(self.engine)

    def seed_sequences(self) -> list[str]:
        """Where campaigns run from the database, publish each campaign file that has no
        revision yet (campaigns.editing.seeding). The long-running processes do it as they
        start; a failure (the database away) is logged and the next start tries again."""
        if self.settings.sequences_source != "database":
            return []
        s = self.settings
        try:
            with transaction(self.factory) as session:
                seeded = seed_checked(
                    session, self.clock, s.definitions_dir, s.templates_dir, lint_context(s)
                )
        except Exception as exc:
            log.warning("cannot seed the campaigns from their files: %s", exc)
            return []
        if seeded and hasattr(self.registry, "refresh"):
            self.registry.refresh()
        return seeded

    def dispose(self) -> None:
        """Close the pool this runtime opened; a factory handed in belongs to the caller."""
        if self.engine is not None:
            self.engine.dispose()


def build_runtime(
    settings: Settings, *, factory: sessionmaker[Session] | None = None, clock: Clock | None = None
) -> Runtime:
    """The object graph for these settings. Tests pass their own factory and fixed clock."""
    engine = None
    if factory is None:
        engine = make_engine(settings.database_url)
        factory = make_session_factory(engine)
    secret = settings.secret_key.get_secret_value().encode()
    # Every session carries the key that hashes an erased person's suppressed addresses
    # (campaigns.audience.suppression), so every check matches them, whoever built it.
    factory.configure(info={**factory.kw.get("info", {}), KEY_INFO: address_key(secret)})
    clock = clock or clock_from_settings(settings)
    # Built once: it re-reads a campaign only when its file, or its revision, changes.
    registry = registry_from(settings, factory, clock)
    return Runtime(
        settings=settings,
        factory=factory,
        clock=clock,
        registry=registry,
        renderer=Renderer(registry.templates_dir, sender_from(settings)),
        signer=Signer(secret),
        policy=Policy.from_settings(settings),
        base_url=settings.public_base_url,
        engine=engine,
        engagement=engagement_rules(settings),
    )


def registry_from(settings: Settings, factory: sessionmaker[Session], clock: Clock):
    if settings.sequences_source == "files":
        return Registry(settings.definitions_dir, settings.templates_dir)
    return DeployedRegistry(
        factory,
        clock,
        settings.definitions_dir,
        settings.templates_dir,
        refresh_seconds=settings.sequences_refresh_seconds,
    )


def engagement_rules(settings: Settings) -> Rules:
    return Rules(
        seconds_after_send=settings.machine_seconds_after_send,
        burst_seconds=settings.machine_burst_seconds,
        apple_ranges_file=settings.apple_proxy_ranges_file,
    )


def care_team_from(settings: Settings) -> CareTeam:
    return CareTeam(
        phone=settings.care_team_phone,
        hours=settings.care_team_hours,
        timezone=settings.care_team_timezone,
        reply_days=settings.care_team_reply_days,
    )


def sender_from(settings: Settings) -> Sender:
    return Sender(
        settings.brand_name,
        settings.postal_address,
        care=care_team_from(settings),
        default_country=settings.default_country,
    )


def lint_context(settings: Settings, today: date | None = None, *, strict: bool = False):
    """The lint as this deployment renders: its base URL, brand, address and care team."""
    return LintContext(
        settings.templates_dir,
        settings.public_base_url,
        settings.brand_name,
        settings.postal_address,
        today=today,
        strict=strict,
        sender=sender_from(settings),
    )


def check_schema(settings: Settings) -> None:
    """Check the schema with a short-lived engine (the Celery parent, before it forks)."""
    engine = make_engine(settings.database_url)
    try:
        check_current(engine)
    finally:
        engine.dispose()


_runtime: Runtime | None = None
_pid: int | None = None


def runtime() -> Runtime:
    """This worker process's runtime, built on first use from the environment's settings.

    The schema is checked when it is built: a worker on an old schema must stop at once,
    saying why.
    """
    global _runtime, _pid
    if _runtime is None or _pid != os.getpid():
        rt = build_runtime(get_settings())
        rt.check_schema()
        rt.seed_sequences()
        _runtime, _pid = rt, os.getpid()
    return _runtime
