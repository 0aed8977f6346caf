"""Was it a person? Opens and clicks that machines make, told apart from people's.

Mail scanners fetch every link of a message as it arrives, privacy proxies fetch every
image, browsers prefetch what they expect to be clicked. Those requests are kept (an
Event with `automated` set and the reason in `automated_reason`) but reports leave them
out of opens and clicks, and say how many they left out and why.

    judge(session, message, hit, now, rules) -> Why | None

What is judged a machine's, first match wins (Why):
  head_request         a HEAD request: a link checker asks whether the page exists; a
                       browser following a link sends GET
  prefetch             the browser says it is only fetching ahead: `Sec-Purpose:
                       prefetch` (and `prefetch;prerender`; MDN, Sec-Purpose), Chrome's
                       legacy `Purpose: prefetch`, Firefox's `X-Moz: prefetch`, Safari's
                       `X-Purpose: preview`
  no_user_agent        no User-Agent at all: every browser and mail app sends one
  apple_privacy_proxy  an open through Apple Mail Privacy Protection, which loads remote
                       content privately in the background, whether or not the message is
                       opened (Apple's Mail User Guide, support.apple.com/guide/mail/
                       mlhlae4a4fe6): its proxy sends the bare user agent "Mozilla/5.0",
                       which no browser sends alone (reported to ua-parser/uap-core, issue
                       509, September 2021), and comes from iCloud Private Relay's
                       egress addresses (Word to the Wise, "Apple MPP reporting and
                       geolocation", 2021, from Mailchimp's data), which Apple publishes
                       (developer.apple.com, "Prepare your network or web server for
                       iCloud Private Relay": https://mask-api.icloud.com/egress-ip-ranges.csv);
                       give that file as APPLE_PROXY_RANGES_FILE to use it. Opens only: a
                       click from those addresses is a person browsing through Private Relay
  scanner_agent        a user agent the crawlerdetect library knows as a bot, crawler or
                       tool (its 1,462 patterns from JayBizzle/Crawler-Detect: security
                       scanners such as Barracuda, link previewers, headless Chrome,
                       python-requests, curl...); for an open, the image proxies of Gmail
                       and Yahoo Mail are the reader's own mail app loading the images as
                       the message is opened (WURFL classifies GoogleImageProxy as an email
                       client, not a robot) and count
  seconds_after_send   within `seconds_after_send` of the message going out (its sent_at)
                       or of the provider's delivery report: a scanner at the receiving
                       server, not a reader
  many_links_at_once   a click on one link of a message within `burst_seconds` of a click
                       on another of its links: nobody reads a lesson that fast. Both
                       clicks are the machine's (the earlier one is marked as well)

The message row is locked while a hit is judged (SQLite: the write lock every
transaction takes), so clicks of one message arriving together are judged one after the
other and a burst is seen whatever order they commit in.
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from crawlerdetect import CrawlerDetect
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.db import id_in
from campaigns.models import Event, Message
from campaigns.states import EventType


class Why(enum.StrEnum):
    HEAD = "head_request"
    PREFETCH = "prefetch"
    NO_USER_AGENT = "no_user_agent"
    APPLE_PROXY = "apple_privacy_proxy"
    SCANNER = "scanner_agent"
    TOO_SOON = "seconds_after_send"
    BURST = "many_links_at_once"
    PROVIDER = "provider_flag"  # the provider's own verdict (SendGrid's sg_machine_open)

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    Why.HEAD: "HEAD request",
    Why.PREFETCH: "browser prefetch",
    Why.NO_USER_AGENT: "no user agent",
    Why.APPLE_PROXY: "Apple privacy proxy",
    Why.SCANNER: "scanner or bot",
    Why.TOO_SOON: "seconds after sending",
    Why.BURST: "many links at once",
    Why.PROVIDER: "provider's machine flag",
}
# Events flagged before reasons were kept (migration 0011).
UNKNOWN_LABEL = "flagged (no reason kept)"

PURPOSE_HEADERS = ("sec-purpose", "purpose", "x-purpose", "x-moz")
PREFETCH_WORDS = ("prefetch", "prerender", "preview")
APPLE_PROXY_AGENT = "Mozilla/5.0"
MAIL_IMAGE_PROXIES = ("GoogleImageProxy", "YahooMailProxy")
# Longer user agents are not worth matching (and are cut before the library's regex).
MAX_AGENT = 512


@dataclass(frozen=True)
class Hit:
    """One request to a link of ours, as far as judging it goes."""

    kind: str  # EventType.OPENED or CLICKED
    link: str  # which link of the message: "o", "m", "c", or "l:<link id>"
    method: str = "GET"
    user_agent: str = ""
    purpose: str = ""  # the purpose headers' values, lower-cased
    client: str | None = None  # the connecting address

    @classmethod
    def from_request(
        cls, kind: str, link: str, method: str, headers: Mapping[str, str], client: str | None
    ) -> Hit:
        purpose = " ".join(headers.get(h, "") for h in PURPOSE_HEADERS).strip().lower()
        return cls(
            kind=kind,
            link=link,
            method=method.upper(),
            user_agent=(headers.get("user-agent") or "")[:MAX_AGENT],
            purpose=purpose[:200],
            client=client,
        )


class AddressRanges:
    """Address ranges from a CSV whose first column is a prefix (`17.0.0.0/24,US,...`),
    as Apple publishes Private Relay's egress ranges; looked up by bisection."""

    def __init__(self, networks):
        spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for net in networks:
            spans[net.version].append((int(net.network_address), int(net.broadcast_address)))
        self._starts, self._ends = {}, {}
        for version, pairs in spans.items():
            merged: list[list[int]] = []
            for start, end in sorted(pairs):  # overlapping or touching ranges become one
                if merged and start <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            self._starts[version] = [a for a, _ in merged]
            self._ends[version] = [b for _, b in merged]

    @classmethod
    def from_file(cls, path: Path) -> AddressRanges:
        return _ranges_from(Path(path).resolve())

    def __contains__(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        starts, ends = self._starts[ip.version], self._ends[ip.version]
        i = bisect.bisect_right(starts, int(ip)) - 1
        return i >= 0 and int(ip) <= ends[i]


@lru_cache(maxsize=4)
def _ranges_from(path: Path) -> AddressRanges:
    # Read once per process (Apple's list is some megabytes): restart after replacing it.
    networks = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            prefix = line.split(",", 1)[0].strip()
            if not prefix or prefix.startswith("#"):
                continue
            try:
                networks.append(ipaddress.ip_network(prefix, strict=False))
            except ValueError:
                continue  # a header or a malformed line names no range
    return AddressRanges(networks)


@dataclass(frozen=True)
class Rules:
    seconds_after_send: float = 10.0
    burst_seconds: float = 2.0
    apple_ranges_file: Path | None = None

    def apple_ranges(self) -> AddressRanges | None:
        if self.apple_ranges_file is None:
            return None
        return AddressRanges.from_file(self.apple_ranges_file)


@lru_cache(maxsize=4096)
def _scanner(user_agent: str) -> bool:
    # About 0.2 ms for an agent not seen before (one big expression), and a few agents
    # make most requests. A detector per call: the library keeps its last match on the
    # instance, and link pages are served from many threads; its patterns are shared.
    return CrawlerDetect(user_agent=user_agent).is_crawler()


def by_request(hit: Hit, rules: Rules) -> Why | None:
    """What the request alone shows."""
    if hit.method == "HEAD":
        return Why.HEAD
    if any(word in hit.purpose for word in PREFETCH_WORDS):
        return Why.PREFETCH
    agent = hit.user_agent.strip()
    if not agent:
        return Why.NO_USER_AGENT
    if hit.kind == EventType.OPENED:
        if agent == APPLE_PROXY_AGENT:
            return Why.APPLE_PROXY
        ranges = rules.apple_ranges()
        if ranges is not None and hit.client in ranges:
            return Why.APPLE_PROXY
        if any(proxy in agent for proxy in MAIL_IMAGE_PROXIES):
            return None
    if agent == APPLE_PROXY_AGENT or _scanner(agent):
        return Why.SCANNER
    return None


def _delivered_at(session: Session, message_id: int) -> datetime | None:
    return session.scalar(
        select(Event.occurred_at)
        .where(Event.message_id == message_id, Event.type == EventType.DELIVERED)
        .order_by(Event.occurred_at.desc())
        .limit(1)
    )


def too_soon(now: datetime, moments, rules: Rules) -> bool:
    """Within `seconds_after_send` of any of `moments` (sent, delivered; None: not yet)."""
    window = timedelta(seconds=rules.seconds_after_send)
    return bool(window) and any(at is not None and now < at + window for at in moments)


def _too_soon(session: Session, message: Message, now: datetime, rules: Rules) -> bool:
    if not rules.seconds_after_send:
        return False
    return too_soon(now, [message.sent_at, _delivered_at(session, message.id)], rules)


def partners_among(hit: Hit, clicks, now: datetime, rules: Rules) -> list:
    """The clicks of `clicks` ((link, when, event) of the message's tracking clicks)
    that make a burst with this hit: on other links within the burst window. A click
    the request alone showed to be a machine's (a HEAD, a prefetch, a scanner's agent)
    neither makes a burst nor is part of one: it is already left out, and it says nothing
    of the clicks around it."""
    if hit.kind != EventType.CLICKED or rules.burst_seconds <= 0:
        return []
    since = now - timedelta(seconds=rules.burst_seconds)
    timing = (Why.TOO_SOON, Why.BURST)
    return [
        event
        for link, at, event in clicks
        if at >= since
        and link != hit.link
        and (not event.automated or event.automated_reason in timing)
    ]


def _burst_partners(session: Session, message: Message, hit: Hit, now: datetime, rules: Rules):
    """Earlier clicks of this message on other links within the burst window
    (partners_among)."""
    if hit.kind != EventType.CLICKED or rules.burst_seconds <= 0:
        return []
    since = now - timedelta(seconds=rules.burst_seconds)
    recent = session.scalars(
        select(Event).where(
            Event.message_id == message.id,
            Event.type == EventType.CLICKED,
            Event.provider == "tracking",
            Event.occurred_at >= since,
        )
    ).all()
    return partners_among(hit, [(link_of(e), e.occurred_at, e) for e in recent], now, rules)


def settle(soon: bool, partners) -> Why | None:
    """The verdict from timing, once the request showed nothing: too soon after sending,
    or part of a burst. The earlier clicks of a burst are marked (each has `automated`
    and `automated_reason`: an Event, or a batch's Click)."""
    for earlier in partners:
        if not earlier.automated:
            earlier.automated, earlier.automated_reason = True, Why.BURST
    if soon:
        return Why.TOO_SOON
    return Why.BURST if partners else None


def link_of(event: Event) -> str:
    """Which link of its message a click event was on ("m", "c", "l:<link id>")."""
    return link_in(event.payload)


def link_in(payload: dict | None) -> str:
    """link_of, from a click event's payload."""
    payload = payload or {}
    route = str(payload.get("route", ""))
    return f"l:{payload.get('link', '')}" if route == "l" else route


def lock(session: Session, message: Message) -> None:
    """Hits of one message are judged one at a time (see the module's docstring)."""
    session.execute(select(Message.id).where(Message.id == message.id).with_for_update())


def judge(session: Session, message: Message, hit: Hit, now: datetime, rules: Rules) -> Why | None:
    """Why this hit is a machine's, or None for a person's. A burst also marks the earlier
    clicks it is made of (flushing them)."""
    why = by_request(hit, rules)
    if why is not None:
        return why
    soon = _too_soon(session, message, now, rules)
    return settle(soon, _burst_partners(session, message, hit, now, rules))


# ------------------------------------------------------------ a batch of hits at once
# The drainer (campaigns.tracking.queued_hits) judges a batch with what judge would read,
# read for all its messages in two statements, and keeps it up to date with the batch's
# own clicks as it goes, so a hit is judged as if the ones before it were recorded.


@dataclass
class Click:
    """A click of a message, as a burst is judged: one recorded (its event's `id`) or one
    of the batch, not inserted yet (its event's `row`)."""

    link: str
    at: datetime
    automated: bool
    automated_reason: str | None
    id: int | None = None
    row: dict | None = None


@dataclass
class History:
    """What judging a message's hits reads: when it went out, its last delivery report,
    its tracking clicks since the batch's earliest hit less the burst window."""

    sent_at: datetime | None
    delivered_at: datetime | None = None
    clicks: list[Click] = field(default_factory=list)


def histories(
    session: Session,
    sent: dict[int, datetime | None],
    clicking: set[int],
    since: datetime,
    rules: Rules,
) -> dict[int, History]:
    """The History of each message of `sent` (id: its sent_at); the clicks only of those
    in `clicking`, from `since` on."""
    found = {message_id: History(sent_at) for message_id, sent_at in sent.items()}
    if found and rules.seconds_after_send:
        delivered = session.execute(
            select(Event.message_id, func.max(Event.occurred_at))
            .where(id_in(session, Event.message_id, found), Event.type == EventType.DELIVERED)
            .group_by(Event.message_id)
        )
        for message_id, at in delivered:
            found[message_id].delivered_at = at
    if clicking and rules.burst_seconds > 0:
        clicks = session.execute(
            select(
                Event.id,
                Event.message_id,
                Event.occurred_at,
                Event.payload,
                Event.automated,
                Event.automated_reason,
            )
            .where(
                id_in(session, Event.message_id, clicking),
                Event.type == EventType.CLICKED,
                Event.provider == "tracking",
                Event.occurred_at >= since,
            )
            .order_by(Event.id)
        )
        for e in clicks:
            found[e.message_id].clicks.append(
                Click(link_in(e.payload), e.occurred_at, e.automated, e.automated_reason, e.id)
            )
    return found


def by_timing(history: History, hit: Hit, now: datetime, rules: Rules) -> tuple[Why | None, list]:
    """judge's verdict once by_request found nothing, from the message's History; and the
    earlier Clicks it marked a burst's."""
    partners = partners_among(hit, ((c.link, c.at, c) for c in history.clicks), now, rules)
    marked = [c for c in partners if not c.automated]
    return settle(too_soon(now, (history.sent_at, history.delivered_at), rules), partners), marked
