"""Each person's course as it happened (or, in `drip simulate`, as it would): every step
and channel with when it was due and when it went out, in the person's own time, how
late it went beyond what its window explains, and whether their lessons kept their order.

    course_timelines(session, registry, policy, campaign_key, default_country)
        ─► [Timeline]: one per enrolled person, entries in step order
    lateness(timelines) ─► Lateness: the figures the demo's summary and the tests check

Lateness beyond the window: a step is due at `due_at` (the cursor's time: its delay after
the previous step, moved to the next minute its window allows). A text may also be held
to the text hours, so the moment a message could rightly have gone is the first moment at
or after `due_at` that its own channel's window allows (`expected_at`); whatever passed
between that and the provider taking it (`sent_at`) is lateness the window does not
explain: a queue, a retry, a rate limit, a slow tick, or a step held behind another.

Order (invariant 10): on each channel, the steps that went out went out in step order.

Holds: a step the frequency cap held back (campaigns.delivery.frequency_cap) is listed
with when it was held, which cap was full and until when; its message's `due_at` is the
moment it was held to, so a held step is not counted late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience.emergency import country_of, emergency_number
from campaigns.audience.subscribers import address_for
from campaigns.db import id_in
from campaigns.models import (
    CapHold,
    ConsentRecord,
    ContactRequest,
    Enrollment,
    Event,
    EventRollup,
    Message,
    PersonEvent,
    Subscriber,
)
from campaigns.sequences.campaign import Campaign, DefinitionError
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy, step_window
from campaigns.sequences.windows import Window, is_allowed, next_allowed
from campaigns.states import CHANNELS, Channel, ConsentAction, EventType

# Within this of its expected moment a message counts as on time: the seconds a tick and
# a send take, never a window, a retry or a queue.
ON_TIME = timedelta(minutes=1)


@dataclass
class Entry:
    message_id: int
    position: int | None  # 1-based place in the campaign file; None: no longer in it
    step_key: str
    channel: str
    status: str
    reason: str | None
    due_at: datetime
    expected_at: datetime  # the first moment at or after due_at its channel's window allows
    sent_at: datetime | None  # when the provider took it; None: it never went
    in_window: bool | None  # sent inside its channel's window (None: not sent)
    token: str = field(default="", repr=False)  # the message's public token (its links)

    @property
    def late(self) -> timedelta | None:
        """How long after its expected moment it went out (None: it never went)."""
        if self.sent_at is None:
            return None
        return max(timedelta(0), self.sent_at - self.expected_at)


@dataclass
class Action:
    """Something the person did: opened, clicked, asked for a call, stopped a channel."""

    at: datetime
    what: str


@dataclass
class Hold:
    """A step the frequency cap held back (campaigns.delivery.frequency_cap)."""

    at: datetime  # when it fell due and was held
    until: datetime  # its new due time
    position: int | None
    step_key: str
    cap: str  # day | week
    allowed: int
    counted: int


@dataclass
class Timeline:
    subscriber_id: int
    first_name: str | None
    zone: str
    zone_given: bool  # False: the person has none, DEFAULT_TIMEZONE stands in
    addresses: tuple[str, ...]  # the channels the person has an address for
    country: str | None
    emergency_number: str
    status: str  # the enrollment's
    exit_reason: str | None
    entries: list[Entry] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    goal_event_id: int | None = None  # the person event that reached the campaign's goal
    holds: list[Hold] = field(default_factory=list)  # by the frequency cap, in time order

    def local(self, when: datetime) -> datetime:
        return when.astimezone(ZoneInfo(self.zone))

    @property
    def sent(self) -> list[Entry]:
        return [e for e in self.entries if e.sent_at is not None]

    def out_of_order(self) -> list[tuple[Entry, Entry]]:
        """(earlier step, later step) pairs on one channel where the later step went out
        first."""
        pairs = []
        for channel in {e.channel for e in self.entries}:
            went = sorted(
                (e for e in self.sent if e.channel == channel and e.position is not None),
                key=lambda e: e.position,
            )
            for i, earlier in enumerate(went):
                pairs.extend(
                    (earlier, later) for later in went[i + 1 :] if later.sent_at < earlier.sent_at
                )
        return pairs


@dataclass
class Lateness:
    sent: int  # messages that went out
    on_time: int  # within ON_TIME of their expected moment
    late: list[tuple[Timeline, Entry]]  # beyond it
    outside_window: list[tuple[Timeline, Entry]]
    out_of_order: list[tuple[Timeline, Entry, Entry]]
    largest: timedelta  # the largest lateness of any message that went out

    @property
    def clean(self) -> bool:
        return not (self.late or self.outside_window or self.out_of_order)


def _windows(campaign: Campaign | None, policy: Policy) -> dict[str, Window | None]:
    """Each channel's window: a campaign's, narrowed to the text hours for texts."""
    if campaign is None:
        return {Channel.EMAIL: None, Channel.SMS: policy.sms_window}
    try:
        sms = step_window(campaign, [Channel.SMS], policy)
    except DefinitionError:
        sms = policy.sms_window
    return {Channel.EMAIL: campaign.window, Channel.SMS: sms}


def course_timelines(
    session: Session,
    registry: Registry,
    policy: Policy,
    campaign_key: str,
    default_country: str,
) -> list[Timeline]:
    """One timeline per person enrolled in `campaign_key`, in enrollment order."""
    try:
        campaign = registry.campaigns().get(campaign_key)
    except DefinitionError:
        campaign = None
    windows = _windows(campaign, policy)
    timelines: dict[int, Timeline] = {}
    for enrollment, subscriber in session.execute(
        select(Enrollment, Subscriber)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(Enrollment.campaign_key == campaign_key)
        .order_by(Enrollment.id)
    ):
        country = country_of(subscriber)
        timelines[enrollment.id] = Timeline(
            subscriber_id=subscriber.id,
            first_name=subscriber.first_name,
            zone=str(policy.zone(subscriber).key),
            zone_given=bool(subscriber.timezone),
            addresses=tuple(c for c in CHANNELS if address_for(subscriber, c)),
            country=country,
            emergency_number=emergency_number(country, default_country),
            status=str(enrollment.status),
            exit_reason=enrollment.exit_reason,
            goal_event_id=enrollment.goal_event_id,
        )
    for msg in session.scalars(
        select(Message)
        .where(Message.campaign_key == campaign_key)
        .order_by(Message.enrollment_id, Message.due_at, Message.id)
    ):
        timeline = timelines.get(msg.enrollment_id)
        if timeline is None:
            continue
        zone = ZoneInfo(timeline.zone)
        window = windows.get(msg.channel)
        expected = next_allowed(msg.due_at, window, zone) if window else msg.due_at
        step = campaign.step(msg.step_key) if campaign else None
        timeline.entries.append(
            Entry(
                message_id=msg.id,
                position=step.index + 1 if step else None,
                step_key=msg.step_key,
                channel=msg.channel,
                status=str(msg.status),
                reason=msg.reason,
                due_at=msg.due_at,
                expected_at=expected,
                sent_at=msg.sent_at,
                in_window=(
                    None
                    if msg.sent_at is None
                    else (window is None or is_allowed(msg.sent_at, window, zone))
                ),
                token=msg.public_token,
            )
        )
    _add_actions(session, timelines)
    for hold in session.scalars(
        select(CapHold).where(CapHold.campaign_key == campaign_key).order_by(CapHold.id)
    ):
        timeline = timelines.get(hold.enrollment_id)
        if timeline is not None:
            step = campaign.step(hold.step_key) if campaign else None
            timeline.holds.append(
                Hold(
                    hold.held_at,
                    hold.held_until,
                    step.index + 1 if step else None,
                    hold.step_key,
                    hold.cap,
                    hold.allowed,
                    hold.counted,
                )
            )
    for timeline in timelines.values():
        # Step order; a step no longer in the file keeps its place in time.
        timeline.entries.sort(
            key=lambda e: (
                e.position if e.position is not None else 10**6,
                e.due_at,
                CHANNELS.index(e.channel) if e.channel in CHANNELS else 9,
            )
        )
    return list(timelines.values())


@dataclass
class StepCount:
    position: int | None
    step_key: str
    channel: str
    messages: int = 0
    sent: int = 0
    # Due while its own channel's window was closed (a text due outside the text hours,
    # on a step whose email could go): held to the window's next opening.
    held: int = 0
    not_sent: dict[str, int] = field(default_factory=dict)  # "status: reason" -> count
    largest_late: timedelta = timedelta(0)


def step_counts(timelines: list[Timeline]) -> list[StepCount]:
    """Per step and channel: how many messages, how many went out, how many waited for
    their window, and why the others did not go; in step order."""
    rows: dict[tuple, StepCount] = {}
    for t in timelines:
        for e in t.entries:
            key = (e.position if e.position is not None else 10**6, e.step_key, e.channel)
            row = rows.setdefault(key, StepCount(e.position, e.step_key, e.channel))
            row.messages += 1
            if e.sent_at is None:
                why = f"{e.status}: {e.reason}" if e.reason else e.status
                row.not_sent[why] = row.not_sent.get(why, 0) + 1
                continue
            row.sent += 1
            row.held += e.expected_at > e.due_at
            row.largest_late = max(row.largest_late, e.late)
    return [rows[k] for k in sorted(rows)]


def step_count_lines(counts: list[StepCount]) -> list[str]:
    rows = [["#", "step", "channel", "messages", "sent", "held to its window", "largest late"]]
    for c in counts:
        rows.append(
            [
                str(c.position or "-"),
                c.step_key,
                c.channel,
                str(c.messages),
                str(c.sent),
                str(c.held),
                f"{c.largest_late.total_seconds():.1f} s",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(widths[i]) if i in (1, 2) else c.rjust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for c in counts:
        for why, n in sorted(c.not_sent.items(), key=lambda p: -p[1]):
            lines.append(f"{c.step_key}/{c.channel} not sent: {why} ({n})")
    return lines


_DID = {
    (EventType.OPENED, "o"): "opened the email of",
    (EventType.CLICKED, "m"): "read online",
    (EventType.CLICKED, "c"): "opened the request-a-call page from",
}
_STOPPED = {
    "sms_keyword": "texted STOP",
    "sms_reply": "texted that they want no more texts",
    "link": "unsubscribed with the link",
    "preferences": "turned it off in their preferences",
}


def _add_actions(session: Session, timelines: dict[int, Timeline]) -> None:
    """What each person did: opens and clicks (not a machine's), call requests, and the
    channels they stopped, in the order they did them."""
    people = {t.subscriber_id: t for t in timelines.values()}
    if not people:
        return
    steps = {e.message_id: e for t in people.values() for e in t.entries}

    def step_of(message_id: int | None) -> str:
        e = steps.get(message_id)
        return f"step {e.position or '-'} ({e.step_key}, {e.channel})" if e else "a message"

    for ev in session.scalars(
        select(Event)
        .where(
            id_in(session, Event.subscriber_id, people),
            Event.type.in_((EventType.OPENED, EventType.CLICKED)),
            Event.automated.is_(False),
        )
        .order_by(Event.occurred_at, Event.id)
    ):
        route = (ev.payload or {}).get("route", "")
        what = _DID.get((ev.type, route), f"{ev.type}")
        people[ev.subscriber_id].actions.append(
            Action(ev.occurred_at, f"{what} {step_of(ev.message_id)}")
        )
    # Opens and clicks retention rolled up (campaigns.reporting.retention): one action
    # each, at the first time, saying how many.
    for roll, subscriber_id in session.execute(
        select(EventRollup, Message.subscriber_id)
        .join(Message, Message.id == EventRollup.message_id)
        .where(
            id_in(session, Message.subscriber_id, people),
            EventRollup.type.in_((EventType.OPENED, EventType.CLICKED)),
            EventRollup.automated.is_(False),
        )
    ):
        what = _DID.get((roll.type, roll.route), f"{roll.type}")
        times = f" ({roll.events} times)" if roll.events > 1 else ""
        people[subscriber_id].actions.append(
            Action(roll.first_at, f"{what} {step_of(roll.message_id)}{times}")
        )
    for req in session.scalars(
        select(ContactRequest).where(id_in(session, ContactRequest.subscriber_id, people))
    ):
        prefers = f" (prefers {req.preferred_channel})" if req.preferred_channel else ""
        people[req.subscriber_id].actions.append(
            Action(req.created_at, f"asked for a call from {step_of(req.message_id)}{prefers}")
        )
    for rec in session.scalars(
        select(ConsentRecord).where(
            id_in(session, ConsentRecord.subscriber_id, people),
            ConsentRecord.action == ConsentAction.REVOKED,
        )
    ):
        how = _STOPPED.get(rec.source, rec.source)
        channel = "texts" if rec.channel == Channel.SMS else "email"
        people[rec.subscriber_id].actions.append(
            Action(rec.created_at, f"stopped {channel}: {how}")
        )
    for ev in session.scalars(
        select(PersonEvent).where(id_in(session, PersonEvent.subscriber_id, people))
    ):
        t = people[ev.subscriber_id]
        goal = " (the course's goal)" if ev.id == t.goal_event_id else ""
        t.actions.append(Action(ev.occurred_at, f"did {ev.name}{goal}"))
    for t in people.values():
        t.actions.sort(key=lambda a: a.at)


def lateness(timelines: list[Timeline], on_time: timedelta = ON_TIME) -> Lateness:
    sent = [(t, e) for t in timelines for e in t.sent]
    late = [(t, e) for t, e in sent if e.late >= on_time]
    return Lateness(
        sent=len(sent),
        on_time=len(sent) - len(late),
        late=late,
        outside_window=[(t, e) for t, e in sent if e.in_window is False],
        out_of_order=[(t, a, b) for t in timelines for a, b in t.out_of_order()],
        largest=max((e.late for _, e in sent), default=timedelta(0)),
    )


# ---------------------------------------------------------------- as text


def _when(t: datetime) -> str:
    return f"{t:%a %d %b %H:%M} {t.tzname()}"


def _late(entry: Entry) -> str:
    late = entry.late
    if late is None:
        return "-"
    seconds = late.total_seconds()
    if late < ON_TIME:
        return f"+{seconds:.1f}s"
    hours, rest = divmod(int(seconds), 3600)
    return f"+{hours}h{rest // 60:02d}m LATE"


def describe(timeline: Timeline) -> str:
    name = timeline.first_name or "(no name)"
    reach = {("email",): "email only", ("sms",): "texts only"}.get(
        timeline.addresses, "email and texts"
    )
    zone = timeline.zone if timeline.zone_given else f"{timeline.zone} (none given: the default)"
    exit = f" ({timeline.exit_reason})" if timeline.exit_reason else ""
    return (
        f"{name}: {reach}, {zone}, {timeline.country or '?'} (emergency "
        f"{timeline.emergency_number}); {timeline.status}{exit}"
    )


def timeline_lines(timeline: Timeline) -> list[str]:
    """The person's course as a small table, every time in their own zone."""
    rows = [["#", "step", "channel", "due (local)", "sent (local)", "late", "status"]]
    for e in timeline.entries:
        status = e.status if e.status in ("sent", "delivered") else f"{e.status}: {e.reason}"
        if e.in_window is False:
            status += "  OUTSIDE ITS WINDOW"
        sent = f"{timeline.local(e.sent_at):%a %d %b %H:%M:%S}" if e.sent_at else "-"
        rows.append(
            [
                str(e.position or "-"),
                e.step_key,
                e.channel,
                _when(timeline.local(e.due_at)),
                sent,
                _late(e),
                status,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    widths[-1] = 0  # the last column runs on
    lines = [describe(timeline)]
    for row in rows:
        cells = [c.rjust(widths[0]) if i == 0 else c.ljust(widths[i]) for i, c in enumerate(row)]
        lines.append(("  " + "  ".join(cells)).rstrip())
    for hold in timeline.holds:
        lines.append(
            f"  {_when(timeline.local(hold.at))}  step {hold.position or '-'} ({hold.step_key}) "
            f"HELD by the frequency cap ({hold.counted} of {hold.allowed} this {hold.cap}) "
            f"until {_when(timeline.local(hold.until))}"
        )
    for action in timeline.actions:
        lines.append(
            f"  {_when(timeline.local(action.at))}  {timeline.first_name or 'they'} {action.what}"
        )
    for earlier, later in timeline.out_of_order():
        lines.append(
            f"  OUT OF ORDER on {later.channel}: step {later.position} ({later.step_key}) went "
            f"before step {earlier.position} ({earlier.step_key})"
        )
    return lines


def lateness_lines(figures: Lateness) -> list[str]:
    lines = [
        f"{figures.sent} messages went out; {figures.on_time} within a minute of the moment "
        f"their window allowed (largest delay {figures.largest.total_seconds():.1f} s); "
        f"{len(figures.late)} later than that; {len(figures.outside_window)} outside their "
        f"window; {len(figures.out_of_order)} lessons out of order."
    ]
    for t, e in figures.late:
        lines.append(f"  late: {t.first_name or '(no name)'} {e.step_key}/{e.channel} {_late(e)}")
    for t, e in figures.outside_window:
        lines.append(
            f"  outside its window: {t.first_name or '(no name)'} {e.step_key}/{e.channel}"
        )
    for t, a, b in figures.out_of_order:
        lines.append(
            f"  out of order: {t.first_name or '(no name)'} {b.step_key} before {a.step_key} "
            f"on {b.channel}"
        )
    return lines
