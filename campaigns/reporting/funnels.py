"""What marketers read: per-step funnels and enrollment funnels.

Plain functions over a session; the admin pages, /metrics and `drip report` call them.

    campaign_report(session, registry, key, since, until)
        ─► CampaignReport: EnrollmentFunnel + one StepFunnel per (step, channel),
           steps in the campaign file's order, then steps no longer in the file
    enrollment_funnel(session, key) / enrollment_funnels(session, registry)

Provider health for ops is in campaigns.reporting.provider_health.

How a message is counted (campaigns.states holds the lifecycle):
  sent       the provider took it: sent, delivered, bounced, and failed after the
             provider had accepted it (a webhook failure; it has a provider id or sent_at)
  delivered  status delivered
  failed / bounced / suppressed / skipped   their terminal status; reasons kept for the
             last two (top reasons first)
  in flight  queued, sending, retry, deferred, unconfirmed
  opens / clicks   unique: distinct messages (so people) with an opened / clicked event;
             total: every such event (a person opening twice counts twice). Both leave
             out events a machine made (events.automated, with the reason in
             events.automated_reason: campaigns.tracking.machine judges the link pages'
             requests, a provider's webhook module passes on its own machine flag); those
             are counted apart, per reason, as left out
  links      clicks per link of the step: read online, request a call, and every other
             page the lesson links to (through our redirect, campaigns.tracking.redirects),
             unique and total, machines left out
  contact requests / unsubscribes   rows naming the step's message (contact_requests,
             events of type unsubscribed); an unsubscribe that names no message (a
             consent record only) cannot be attributed to a step and is not counted
  held by the frequency cap   steps held back to a later day because the person had had
             their share of messages across campaigns (campaigns.reporting.holds): holds,
             people, and those still waiting; a held step is sent later, never dropped

Rates divide by delivered where the channel has a delivery signal in the report (any of
its messages delivered or bounced: the provider reports deliveries), else by sent (the
local outbox, the demo without receipts, a SendGrid account without the Event Webhook),
and say which (StepFunnel.rate_base): without receipts, "delivered" is always zero.

The date range filters on the message's created_at (the enrollment funnel on the
enrollment's created_at); `until` is exclusive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from campaigns.engagement import engagement
from campaigns.models import ContactRequest, Enrollment, Event, Message
from campaigns.reporting.answers import AnswerReport, answer_report
from campaigns.reporting.experiments import ExperimentReport, experiment_report
from campaigns.reporting.filters import Filters, message_clauses, people_clauses
from campaigns.reporting.goals import GoalReport, goal_report
from campaigns.reporting.holds import CapHoldReport, cap_hold_report
from campaigns.reporting.rates import rate
from campaigns.reporting.sent import accepted
from campaigns.sequences.campaign import Campaign, DefinitionError
from campaigns.sequences.registry import Registry
from campaigns.states import (
    CHANNELS,
    IN_FLIGHT,
    Channel,
    EnrollmentStatus,
    EventType,
    MessageStatus,
)
from campaigns.tracking.machine import LABELS as MACHINE_LABELS
from campaigns.tracking.machine import UNKNOWN_LABEL

E = EventType
TOP_REASONS = 3
BY_DELIVERED, BY_SENT = "delivered", "sent"
OUR_LINKS = {"m": "read online", "c": "request a call"}


@dataclass
class LinkClicks:
    """Clicks on one link of a step (machines left out)."""

    link: str  # "m", "c", or the link id of a page the lesson links to
    label: str  # "read online", "request a call", or the page's URL
    unique: int = 0
    total: int = 0


@dataclass
class StepFunnel:
    step_key: str
    channel: str
    position: int | None  # 1-based place in the campaign file; None: no longer in it
    created: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    bounced: int = 0
    suppressed: int = 0
    skipped: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    skip_reasons: list[tuple[str, int]] = field(default_factory=list)
    suppress_reasons: list[tuple[str, int]] = field(default_factory=list)
    opens: int = 0  # unique: messages opened by a person
    opens_total: int = 0
    clicks: int = 0  # unique: messages a person clicked a link of
    clicks_total: int = 0
    machine_opens: int = 0  # left out: events a machine made
    machine_clicks: int = 0
    left_out: list[tuple[str, int]] = field(default_factory=list)  # (why, events), most first
    links: list[LinkClicks] = field(default_factory=list)
    contact_requests: int = 0
    unsubscribes: int = 0
    rate_base: str = BY_DELIVERED  # what open and click rates divide by: delivered or sent

    @property
    def in_flight_total(self) -> int:
        return sum(self.in_flight.values())

    @property
    def base(self) -> int:
        return self.delivered if self.rate_base == BY_DELIVERED else self.sent

    @property
    def delivery_rate(self) -> float | None:
        if self.rate_base == BY_SENT:
            return None  # no delivery signal: "0% delivered" would be false
        return rate(self.delivered, self.sent)

    @property
    def open_rate(self) -> float | None:
        if self.channel == Channel.SMS:
            return None  # carriers report delivery, never reads: no SMS open rate exists
        return rate(self.opens, self.base)

    @property
    def click_rate(self) -> float | None:
        return rate(self.clicks, self.base)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(
            delivery_rate=self.delivery_rate,
            open_rate=self.open_rate,
            click_rate=self.click_rate,
            in_flight_total=self.in_flight_total,
        )
        return out


@dataclass
class EnrollmentFunnel:
    campaign_key: str
    enrolled: int = 0
    active: int = 0
    paused: int = 0
    completed: int = 0
    exited: int = 0
    exit_reasons: list[tuple[str, int]] = field(default_factory=list)
    pause_reasons: list[tuple[str, int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CampaignReport:
    campaign_key: str
    name: str
    version: int | None
    deployed: bool  # the campaign file is loaded; False: only history in the database
    enrollments: EnrollmentFunnel
    steps: list[StepFunnel]
    since: datetime | None = None
    until: datetime | None = None
    warning: str | None = None  # e.g. the campaign files do not load right now
    goals: GoalReport | None = None  # the campaign's goal (campaigns.reporting.goals)
    # Steps the frequency cap held back (campaigns.reporting.holds)
    held: CapHoldReport = field(default_factory=CapHoldReport)
    experiments: ExperimentReport | None = None  # variants, holdout (reporting.experiments)
    answers: AnswerReport | None = None  # check-in questions (campaigns.reporting.answers)

    @property
    def machine_opens(self) -> int:
        return sum(s.machine_opens for s in self.steps)

    @property
    def machine_clicks(self) -> int:
        return sum(s.machine_clicks for s in self.steps)

    @property
    def left_out(self) -> list[tuple[str, int]]:
        """(why, events) over every step, most first."""
        total: dict[str, int] = {}
        for step in self.steps:
            for why, n in step.left_out:
                total[why] = total.get(why, 0) + n
        return _ranked(total.items())

    @property
    def rate_bases(self) -> dict[str, str]:
        """Channel -> what its rates divide by."""
        return {s.channel: s.rate_base for s in self.steps}

    def to_dict(self) -> dict:
        return {
            "campaign": self.campaign_key,
            "name": self.name,
            "version": self.version,
            "deployed": self.deployed,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "warning": self.warning,
            "rate_bases": self.rate_bases,
            "left_out": {
                "opens": self.machine_opens,
                "clicks": self.machine_clicks,
                "why": dict(self.left_out),
            },
            "enrollments": self.enrollments.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "goal": self.goals.to_dict() if self.goals else None,
            "held_by_frequency_cap": self.held.to_dict(),
            "experiments": self.experiments.to_dict() if self.experiments else None,
            "answers": self.answers.to_dict() if self.answers else None,
        }


# ---------------------------------------------------------------- campaigns


def load_campaigns(registry: Registry) -> tuple[dict[str, Campaign], str | None]:
    """The deployed campaigns, or none and the reason: a broken file must not take the
    reports down with it."""
    try:
        return registry.campaigns(), None
    except DefinitionError as exc:
        return (
            {},
            f"campaign files do not load ({len(exc.problems)} problem(s)); step order is a guess",
        )


def campaign_keys(session: Session, registry: Registry) -> list[str]:
    """Deployed campaigns first (file order), then ones only the database remembers."""
    deployed, _ = load_campaigns(registry)
    seen = list(deployed)
    for key in session.scalars(
        select(Enrollment.campaign_key).distinct().order_by(Enrollment.campaign_key)
    ):
        if key not in seen:
            seen.append(key)
    return seen


def _ranges(column, since: datetime | None, until: datetime | None) -> list:
    where = []
    if since is not None:
        where.append(column >= since)
    if until is not None:
        where.append(column < until)
    return where


def _ranked(pairs) -> list[tuple[str, int]]:
    return sorted(((r or "(no reason)", n) for r, n in pairs), key=lambda p: (-p[1], p[0]))


def enrollment_funnel(
    session: Session,
    campaign_key: str,
    since: datetime | None = None,
    until: datetime | None = None,
    filters: Filters | None = None,
) -> EnrollmentFunnel:
    where = [Enrollment.campaign_key == campaign_key, *_ranges(Enrollment.created_at, since, until)]
    if filters is not None:
        where += people_clauses(filters)
    rows = session.execute(
        select(Enrollment.status, Enrollment.exit_reason, func.count())
        .where(*where)
        .group_by(Enrollment.status, Enrollment.exit_reason)
    ).all()
    funnel = EnrollmentFunnel(campaign_key)
    exits: dict[str | None, int] = {}
    pauses: dict[str | None, int] = {}
    for status, reason, n in rows:
        funnel.enrolled += n
        if status in tuple(EnrollmentStatus):
            setattr(funnel, status, getattr(funnel, status) + n)
        if status == EnrollmentStatus.EXITED:
            exits[reason] = exits.get(reason, 0) + n
        elif status == EnrollmentStatus.PAUSED:
            pauses[reason] = pauses.get(reason, 0) + n
    funnel.exit_reasons = _ranked(exits.items())
    funnel.pause_reasons = _ranked(pauses.items())
    return funnel


def enrollment_funnels(
    session: Session, registry: Registry
) -> list[tuple[str, str, EnrollmentFunnel]]:
    """(key, display name, funnel) for every campaign, for the dashboard."""
    deployed, _ = load_campaigns(registry)
    out = []
    for key in campaign_keys(session, registry):
        name = deployed[key].name if key in deployed else f"{key} (not deployed)"
        out.append((key, name, enrollment_funnel(session, key)))
    return out


def campaign_report(
    session: Session,
    registry: Registry,
    campaign_key: str,
    since: datetime | None = None,
    until: datetime | None = None,
    filters: Filters | None = None,
) -> CampaignReport:
    """Raise LookupError for a campaign neither deployed nor in the database.

    `filters` (campaigns.reporting.filters: locale, channel, source, time zone) narrow
    every part: steps, links, enrollments, goal, holds, experiments, answers (holds are
    per step, so the channel does not narrow them); the range is `since` and `until`."""
    deployed, warning = load_campaigns(registry)
    campaign = deployed.get(campaign_key)
    msg_where = [
        Message.campaign_key == campaign_key,
        *_ranges(Message.created_at, since, until),
        *message_clauses(filters, campaign_key),
    ]

    counts = session.execute(
        select(
            Message.step_key,
            Message.channel,
            Message.status,
            func.count(),
            func.sum(case((accepted(), 1), else_=0)),
            func.min(Message.id),
        )
        .where(*msg_where)
        .group_by(Message.step_key, Message.channel, Message.status)
    ).all()
    if (
        campaign is None
        and not counts
        and not session.scalar(
            select(func.count())
            .select_from(Enrollment)
            .where(Enrollment.campaign_key == campaign_key)
        )
    ):
        raise LookupError(f"no campaign {campaign_key!r}: not deployed and nothing in the database")

    rows: dict[tuple[str, str], StepFunnel] = {}
    if campaign is not None:
        for step in campaign.steps:
            for channel in step.sends_on:  # the fallback too: the text-only track
                if filters is not None and filters.channel not in (None, channel):
                    continue
                rows[(step.key, channel)] = StepFunnel(step.key, channel, step.index + 1)
    first_seen: dict[tuple[str, str], int] = {}
    for step_key, channel, status, n, n_accepted, first_id in counts:
        key = (step_key, channel)
        row = rows.get(key)
        if row is None:
            position = None
            if campaign is not None and campaign.step(step_key) is not None:
                position = campaign.step(step_key).index + 1  # a channel since removed
            row = rows[key] = StepFunnel(step_key, channel, position)
        first_seen[key] = min(first_seen.get(key, first_id), first_id)
        row.created += n
        row.sent += int(n_accepted or 0)
        if status in (
            MessageStatus.DELIVERED,
            MessageStatus.FAILED,
            MessageStatus.BOUNCED,
            MessageStatus.SUPPRESSED,
            MessageStatus.SKIPPED,
        ):
            setattr(row, status, getattr(row, status) + n)
        elif status in IN_FLIGHT:
            row.in_flight[status] = row.in_flight.get(status, 0) + n

    reasons = session.execute(
        select(Message.step_key, Message.channel, Message.status, Message.reason, func.count())
        .where(*msg_where, Message.status.in_((MessageStatus.SKIPPED, MessageStatus.SUPPRESSED)))
        .group_by(Message.step_key, Message.channel, Message.status, Message.reason)
    ).all()
    grouped: dict[tuple[str, str, str], list] = {}
    for step_key, channel, status, reason, n in reasons:
        grouped.setdefault((step_key, channel, status), []).append((reason, n))
    for (step_key, channel, status), pairs in grouped.items():
        top = _ranked(pairs)[:TOP_REASONS]
        if status == MessageStatus.SKIPPED:
            rows[(step_key, channel)].skip_reasons = top
        else:
            rows[(step_key, channel)].suppress_reasons = top

    _engagement(session, msg_where, rows)

    asks = session.execute(
        select(Message.step_key, Message.channel, func.count(ContactRequest.id))
        .join(Message, ContactRequest.message_id == Message.id)
        .where(*msg_where)
        .group_by(Message.step_key, Message.channel)
    ).all()
    for step_key, channel, n in asks:
        row = rows.get((step_key, channel))
        if row is not None:
            row.contact_requests = n

    def order(item):
        (step_key, channel), row = item
        channel_rank = CHANNELS.index(channel) if channel in CHANNELS else len(CHANNELS)
        if row.position is not None:
            return (0, row.position, channel_rank)
        return (1, first_seen.get((step_key, channel), 0), channel_rank)

    steps = [row for _, row in sorted(rows.items(), key=order)]
    signalled = {r.channel for r in steps if r.delivered or r.bounced}
    for row in steps:
        row.rate_base = BY_DELIVERED if row.channel in signalled else BY_SENT
    return CampaignReport(
        campaign_key=campaign_key,
        name=campaign.name if campaign else campaign_key,
        version=campaign.version if campaign else None,
        deployed=campaign is not None,
        enrollments=enrollment_funnel(session, campaign_key, since, until, filters),
        steps=steps,
        since=since,
        until=until,
        warning=warning,
        goals=goal_report(session, campaign, campaign_key, since, until, filters),
        held=cap_hold_report(session, campaign, campaign_key, since, until, filters),
        experiments=experiment_report(session, campaign, campaign_key, since, until, filters),
        answers=answer_report(session, campaign, campaign_key, since, until, filters),
    )


def _engagement(session: Session, msg_where: list, rows: dict) -> None:
    """Opens and clicks (unique and total, machines apart, per reason and per link) and
    unsubscribes, onto the step rows."""
    on = Event.message_id == Message.id
    step = (Message.step_key, Message.channel)

    unsubs = session.execute(
        select(*step, func.count(distinct(Event.message_id)))
        .join(Message, on)
        .where(*msg_where, Event.type == E.UNSUBSCRIBED)
        .group_by(*step)
    ).all()
    for step_key, channel, n in unsubs:
        if (row := rows.get((step_key, channel))) is not None:
            row.unsubscribes = n

    # Raw events and the rollups of pruned ones (campaigns.engagement).
    ev = engagement((E.OPENED, E.CLICKED))
    joined = ev.c.message_id == Message.id
    people = session.execute(
        select(
            *step,
            ev.c.type,
            ev.c.automated,
            ev.c.automated_reason,
            func.sum(ev.c.events),
            func.count(distinct(ev.c.message_id)),
        )
        .join(Message, joined)
        .where(*msg_where)
        .group_by(*step, ev.c.type, ev.c.automated, ev.c.automated_reason)
    ).all()
    noun = {E.OPENED: "opens", E.CLICKED: "clicks"}
    why_counts: dict[tuple[str, str], dict[str, int]] = {}
    for step_key, channel, kind, automated, why, events, messages in people:
        row = rows.get((step_key, channel))
        if row is None:
            continue
        events = int(events)
        if automated:
            name = f"machine_{noun[kind]}"
            setattr(row, name, getattr(row, name) + events)
            label = MACHINE_LABELS.get(why, UNKNOWN_LABEL)
            counts = why_counts.setdefault((step_key, channel), {})
            counts[label] = counts.get(label, 0) + events
        else:
            # One (automated, reason) group holds every person's events of a kind.
            setattr(row, noun[kind], messages)
            setattr(row, f"{noun[kind]}_total", events)
    for key, counts in why_counts.items():
        rows[key].left_out = _ranked(counts.items())

    per_link = session.execute(
        select(
            *step,
            ev.c.route,
            ev.c.link,
            ev.c.url,
            func.sum(ev.c.events),
            func.count(distinct(ev.c.message_id)),
        )
        .join(Message, joined)
        .where(*msg_where, ev.c.type == E.CLICKED, ev.c.automated.is_(False))
        .group_by(*step, ev.c.route, ev.c.link, ev.c.url)
    ).all()
    for step_key, channel, via, link_id, target, events, messages in per_link:
        row = rows.get((step_key, channel))
        if row is None:
            continue
        # Our redirect's clicks, and a provider's click tracking, name the page.
        label = OUR_LINKS.get(via, target or via or "(a link)")
        row.links.append(LinkClicks(link_id or via or "", label, messages, int(events)))
    for row in rows.values():
        row.links.sort(key=lambda li: (-li.total, li.label))
