"""`drip simulate`: what a course would do to a cohort's inboxes and phones, on the real
engine, with nothing sent.

Not a separate model of the rules: the people are enrolled in a throwaway SQLite
database (migrated like any other), and the engine's own functions run over it in one
process (the scheduler's tick: re-shaping after edits, releasing held texts, claiming due
steps; the send path: every re-check, the text hours at the moment of the call, the
text fallback, the order of steps), with providers that take every message and send
none. Time is a FixedClock the loop moves the way the demo's clock moves: once the engine
has nothing left to do at a moment, straight to the next moment anything falls due
(campaigns.delivery.agenda). What comes out is what the engine would do, given providers
that answer at once and never fail: rate limits, provider latency and outages are not
simulated (at SMS_RATE_PER_SECOND=1, 1,000 texts due in one minute take 17 minutes).

    simulate(registry, campaign_key, people, start=..., days=..., ...) ─► Simulation:
        a timeline per person (campaigns.reporting.timelines) and the per-step report
        (campaigns.reporting.funnels)
    generated_cohort(n, zones) ─► n people across zones, channels and languages
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import cycle
from pathlib import Path

from sqlalchemy import event

from campaigns.audience.subscribers import InvalidSubscriber, upsert_subscriber
from campaigns.clock import FixedClock
from campaigns.content.rendering import Renderer
from campaigns.db import make_engine, make_session_factory, transaction
from campaigns.delivery import scheduler
from campaigns.delivery.agenda import read_agenda
from campaigns.delivery.enrollment import enroll
from campaigns.delivery.providers import Outcome, OutgoingEmail, OutgoingSms, SendResult
from campaigns.delivery.sending import SendContext, send_batch
from campaigns.delivery.work import Work
from campaigns.links import Signer
from campaigns.migrate import upgrade
from campaigns.reporting.funnels import CampaignReport, campaign_report
from campaigns.reporting.timelines import Timeline, course_timelines
from campaigns.sequences.campaign import Campaign
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy

# Spread across offsets, daylight-saving rules (none, northern, southern) and a
# half-hour zone, so one run shows how the windows land around the world.
DEFAULT_ZONES = (
    "Pacific/Honolulu",
    "America/Los_Angeles",
    "America/Chicago",
    "America/New_York",
    "Europe/London",
    "Europe/Madrid",
    "Asia/Kolkata",
    "Australia/Sydney",
)
# Fictional numbers (555-0100 to 555-0199) in area codes that exist, 100 per code.
_AREA_CODES = (202, 213, 212, 305, 312, 415, 617, 702, 206, 303, 404, 503, 512, 602, 615, 713)
MAX_GENERATED = 100 * len(_AREA_CODES)
MAX_MOMENTS = 200_000  # a course that never settles is a bug, not a long run


class RecordingProvider:
    """Takes every message, sends none: to the engine, each call is an accepted send."""

    name = "simulation"
    max_batch = 1000

    def __init__(self) -> None:
        self.calls = 0

    def _take(self, items) -> list[SendResult]:
        self.calls += 1
        return [SendResult(i.message_id, Outcome.ACCEPTED, f"sim-{i.message_id}") for i in items]

    def send_emails(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        return self._take(emails)

    def send_sms(self, texts: list[OutgoingSms]) -> list[SendResult]:
        return self._take(texts)


@dataclass
class Simulation:
    campaign: Campaign
    start: datetime
    end: datetime
    timelines: list[Timeline]
    report: CampaignReport
    rejected: list[tuple[dict, str]] = field(default_factory=list)  # (person, why)
    moments: int = 0  # distinct moments the engine had work at
    still_in_course: int = 0  # people with steps still to come when the period ended


def generated_cohort(n: int, zones: tuple[str, ...] = DEFAULT_ZONES) -> list[dict]:
    """`n` people: by turns email only, texts only, both; in `zones` by turns; English and
    Spanish by turns."""
    if not 1 <= n <= MAX_GENERATED:
        raise ValueError(f"a generated cohort has 1 to {MAX_GENERATED} people, not {n}")
    reach = cycle(("email", "sms", "both"))
    zone = cycle(zones or DEFAULT_ZONES)
    locale = cycle(("en", "es", "en"))
    people = []
    for i in range(n):
        how = next(reach)
        area, line = _AREA_CODES[i // 100], 100 + i % 100
        people.append(
            {
                "first_name": f"Person {i + 1}",
                "email": f"person{i + 1}@example.com" if how != "sms" else None,
                "phone": f"+1{area}555{line:04d}" if how != "email" else None,
                "timezone": next(zone),
                "locale": next(locale),
            }
        )
    return people


def simulate(
    registry: Registry,
    campaign_key: str,
    people: list[dict],
    *,
    start: datetime,
    days: float,
    policy: Policy,
    renderer: Renderer,
    signer: Signer,
    base_url: str,
    default_country: str,
) -> Simulation:
    """Run `campaign_key` for `people` from `start` for `days`; DefinitionError for a
    broken campaign, before anything runs."""
    campaign = registry.get(campaign_key)
    end = start + timedelta(days=days)
    with tempfile.TemporaryDirectory(prefix="drip-simulate-") as scratch:
        url = f"sqlite:///{Path(scratch) / 'simulation.sqlite3'}"
        upgrade(url)
        engine = make_engine(url)
        # A throwaway database: no need to wait for the disk at every commit.
        event.listen(engine, "connect", _no_sync)
        try:
            factory = make_session_factory(engine)
            clock = FixedClock(start)
            rejected = _enroll(factory, clock, registry, policy, campaign_key, people)
            provider = RecordingProvider()
            ctx = SendContext(
                factory=factory,
                clock=clock,
                registry=registry,
                renderer=renderer,
                signer=signer,
                policy=policy,
                base_url=base_url,
                email_provider=provider,
                sms_provider=provider,
            )
            moments = _run(ctx, end)
            with factory() as session:
                timelines = course_timelines(
                    session, registry, policy, campaign_key, default_country
                )
                report = campaign_report(session, registry, campaign_key)
        finally:
            engine.dispose()
    return Simulation(
        campaign=campaign,
        start=start,
        end=end,
        timelines=timelines,
        report=report,
        rejected=rejected,
        moments=moments,
        still_in_course=sum(1 for t in timelines if t.status == "active"),
    )


def _no_sync(dbapi_conn, _record) -> None:
    dbapi_conn.execute("PRAGMA synchronous=OFF")


def _enroll(factory, clock, registry, policy, campaign_key, people) -> list[tuple[dict, str]]:
    rejected = []
    for person in people:
        details = {k: person.get(k) for k in ("first_name", "email", "phone", "timezone", "locale")}
        # Consent to every channel they gave an address for, unless the cohort says.
        consent = person.get("consent")
        if consent is None:
            consent = tuple(c for c, k in (("email", "email"), ("sms", "phone")) if details[k])
        try:
            with transaction(factory) as session:
                sub = upsert_subscriber(
                    session, clock, consent=consent, source="simulation", **details
                )
                enroll(session, clock, registry, sub, campaign_key, policy, source="simulation")
        except InvalidSubscriber as exc:
            rejected.append((person, str(exc)))
    return rejected


def _run(ctx: SendContext, end: datetime) -> int:
    """Do everything due at each moment, then jump to the next; the number of moments."""
    clock = ctx.clock
    moments = 0
    for _ in range(MAX_MOMENTS):
        if _work_now(ctx):
            moments += 1
        with ctx.factory() as session:
            upcoming = read_agenda(session, clock.now()).next_at
        if upcoming is None or upcoming > end:
            return moments
        clock.current = upcoming
    raise RuntimeError(f"the course did not settle within {MAX_MOMENTS} moments")


def _work_now(ctx: SendContext) -> bool:
    """Tick and send until the engine has nothing more to do at this moment (a send can
    leave work due at once: a text fallback, a step released behind another)."""
    did = False
    while True:
        queued = Work()
        scheduler.tick(ctx.factory, ctx.clock, ctx.registry, ctx.policy, queued.extend)
        if not len(queued):
            return did
        did = True
        for channel, ids in (("email", queued.email), ("sms", queued.sms)):
            for start in range(0, len(ids), 500):
                send_batch(ctx, channel, ids[start : start + 500])
