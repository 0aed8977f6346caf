"""The demo's sample people, and how they behave: through the real web app, over HTTP,
with the links in the messages they actually received.

    SAMPLE_PEOPLE   seven people: email only, texts only, both; six time zones and one
                    person with none; English and Spanish
    HABITS          what each does with which of their messages, and how long after it
                    arrives: opens (the pixel), reads online and asks for a call (the
                    links in the email), texts STOP (Twilio's inbound webhook, signed as
                    Twilio signs it), unsubscribes (the one-click POST a mail client makes)
    Visitor         the HTTP side: reads a message from the local outbox, follows its links
                    on the demo's web server, and plays the providers' delivery receipts
                    (SendGrid's signed event webhook, Twilio's signed status callback),
                    since the local outbox stands in for both
    Diary           which habits fall due when, as the person's messages go out
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from campaigns.delivery.composing import STATUS_REF_PURPOSE
from campaigns.links import Signer
from campaigns.reporting.timelines import Entry, Timeline
from workers.providers import sendgrid_webhook, twilio_webhook

SAMPLE_PEOPLE = [
    {
        "first_name": "James",
        "email": "james@example.com",
        "timezone": "America/New_York",
        "locale": "en",
    },
    {
        "first_name": "Maria",
        "email": "maria@example.com",
        "phone": "+12135550143",
        "timezone": "America/Los_Angeles",
        "locale": "es",
    },
    # Text only: no email, so every lesson comes by text (the steps' `fallback: sms`).
    {"first_name": "Priya", "phone": "+919876543210", "timezone": "Asia/Kolkata", "locale": "en"},
    {"first_name": "Rosa", "phone": "+13055550147", "timezone": "America/New_York", "locale": "es"},
    {"first_name": None, "email": "sam@example.com", "phone": "+12025550199", "locale": "en"},
    {
        "first_name": "Lucia",
        "email": "lucia@example.com",
        "timezone": "Europe/Madrid",
        "locale": "es-ES",
    },
    {
        "first_name": "Lee",
        "email": "lee@example.com",
        "phone": "+61491570006",
        "timezone": "Australia/Sydney",
        "locale": "en",
    },
]


@dataclass(frozen=True)
class Habit:
    who: str  # the person's email address or phone number
    does: str  # open | read | call | stop | unsubscribe | book | answer
    channel: str  # on which of their messages
    # The nth lesson they get on that channel (the last, if fewer); None: each. For
    # `answer`, the nth check-in question instead: questions are not counted as lessons.
    nth: int | None
    after: timedelta  # how long after it arrives
    reply: str = ""  # `answer`: the value they choose, or what they text back


def _h(hours: float) -> timedelta:
    return timedelta(hours=hours)


HABITS = (
    Habit("james@example.com", "open", "email", None, _h(0.6)),
    Habit("james@example.com", "read", "email", 2, _h(0.8)),
    # The course's goal: the booking system posts `visit_booked` through the events API.
    Habit("james@example.com", "book", "email", 3, _h(6)),
    Habit("maria@example.com", "open", "email", None, _h(2)),
    Habit("maria@example.com", "call", "email", 8, _h(2.2)),
    Habit("+919876543210", "read", "sms", 1, _h(0.25)),
    Habit("+919876543210", "stop", "sms", 5, _h(1)),
    Habit("+13055550147", "read", "sms", 3, _h(3)),
    Habit("sam@example.com", "open", "email", 1, _h(5)),
    Habit("sam@example.com", "open", "email", 3, _h(5)),
    Habit("lucia@example.com", "open", "email", None, _h(1)),
    Habit("lucia@example.com", "unsubscribe", "email", 4, _h(1.5)),
    Habit("lee@example.com", "open", "email", None, _h(9)),
    Habit("lee@example.com", "read", "email", 11, _h(9.1)),
    # The check-in question (`asks: pain_score`) at the start and the end: Lee answers on
    # the email's answer page (GET, then the POST that records), Rosa by text.
    Habit("lee@example.com", "answer", "email", 1, _h(9.2), "6"),
    Habit("lee@example.com", "answer", "email", 2, _h(9.2), "3"),
    Habit("+13055550147", "answer", "sms", 1, _h(3.5), "siete"),
    Habit("+13055550147", "answer", "sms", 2, _h(3.5), "4/10"),
)


def sample_doings(course) -> dict[str, dict]:
    """HABITS as `drip simulate` takes them (campaigns.reporting.simulation): per person
    (email or phone), `opens` (True, or the steps whose emails they open) and
    `asks_for_call` (the step after which they ask), the nth message counted along the
    course's steps as the person can receive them."""
    out: dict[str, dict] = {}
    for person in SAMPLE_PEOPLE:
        who = person.get("email") or person.get("phone")
        reach = [c for c, k in (("email", "email"), ("sms", "phone")) if person.get(k)]
        doings: dict = {}
        for habit in HABITS:
            if habit.who != who or habit.does not in ("open", "call"):
                continue
            steps = [
                s.key
                for s in course.steps
                if habit.channel in s.channels_for(reach) and s.question is None
            ]
            if not steps:
                continue
            step = None if habit.nth is None else steps[min(habit.nth, len(steps)) - 1]
            if habit.does == "call":
                doings["asks_for_call"] = step or steps[0]
            elif step is None:
                doings["opens"] = True
            elif doings.get("opens") is not True:
                doings["opens"] = {*doings.get("opens", ()), step}
        out[who] = doings
    return out


VERBS = {
    "open": "opens",
    "read": "reads online",
    "call": "asks for a call from",
    "stop": "texts STOP after",
    "unsubscribe": "unsubscribes (one click) from",
    "book": "books a visit (the booking system posts visit_booked), a while after",
    "answer": "answers the check-in question of",
}


@dataclass
class Planned:
    at: datetime
    habit: Habit
    timeline: Timeline
    entry: Entry


class Diary:
    """Which habits fall due when. `notice` is called with the timelines whenever the
    engine is idle: each message that went out since is counted (the nth on its channel
    for that person) and the habits it triggers are planned."""

    def __init__(
        self,
        people: dict[int, str],
        expected: dict[tuple[int, str], int],
        questions: frozenset[str] = frozenset(),
        expected_questions: dict[tuple[int, str], int] | None = None,
    ):
        self.people = people  # subscriber id -> email or phone (the habits' `who`)
        self.expected = expected  # (subscriber id, channel) -> lessons they will get
        # Steps that ask a check-in question: counted apart, for the `answer` habits.
        self.questions = questions
        self.expected_questions = expected_questions or {}
        self.seen: set[int] = set()
        self.planned: list[Planned] = []

    def notice(self, timelines: list[Timeline]) -> list[tuple[Timeline, Entry]]:
        """Messages that went out since the last call (in the order they went)."""
        new = []
        for t in timelines:
            who = self.people.get(t.subscriber_id)
            for channel in {e.channel for e in t.entries}:
                went = sorted((e for e in t.sent if e.channel == channel), key=lambda e: e.sent_at)
                lessons = [e for e in went if e.step_key not in self.questions]
                asked = [e for e in went if e.step_key in self.questions]
                for answering, counted, expected in (
                    (False, lessons, self.expected),
                    (True, asked, self.expected_questions),
                ):
                    new += self._plan(t, who, channel, answering, counted, expected)
        new.sort(key=lambda pair: pair[1].sent_at)
        return new

    def _plan(self, t, who, channel, answering, counted, expected) -> list:
        """The habits the messages `counted` (lessons, or questions) trigger."""
        new = []
        for nth, entry in enumerate(counted, start=1):
            if entry.message_id in self.seen:
                continue
            self.seen.add(entry.message_id)
            new.append((t, entry))
            last = expected.get((t.subscriber_id, channel), 0)
            for habit in HABITS:
                if habit.who != who or habit.channel != channel:
                    continue
                if (habit.does == "answer") != answering:
                    continue
                wanted = habit.nth if habit.nth is None else min(habit.nth, last)
                if wanted is None or wanted == nth:
                    self.planned.append(Planned(entry.sent_at + habit.after, habit, t, entry))
        return new

    def due(self, now: datetime) -> list[Planned]:
        ready = sorted((p for p in self.planned if p.at <= now), key=lambda p: p.at)
        self.planned = [p for p in self.planned if p.at > now]
        return ready

    def next_at(self) -> datetime | None:
        return min((p.at for p in self.planned), default=None)


class Visitor:
    """People and providers reaching the demo's web server, as they would in production:
    links from the messages in the local outbox, and signed provider webhooks."""

    def __init__(
        self,
        server: str,
        public_base_url: str,
        outbox: Path,
        signer: Signer,
        twilio_token: str,
        sendgrid_key: ec.EllipticCurvePrivateKey,
        api_key: str | None = None,
    ):
        self.api_key = api_key  # the booking system's key to POST /api/v1/events
        self.server = server.rstrip("/")
        self.public = public_base_url.rstrip("/")
        self.outbox = outbox
        self.signer = signer
        self.twilio_token = twilio_token
        self.sendgrid_key = sendgrid_key
        self.failures: list[str] = []
        self.requests = 0

    # ------------------------------------------------------------ HTTP

    def _call(self, method: str, url: str, data: bytes | None = None, headers=None) -> int:
        """`url` is a public one (PUBLIC_BASE_URL): sent to the demo's server instead."""
        path = url[len(self.public) :] if url.startswith(self.public) else url
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"User-Agent": "Mozilla/5.0 (demo person)", **(headers or {})},
        )
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        if status not in (200, 201):
            self.failures.append(f"{method} {path.split('?')[0][:40]}...: {status}")
        return status

    def _form(self, url: str, fields: dict[str, str], headers=None) -> int:
        body = urllib.parse.urlencode(fields).encode()
        return self._call(
            "POST",
            url,
            body,
            {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        )

    # ------------------------------------------------------------ what people do

    def _email(self, entry: Entry):
        with open(self.outbox / "email" / f"{entry.message_id:08d}.eml", "rb") as f:
            return BytesParser(policy=policy.default).parse(f)

    def _links(self, entry: Entry) -> dict[str, str]:
        if entry.channel == "email":
            msg = self._email(entry)
            text = msg.get_body(("html",)).get_content()
            links = {"unsubscribe": str(msg["List-Unsubscribe"]).strip("<>")}
        else:
            text = (self.outbox / "sms" / f"{entry.message_id:08d}.txt").read_text()
            links = {}
        for short in ("o", "m", "c"):
            found = re.search(rf"{re.escape(self.public)}/{short}/[A-Za-z0-9_.-]+", text)
            if found:
                links[short] = found.group()
        return links

    def act(self, planned: Planned, phone: str | None) -> str:
        """Do one habit; what happened, as a few words."""
        does = planned.habit.does
        if does == "stop":
            return f"{self.text_us(phone, 'STOP')}"
        links = self._links(planned.entry)
        wanted = {"open": "o", "read": "m", "call": "c"}.get(does)
        if wanted and wanted not in links:
            return f"nothing to do: the message has no /{wanted}/ link"
        if does == "open":
            return f"GET /o/ {self._call('GET', links['o'])}"
        if does == "read":
            return f"GET /m/ {self._call('GET', links['m'])}"
        if does == "call":
            page = self._call("GET", links["c"])
            origin = {"Origin": self.public}
            done = self._form(links["c"], {"preferred_channel": "phone"}, origin)
            return f"GET /c/ {page}, POST /c/ {done}"
        if does == "book":
            return self.book(planned)
        if does == "answer":
            return self.answer(planned, phone)
        if does == "unsubscribe":
            # What a mail client sends for List-Unsubscribe-Post (RFC 8058).
            status = self._form(links["unsubscribe"], {"List-Unsubscribe": "One-Click"})
            return f"POST /u/ {status}"
        raise ValueError(does)

    def answer(self, planned: Planned, phone: str | None) -> str:
        """The check-in question: by text, a reply; by email, the answer link for the
        value (the page shows it), then the POST that records it."""
        if planned.entry.channel == "sms":
            return self.text_us(phone, planned.habit.reply)
        html = self._email(planned.entry).get_body(("html",)).get_content()
        links = re.findall(rf'href="({re.escape(self.public)}/a/[A-Za-z0-9_.-]+)"', html)
        value = int(planned.habit.reply)
        if len(links) <= value:
            return "nothing to do: the message has no answer links"
        page = self._call("GET", links[value])
        done = self._form(links[value], {"value": str(value)}, {"Origin": self.public})
        return f"GET /a/ {page}, POST /a/ {done}"

    def book(self, planned: Planned) -> str:
        """What the clinic's booking system sends when the person books a visit."""
        body = {
            "event_id": f"demo-visit-{planned.timeline.subscriber_id}",
            "name": "visit_booked",
            "email": planned.habit.who,
            "occurred_at": planned.at.isoformat(),
        }
        status = self._call(
            "POST",
            f"{self.public}/api/v1/events",
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        return f"POST /api/v1/events {status}"

    def text_us(self, phone: str | None, body: str) -> str:
        url = f"{self.public}/webhooks/twilio/inbound"
        sid = "SM" + hashlib.sha256(f"{phone}:{body}".encode()).hexdigest()[:32]
        form = {"MessageSid": sid, "From": phone or "", "To": "+12025550100", "Body": body}
        signature = RequestValidator(self.twilio_token).compute_signature(url, form)
        status = self._form(url, form, {twilio_webhook.SIGNATURE_HEADER: signature})
        return f"POST /webhooks/twilio/inbound {status}"

    # ------------------------------------------------------------ providers' receipts

    def deliver(self, entries: list[Entry], now: datetime) -> None:
        """Say each message reached its person, as SendGrid and Twilio would."""
        emails = [e for e in entries if e.channel == "email"]
        if emails:
            events = [
                {
                    "event": "delivered",
                    sendgrid_webhook.REF_ARG: e.token,
                    "sg_event_id": f"demo-delivered-{e.message_id}",
                    "timestamp": int(now.timestamp()),
                }
                for e in emails
            ]
            body = json.dumps(events).encode()
            stamp = str(int(now.timestamp()))
            signature = self.sendgrid_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            self._call(
                "POST",
                f"{self.public}/webhooks/sendgrid/events",
                body,
                {
                    "Content-Type": "application/json",
                    sendgrid_webhook.SIGNATURE_HEADER: base64.b64encode(signature).decode(),
                    sendgrid_webhook.TIMESTAMP_HEADER: stamp,
                },
            )
        for e in entries:
            if e.channel != "sms":
                continue
            ref = urllib.parse.quote(self.signer.sign(STATUS_REF_PURPOSE, e.token), safe="")
            url = f"{self.public}/webhooks/twilio/status?ref={ref}"
            sid = "SM" + hashlib.sha256(str(e.message_id).encode()).hexdigest()[:32]
            form = {"MessageSid": sid, "MessageStatus": "delivered", "To": "", "From": ""}
            signature = RequestValidator(self.twilio_token).compute_signature(url, form)
            self._form(url, form, {twilio_webhook.SIGNATURE_HEADER: signature})


def sendgrid_key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key for the demo's SendGrid receipts, and its public half as SendGrid's
    settings page shows it (base64 DER), for SENDGRID_WEBHOOK_PUBLIC_KEY."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(der).decode()
