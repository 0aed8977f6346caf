"""What a fault scenario did, judged from the fake providers' logs (what reached the
"provider", when, for whom, which lesson) and from the outbox (what is left undecided).

    duplicates        accepted provider calls beyond the first for one person, channel
                      and lesson
    lost              due steps neither terminal nor unconfirmed when the run ended:
                      messages queued, sending, retrying or deferred past their time,
                      and enrollments whose next step is due but was never claimed
                      (except people held behind an unconfirmed message: invariant 10)
    to opted out      calls accepted for an address more than half a second after its
                      STOP or unsubscribe had been answered by the web app (a call leased
                      before the opt-out committed may still be on its way: counted apart)
    outside hours     texts the fake accepted outside 08:00-21:00 in the person's zone,
                      judged at the moment the request reached it (virtual clock)
    out of order      (person, channel) pairs whose lessons reached the provider in
                      another order than 1, 2, 3 (first accepted call of each)
    unconfirmed       messages left `unconfirmed`, and how many of those never reached
                      the provider (no accepted call for that person, channel, lesson)
    resume            seconds from the end of the fault to the next accepted call
    recover           seconds from the end of the fault until nothing was due and not yet
                      handed to a provider (the backlog drained)
    peak texts/s      the most Twilio calls (any answer) in any one-second window
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg

from bench.fault_stack import PENDING_STATUSES, Person, Stack

LESSON = re.compile(r"\blesson (\d+)", re.IGNORECASE)
TEXT_HOURS = (8, 21)  # SMS_EARLIEST_HOUR, SMS_LATEST_HOUR as shipped
# A call leased (and re-checked) just before an opt-out committed may reach the provider
# just after it was answered: that one was already on its way, not "the next message".
IN_FLIGHT_GRACE = 0.5


@dataclass(frozen=True)
class Call:
    channel: str
    address: str
    lesson: int
    at: float  # wall time the request reached the fake
    status: int  # what the fake answered (or began to answer, for one held past a timeout)

    @property
    def accepted(self) -> bool:
        return self.status in (201, 202)


@dataclass(frozen=True)
class OptOut:
    channel: str
    address: str
    sent: float
    answered: float
    status: int


@dataclass
class Figures:
    scenario: str
    fault: str = ""
    people: int = 0
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    lost: int = 0
    to_opted_out: int = 0
    outside_hours: int = 0
    out_of_order: int = 0
    unconfirmed: int = 0
    unconfirmed_never_sent: int = 0
    resume: float | None = None
    recover: float | None = None
    peak_texts: int = 0
    seconds: float = 0.0
    settled: bool = True
    error: str | None = None  # the scenario itself failed (see the logs)
    statuses: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not (
            self.error or self.duplicates or self.lost or self.to_opted_out or self.outside_hours
        )


def calls(stack: Stack) -> list[Call]:
    found = []
    for r in stack.texts():
        m = LESSON.search(r.form.get("Body", ""))
        to = r.form.get("To", "")
        found.append(Call("sms", to, int(m[1]) if m else 0, r.wall_time, _status(r)))
    for r in stack.mails():
        for p in r.json.get("personalizations", []):
            m = LESSON.search(p.get("subject") or r.json.get("subject") or "")
            to = p["to"][0]["email"].lower()
            found.append(Call("email", to, int(m[1]) if m else 0, r.wall_time, _status(r)))
    return found


def _status(record) -> int:
    return record.response.status or 0 if record.response is not None else 0


def write_calls(path, found: list[Call], real_epoch: float) -> None:
    """The fakes' logs, one line per message a provider was asked to send, for a look
    after the run: seconds since the start, channel, address, lesson, answer."""
    with open(path, "w") as out:
        out.write("seconds,channel,address,lesson,status\n")
        for c in sorted(found, key=lambda c: c.at):
            out.write(f"{c.at - real_epoch:.3f},{c.channel},{c.address},{c.lesson},{c.status}\n")


def measure(
    stack: Stack,
    figures: Figures,
    people: list[Person],
    fault_end: float,
    opt_outs: list[OptOut],
    virtual_epoch: float,
) -> Figures:
    everything = calls(stack)
    write_calls(stack.tmp / "calls.csv", everything, stack.real_epoch)
    taken = sorted((c for c in everything if c.accepted), key=lambda c: c.at)
    figures.people = len(people)
    figures.accepted = len(taken)

    per_message = Counter((c.channel, c.address, c.lesson) for c in taken)
    figures.duplicates = sum(n - 1 for n in per_message.values() if n > 1)

    zones = {}
    for p in people:
        for channel, address in (("email", p.email), ("sms", p.phone)):
            if address:
                zones[(channel, address.lower() if channel == "email" else address)] = p.zone
    worst = None
    for c in taken:
        if c.channel != "sms":
            continue
        zone = ZoneInfo(zones.get((c.channel, c.address), "America/New_York"))
        local = datetime.fromtimestamp(virtual_epoch + (c.at - stack.real_epoch), zone)
        if not TEXT_HOURS[0] <= local.hour < TEXT_HOURS[1]:
            figures.outside_hours += 1
            if worst is None:
                worst = f"{local:%H:%M:%S.%f}"[:-4] + f" {zone.key} (lesson {c.lesson})"
    if worst:
        figures.notes.append(f"first text outside hours: {worst}")

    order: dict[tuple[str, str], list[int]] = defaultdict(list)
    for c in taken:
        lessons = order[(c.channel, c.address)]
        if c.lesson not in lessons:
            lessons.append(c.lesson)
    figures.out_of_order = sum(1 for lessons in order.values() if lessons != sorted(lessons))

    stops = {(o.channel, o.address): o.answered for o in opt_outs if o.status < 300}
    late = [c.at - stops[(c.channel, c.address)] for c in taken if (c.channel, c.address) in stops]
    figures.to_opted_out = sum(1 for gap in late if gap > IN_FLIGHT_GRACE)
    in_flight = sum(1 for gap in late if 0 < gap <= IN_FLIGHT_GRACE)
    if in_flight:
        figures.notes.append(f"{in_flight} calls within {IN_FLIGHT_GRACE:g} s of an opt-out")
    refused = [o for o in opt_outs if o.status >= 300]
    if opt_outs:
        figures.notes.append(
            f"{len(opt_outs) - len(refused)} opt-outs answered 2xx"
            + (f", {len(refused)} refused" if refused else "")
        )

    text_times = sorted(c.at for c in everything if c.channel == "sms")
    start = 0
    for end, at in enumerate(text_times):
        while at - text_times[start] >= 1.0:
            start += 1
        figures.peak_texts = max(figures.peak_texts, end - start + 1)

    after = [c.at for c in taken if c.at >= fault_end]
    figures.resume = round(after[0] - fault_end, 1) if after else None
    drained = [s.at for s in stack.samples if s.at >= fault_end and s.pending == 0]
    figures.recover = round(drained[0] - fault_end, 1) if drained else None

    _from_outbox(stack, figures, {(c.channel, c.address, c.lesson) for c in taken})
    return figures


def _from_outbox(stack: Stack, figures: Figures, reached: set) -> None:
    url = stack.bench.databases.url(stack.db_name, driver=False)
    now = stack.clock.now()
    with psycopg.connect(url, autocommit=True) as conn:
        figures.statuses = dict(
            conn.execute("select status, count(*) from messages group by status").fetchall()
        )
        figures.messages = sum(figures.statuses.values())
        waiting = conn.execute(
            "select count(*) from messages where status = any(%(s)s)"
            " and (status <> 'deferred' or next_attempt_at <= %(now)s)",
            {"s": list(PENDING_STATUSES), "now": now},
        ).fetchone()[0]
        # A person held behind an unconfirmed message waits for it (invariant 10): that
        # message is counted as unconfirmed, their next step is not lost.
        unclaimed = conn.execute(
            "select count(*) from enrollments e where e.status = 'active'"
            " and e.next_due_at <= %(now)s and not exists (select 1 from messages m"
            " where m.enrollment_id = e.id and m.status = 'unconfirmed')",
            {"now": now},
        ).fetchone()[0]
        figures.lost = waiting + unclaimed
        rows = conn.execute(
            "select m.channel, m.step_key, s.email, s.phone from messages m"
            " join subscribers s on s.id = m.subscriber_id where m.status = 'unconfirmed'"
        ).fetchall()
    figures.unconfirmed = len(rows)
    for channel, step_key, email, phone in rows:
        address = (email or "").lower() if channel == "email" else phone
        if (channel, address, int(step_key.lstrip("l"))) not in reached:
            figures.unconfirmed_never_sent += 1
