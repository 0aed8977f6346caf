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

What people do, for a course with branches: a person may carry `opens` (True: every
email; a set of step keys: those steps' emails; False, the default: none) and
`asks_for_call` (a step key: they ask once that step has reached them). They do it an
hour after the message arrives, through the engine's own functions: an open is recorded
as the open pixel records it (campaigns.tracking.portal.record_engagement, which also
ends a wait for it), a call request by the `call_request` function the caller hands in
(the care team's queue, campaigns.care.contact_queue, sits beside this module, not
under it). So each person's timeline shows the path their doings take: the text version
a non-opener gets, the push someone who asked for a call skips.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import cycle
from pathlib import Path

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from campaigns.audience.subscribers import InvalidSubscriber, upsert_subscriber
from campaigns.clock import Clock, FixedClock
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
from campaigns.models import Message, Subscriber
from campaigns.reporting.funnels import CampaignReport, campaign_report
from campaigns.reporting.timelines import Timeline, course_timelines
from campaigns.sequences.campaign import Campaign
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from campaigns.states import Channel, EventType
from campaigns.tracking.portal import Visit, record_engagement

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
# How long after a message arrives a simulated person opens it or asks for a call.
ACTS_AFTER = timedelta(hours=1)

CallRequest = Callable[[Session, Clock, Visit], object]


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
    Spanish by turns; by turns opening every email and none (so a course with branches
    shows both paths)."""
    if not 1 <= n <= MAX_GENERATED:
        raise ValueError(f"a generated cohort has 1 to {MAX_GENERATED} people, not {n}")
    reach = cycle(("email", "sms", "both"))
    zone = cycle(zones or DEFAULT_ZONES)
    locale = cycle(("en", "es", "en"))
    opens = cycle((True, False))
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
                "opens": next(opens),
            }
        )
    return people


class _Doings:
    """What the cohort does with what reaches it, planned as messages go out and done at
    their moment (the loop's clock stops there as it stops at anything due)."""

    def __init__(self, doings: dict[int, dict], call_request: CallRequest | None):
        self.doings = doings  # subscriber id -> {"opens": ..., "asks_for_call": ...}
        self.call_request = call_request
        self.seen: set[int] = set()
        self.asked: set[int] = set()
        self.since: datetime | None = None
        self.planned: list[tuple[datetime, str, int]] = []  # (when, open | call, message id)
        self.anyone = any(d.get("opens") or d.get("asks_for_call") for d in doings.values())

    def __bool__(self) -> bool:
        return self.anyone

    def notice(self, session: Session, now: datetime) -> None:
        """Plan what people do with the messages that went out since the last look (the
        clock only moves forward, so those went out at or after that look)."""
        query = select(
            Message.id, Message.subscriber_id, Message.step_key, Message.channel, Message.sent_at
        ).where(Message.sent_at.is_not(None))
        if self.since is not None:
            query = query.where(Message.sent_at >= self.since)
        for mid, sid, step_key, channel, sent_at in session.execute(query):
            if mid in self.seen:
                continue
            self.seen.add(mid)
            doings = self.doings.get(sid) or {}
            opens = doings.get("opens")
            if channel == Channel.EMAIL and (
                opens is True or (isinstance(opens, (set, frozenset)) and step_key in opens)
            ):
                self.planned.append((sent_at + ACTS_AFTER, "open", mid))
            if doings.get("asks_for_call") == step_key and sid not in self.asked:
                self.asked.add(sid)
                self.planned.append((sent_at + ACTS_AFTER, "call", mid))
        self.since = now

    def next_at(self) -> datetime | None:
        return min((at for at, _, _ in self.planned), default=None)

    def act(self, factory, clock: Clock) -> bool:
        now = clock.now()
        due = sorted(p for p in self.planned if p[0] <= now)
        self.planned = [p for p in self.planned if p[0] > now]
        for _, what, mid in due:
            with transaction(factory) as session:
                msg = session.get(Message, mid)
                visit = Visit(msg, session.get(Subscriber, msg.subscriber_id))
                if what == "open":
                    record_engagement(session, clock, visit, EventType.OPENED, {"route": "o"})
                else:
                    self.call_request(session, clock, visit)
        return bool(due)


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
    call_request: CallRequest | None = None,
) -> Simulation:
    """Run `campaign_key` for `people` from `start` for `days`; DefinitionError for a
    broken campaign, before anything runs. `call_request(session, clock, visit)` records
    a person's call request (needed when someone in `people` asks for one)."""
    campaign = registry.get(campaign_key)
    if call_request is None and any(p.get("asks_for_call") for p in people):
        raise ValueError("people who ask for a call need a call_request function")
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
            rejected, doings = _enroll(factory, clock, registry, policy, campaign_key, people)
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
            moments = _run(ctx, end, _Doings(doings, call_request))
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


def _enroll(factory, clock, registry, policy, campaign_key, people):
    """Enroll everyone; (the people left out and why, each subscriber's doings)."""
    rejected, doings = [], {}
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
                if person.get("attributes"):
                    sub.attributes = {**(sub.attributes or {}), **person["attributes"]}
                enroll(session, clock, registry, sub, campaign_key, policy, source="simulation")
                doings[sub.id] = {
                    "opens": person.get("opens"),
                    "asks_for_call": person.get("asks_for_call"),
                }
        except InvalidSubscriber as exc:
            rejected.append((person, str(exc)))
    return rejected, doings


def _run(ctx: SendContext, end: datetime, doings: _Doings) -> int:
    """Do everything due at each moment (people's doings first, then the engine), then
    jump to the next; the number of moments."""
    clock = ctx.clock
    moments = 0
    for _ in range(MAX_MOMENTS):
        acted = doings.act(ctx.factory, clock) if doings else False
        if _work_now(ctx) or acted:
            moments += 1
        with ctx.factory() as session:
            if doings:
                doings.notice(session, clock.now())
            upcoming = read_agenda(session, clock.now()).next_at
        planned = doings.next_at() if doings else None
        upcoming = min((t for t in (upcoming, planned) if t is not None), default=None)
        if upcoming is None or upcoming > end:
            return moments
        clock.current = upcoming
    raise RuntimeError(f"the course did not settle within {MAX_MOMENTS} moments")


def _work_now(ctx: SendContext) -> bool:
    """Tick and send until the engine has nothing more to do at this moment (a send can
    leave work due at once: a text fallback, a step released behind another)."""
    did = False
    seen = None
    while True:
        queued = Work()
        scheduler.tick(ctx.factory, ctx.clock, ctx.registry, ctx.policy, queued.extend)
        if not len(queued):
            # A tick that only skipped steps sends nothing, yet may leave the next step
            # due at once (a step with no delay after a skipped one): tick again while
            # that changes anything.
            with ctx.factory() as session:
                agenda = read_agenda(session, ctx.clock.now())
            if not agenda.due_now or agenda.fingerprint == seen:
                return did
            seen = agenda.fingerprint
            continue
        did = True
        for channel, ids in (("email", queued.email), ("sms", queued.sms)):
            for start in range(0, len(ids), 500):
                send_batch(ctx, channel, ids[start : start + 500])
