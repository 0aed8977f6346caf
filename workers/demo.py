"""`drip demo`: the whole hip-and-back course for seven sample people, at the exact times
it would reach them, in about a minute.

Nothing is faked. A real Celery worker with its scheduler (beat) and the real web app
(uvicorn) run as subprocesses on the embedded stack: SQLite, the file-system broker and
the local outbox. What is virtual is time, and only between moments: every process
reads "now" from one small file (campaigns.clock.FileClock, CLOCK_FILE), which runs at
real speed, and this driver moves it forward whenever the engine is idle, straight to
the next moment anything falls due (campaigns.delivery.agenda: an enrollment's next
step, a retry, a held text) or one of the people does something. So each message goes
out at its true due minute in its person's zone, the seconds a tick and a send take are
real seconds, and the four weeks between them take no time at all.

Why a file, not a database row: every process reads the clock many times per
transaction; a file costs one small read with no connection or lock, a write is
atomic (written aside, renamed into place), and the demo is one machine by design (its
broker is a folder too).

Idle means: nothing queued, leased or unconfirmed, and nothing due now. The database
shows every piece of work from its claim to its record, so when it shows none, no task
has any. Work that stays due without anything changing (a step held behind another, a
state this driver does not know) is watched for a few ticks before the clock moves on.

The course is replayed from a few weeks ago up to now, so when it ends virtual time is
real time again, and `drip report`, `drip contacts` or `drip web` on the demo's database
need no clock of their own. The people (workers/demo_people.py) open, click, ask for a
call, text STOP and unsubscribe through the web app, over HTTP, at virtual times after
the message they act on went out; the local outbox's delivery is confirmed through the
providers' own signed webhooks, as SendGrid and Twilio would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from settings import ROOT
from workers.demo_people import (
    SAMPLE_PEOPLE,
    VERBS,
    Diary,
    Visitor,
    sendgrid_key_pair,
)

__all__ = ["CAMPAIGN", "SAMPLE_PEOPLE", "run_demo"]

CAMPAIGN = "hip_and_back"
POLL = 0.05  # seconds between looks at the database while the engine works
QUIET = 1.5  # seconds work may stay due, unchanged, before the clock moves past it
TWILIO_TOKEN = "demo-twilio-auth-token"  # the demo's own: signs its STOP and receipts


@dataclass
class Demo:
    folder: Path
    campaign: str
    env: dict[str, str]
    rt: object = None
    diary: Diary | None = None
    visitor: Visitor | None = None
    names: dict[int, str] = field(default_factory=dict)  # subscriber id -> display name
    phones: dict[int, str | None] = field(default_factory=dict)
    moments: int = 0
    jumps: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(folder: Path, definitions: Path | None, templates: Path | None, public_key: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("REDIS_", "DATABASE_", "EMAIL_PROVIDER", "SMS_PROVIDER", "CLOCK_", "TIME_SCALE")
        )
        and not k.startswith(("SENDGRID_", "TWILIO_", "BROKER_", "OUTBOX_"))
    }
    env.update(
        ENVIRONMENT="development",
        DATABASE_URL=f"sqlite:///{folder / 'drip.sqlite3'}",
        BROKER_DIR=str(folder / "broker"),
        OUTBOX_DIR=str(folder / "outbox"),
        CLOCK_FILE=str(folder / "clock"),
        # Real seconds: virtual time runs at real speed between the driver's jumps.
        TICK_SECONDS="0.2",
        REAP_SECONDS="2",
        LEASE_SECONDS="30",
        REQUEUE_AFTER_SECONDS="5",
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        SENDGRID_WEBHOOK_PUBLIC_KEY=public_key,
        PYTHONPATH=str(ROOT),
    )
    if definitions:
        env["DEFINITIONS_DIR"] = str(definitions)
    if templates:
        env["TEMPLATES_DIR"] = str(templates)
    return env


def run_demo(
    workdir: str = "var/demo",
    *,
    campaign: str = CAMPAIGN,
    definitions: str | None = None,
    templates: str | None = None,
    serve: bool = False,
    timeout: float = 300,
) -> int:
    folder = Path(workdir).resolve()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    key, public_key = sendgrid_key_pair()
    env = _env(
        folder,
        Path(definitions).resolve() if definitions else None,
        Path(templates).resolve() if templates else None,
        public_key,
    )
    os.environ.update(env)  # this process reads the same settings as the others

    from campaigns.clock import FileClock
    from campaigns.migrate import upgrade
    from campaigns.sequences.campaign import DefinitionError
    from campaigns.sequences.registry import load_all
    from settings import get_settings, load_settings
    from workers.runtime import build_runtime

    get_settings.cache_clear()  # anything in this process that reads settings sees the demo's
    upgrade(env["DATABASE_URL"])
    settings = load_settings()
    # A broken sequence file stops the demo here.
    course = load_all(settings.definitions_dir, settings.templates_dir).get(campaign)
    if course is None:
        raise DefinitionError([f"no campaign {campaign!r} in {settings.definitions_dir}"])
    # Replay the course from a few weeks ago (its delays plus two weeks), so it ends
    # before now and the database agrees with the real clock once the demo is over. The
    # clock is set before the course is seeded as its first revision.
    span = sum((s.delay for s in course.steps), timedelta()) + timedelta(days=14)
    start = (datetime.now(UTC) - span).replace(minute=0, second=0, microsecond=0)
    FileClock(settings.clock_file).set(start - timedelta(minutes=5))
    rt = build_runtime(settings)
    rt.seed_sequences()
    clock = rt.clock
    assert isinstance(clock, FileClock)
    demo = Demo(folder, campaign, env, rt)
    port = _free_port()
    started = time.monotonic()
    worker = web = None
    try:
        worker = _start_worker(folder, env)
        web = _start_web(folder, env, port)
        try:
            _wait_ready(folder, worker, web, port)
        except RuntimeError as exc:
            say(str(exc))
            return 1
        clock.jump_to(start)
        _enroll(demo, course)
        demo.visitor = Visitor(
            f"http://127.0.0.1:{port}",
            rt.settings.public_base_url,
            folder / "outbox",
            rt.signer,
            TWILIO_TOKEN,
            key,
            _booking_key(demo),
        )
        say(
            f"Enrolled {len(SAMPLE_PEOPLE)} sample people in {campaign!r} on "
            f"{start:%a %d %b %Y %H:%M} UTC; replaying the course up to now, each message at "
            "its due minute (virtual time jumps whenever nothing is due)."
        )
        done = _drive(demo, worker, web, deadline=started + timeout)
    finally:
        _stop(web)
        _stop(worker)
    if done:
        # The course is over: back to real time, once the worker has stopped (its beat
        # must not run at real time: a follow-up's trigger, such as check_in's two weeks
        # after the course, could come due then and enroll people the demo never shows).
        clock.jump_to(datetime.now(UTC))
    elapsed = time.monotonic() - started
    _summary(demo, elapsed)
    if not done:
        say(f"Not everything finished; the end of {folder / 'worker.log'}:")
        say(_tail(folder / "worker.log"))
        return 1
    if demo.visitor.failures:
        say(f"Requests that failed: {'; '.join(demo.visitor.failures)}")
        return 1
    if serve:
        return serve_web(folder, env)
    return 0


# ---------------------------------------------------------------- processes


def _start_worker(folder: Path, env: dict) -> subprocess.Popen:
    with open(folder / "worker.log", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.demo_worker",
                "worker",
                "-B",
                "-s",
                str(folder / "celerybeat-schedule"),
                "-Q",
                "schedule,email,sms,events",
                "-c",
                "2",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _uvicorn(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "web.app:create_app",
        "--host",
        host,
        "--port",
        str(port),
        "--no-server-header",
    ]


def _start_web(folder: Path, env: dict, port: int) -> subprocess.Popen:
    with open(folder / "web.log", "wb") as log:
        return subprocess.Popen(
            [*_uvicorn("127.0.0.1", port), "--no-access-log"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _wait_ready(folder: Path, worker, web, port: int, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    worker_ready = web_ready = False
    while time.monotonic() < deadline and not (worker_ready and web_ready):
        for name, proc, log in (("worker", worker, "worker.log"), ("web app", web, "web.log")):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the demo's {name} exited with code {proc.returncode}:\n" + _tail(folder / log)
                )
        worker_ready = worker_ready or b" ready." in (folder / "worker.log").read_bytes()
        if not web_ready:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    web_ready = r.status == 200
            except OSError:
                pass
        time.sleep(0.1)
    if not (worker_ready and web_ready):
        raise RuntimeError(
            f"the demo's worker or web app did not start in {limit:.0f} s:\n"
            + _tail(folder / "worker.log")
            + _tail(folder / "web.log")
        )


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "".join(f"  {line}\n" for line in text.splitlines()[-lines:])


def _stop(proc) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def serve_web(folder: Path, env: dict) -> int:
    """Keep the web app up on the demo's data at PUBLIC_BASE_URL, so the links in the
    demo's emails open; on the real clock (the course is over). Ctrl-C stops it."""
    url = env.get("PUBLIC_BASE_URL", "http://localhost:8000").rstrip("/")
    parts = urlsplit(url)
    host = "127.0.0.1" if parts.hostname in ("localhost", "127.0.0.1") else "0.0.0.0"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    serving = {k: v for k, v in env.items() if k != "CLOCK_FILE"}
    say(
        f"\nServing the demo's web app at {url} (links in {folder / 'outbox' / 'email'} "
        "open there); Ctrl-C stops it."
    )
    proc = subprocess.Popen(_uvicorn(host, port), cwd=ROOT, env=serving)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 0


# ---------------------------------------------------------------- the course


def _enroll(demo: Demo, course) -> None:
    from campaigns.audience.subscribers import upsert_subscriber
    from campaigns.db import transaction
    from campaigns.delivery.enrollment import enroll

    rt = demo.rt
    people: dict[int, str] = {}
    expected: dict[tuple[int, str], int] = {}
    asked: dict[tuple[int, str], int] = {}
    with transaction(rt.factory) as session:
        for person in SAMPLE_PEOPLE:
            reach = [c for c, k in (("email", "email"), ("sms", "phone")) if person.get(k)]
            sub = upsert_subscriber(
                session, rt.clock, consent=tuple(reach), source="demo", **person
            )
            enroll(session, rt.clock, rt.registry, sub, demo.campaign, rt.policy, source="demo")
            people[sub.id] = person.get("email") or person.get("phone")
            demo.names[sub.id] = person.get("first_name") or "(no name)"
            demo.phones[sub.id] = person.get("phone")
            for channel in ("email", "sms"):
                # The messages they will surely get: a step with a condition may not come
                # (a habit "on the last one" acts on the last of these).
                expected[(sub.id, channel)] = sum(
                    channel in step.channels_for(reach)
                    for step in course.steps
                    if not step.branch.conditional and step.question is None
                )
                asked[(sub.id, channel)] = sum(
                    channel in step.channels_for(reach)
                    for step in course.steps
                    if not step.branch.conditional and step.question is not None
                )
    questions = frozenset(s.key for s in course.steps if s.question is not None)
    demo.diary = Diary(people, expected, questions, asked)


def _drive(demo: Demo, worker, web, deadline: float) -> bool:
    """Let the engine work; when it is idle, let the people do what is due, then move
    the clock to the next moment anything is due. True once nothing is left to do."""
    from campaigns.delivery.agenda import read_agenda
    from campaigns.reporting.timelines import course_timelines

    rt, clock, diary = demo.rt, demo.rt.clock, demo.diary
    quiet_since, last = None, None
    while time.monotonic() < deadline:
        for name, proc in (("worker", worker), ("web app", web)):
            if proc.poll() is not None:
                say(f"The demo's {name} exited with code {proc.returncode}.")
                return False
        with rt.factory() as session:
            agenda = read_agenda(session, clock.now())
        if agenda.in_flight:
            quiet_since = None
            time.sleep(POLL)
            continue
        with rt.factory() as session:
            timelines = course_timelines(
                session, rt.registry, rt.policy, demo.campaign, rt.settings.default_country
            )
        new = diary.notice(timelines)
        if new:
            demo.moments += 1
            _say_sent(demo, clock.now(), new)
            demo.visitor.deliver([e for _, e in new], clock.now())
        acted = diary.due(clock.now())
        for planned in acted:
            _act(demo, planned)
        if new or acted:
            quiet_since = None
            continue
        if not agenda.settled:
            # Due now, yet nothing in flight: the next tick takes it, or it is held behind
            # something else. Wait until nothing has changed for a few ticks.
            if quiet_since is None or agenda.fingerprint != last:
                quiet_since, last = time.monotonic(), agenda.fingerprint
            if time.monotonic() - quiet_since < QUIET:
                time.sleep(POLL)
                continue
        upcoming = [t for t in (agenda.next_at, diary.next_at()) if t is not None]
        if not upcoming:
            if not agenda.settled:
                say(
                    f"  {agenda.due_now} due and {agenda.unknown} waiting stayed so, with "
                    "nothing due later to move the clock to: stopping here."
                )
            return agenda.settled
        clock.jump_to(min(upcoming))
        demo.jumps += 1
        quiet_since = None
    return False


def _say_sent(demo: Demo, now: datetime, new) -> None:
    what = ", ".join(f"{demo.names.get(t.subscriber_id)} {e.step_key} ({_kind(e)})" for t, e in new)
    say(f"  {now:%a %d %b %H:%M} UTC  sent {len(new)}: {what}")


def _kind(entry) -> str:
    return "text" if entry.channel == "sms" else entry.channel


def _booking_key(demo: Demo) -> str:
    """An API key for the sample clinic's booking system (`drip api-keys create`)."""
    from campaigns.api_keys import create_key
    from campaigns.db import transaction

    with transaction(demo.rt.factory) as session:
        return create_key(session, demo.rt.clock, "demo booking system").key


def _act(demo: Demo, planned) -> None:
    t, e = planned.timeline, planned.entry
    result = demo.visitor.act(planned, demo.phones.get(t.subscriber_id))
    local = t.local(planned.at)
    say(
        f"  {planned.at:%a %d %b %H:%M} UTC  {demo.names.get(t.subscriber_id)} "
        f"({local:%H:%M} {local.tzname()}) {VERBS[planned.habit.does]} {e.step_key} "
        f"({_kind(e)}): {result}"
    )


# ---------------------------------------------------------------- the summary


def _command(demo: Demo, *args: str, broker: bool = False) -> str:
    """A command that works as printed, from where the demo was run."""
    env = demo.env

    def short(path: str) -> str:
        relative = os.path.relpath(path)
        return path if relative.startswith("..") else relative

    prefix = [f"DATABASE_URL=sqlite:///{short(str(demo.folder / 'drip.sqlite3'))}"]
    if broker:
        prefix.append(f"BROKER_DIR={short(env['BROKER_DIR'])}")
    for name in ("DEFINITIONS_DIR", "TEMPLATES_DIR"):
        if name in env:
            prefix.append(f"{name}={short(env[name])}")
    drip = Path(sys.executable).parent / "drip"
    program = short(str(drip)) if drip.exists() else "drip"
    return " ".join([*prefix, program, *args])


def demo_commands(demo: Demo) -> list[tuple[str, str]]:
    """(command, what it shows): every one works as printed, from where the demo ran."""
    port = str(urlsplit(demo.rt.settings.public_base_url).port or 80)
    return [
        (_command(demo, "report", demo.campaign), "the per-step report"),
        (_command(demo, "contacts"), "the call requests"),
        (_command(demo, "status", broker=True), "backlog, messages by state, queues"),
        (
            _command(demo, "web", "--port", port),
            f"the web app on the demo's data: the links in its emails open "
            f"({demo.rt.settings.public_base_url})",
        ),
        (
            _command(demo, "simulate", demo.campaign, "--cohort", "sample"),
            "the same course's timing, nothing sent",
        ),
    ]


def _summary(demo: Demo, elapsed: float) -> None:
    from campaigns.care.contact_queue import queue
    from campaigns.reporting.funnels import campaign_report
    from campaigns.reporting.timelines import course_timelines, lateness, lateness_lines
    from campaigns.reporting.timelines import timeline_lines as lines_of
    from workers.cli.contacts import contact_lines
    from workers.cli.reports import report_lines

    rt = demo.rt
    with rt.factory() as session:
        timelines = course_timelines(
            session, rt.registry, rt.policy, demo.campaign, rt.settings.default_country
        )
        report = campaign_report(session, rt.registry, demo.campaign)
        waiting = queue(session)
    say(
        f"\nThe course ran in {elapsed:.0f} s of real time: {demo.moments} moments with "
        f"messages, {demo.jumps} jumps of the clock, "
        f"{demo.visitor.requests if demo.visitor else 0} requests to the web app."
    )
    say("\nEach person's course, in their own time (late: beyond what the window explains):")
    for timeline in timelines:
        say("")
        for line in lines_of(timeline):
            say(f"  {line}")
    say("\nTiming:")
    for line in lateness_lines(lateness(timelines)):
        say(f"  {line}")
    branch_lines = _branches(demo, timelines)
    if branch_lines:
        say("\nBranches (steps with a condition: who got them, who skipped them and why):")
        for line in branch_lines:
            say(f"  {line}")
    say(f"\nPer step and channel (`drip report {demo.campaign}`):")
    for line in report_lines(report):
        say(f"  {line}")
    say("\nCall requests waiting for the care team (`drip contacts`):")
    for line in contact_lines(waiting, rt.clock.now()):
        say(f"  {line}")
    outbox = demo.folder / "outbox"
    emails = sorted((outbox / "email").glob("*.eml")) if (outbox / "email").exists() else []
    say(f"\nEmails: {outbox / 'email'}/ ({len(emails)} .eml files; open one in a mail client)")
    say(f"Texts:  {outbox / 'sms'}/ and {outbox / 'texts.log'}")
    say(f"Logs:   {demo.folder / 'worker.log'}, {demo.folder / 'web.log'}")
    say("\nOn the demo's data (these work as printed, from here):")
    for command, what in demo_commands(demo):
        say(f"  {command}\n      {what}")
    say("(`drip demo --serve` runs the demo, then keeps its web app up until Ctrl-C.)")


def _branches(demo: Demo, timelines) -> list[str]:
    course = demo.rt.registry.get(demo.campaign)
    lines = []
    for step in course.steps:
        if not (step.branch.conditional or step.wait_for):
            continue
        got, skipped = [], {}
        for t in timelines:
            entries = [e for e in t.entries if e.step_key == step.key]
            name = demo.names.get(t.subscriber_id, "?")
            if any(e.sent_at for e in entries):
                got.append(name)
            elif entries and entries[0].reason:
                skipped.setdefault(entries[0].reason, []).append(name)
        rule = "; ".join(
            p
            for p in (step.wait_for and f"waits {step.wait_for.describe()}", step.branch.describe())
            if p
        )
        lines.append(f"{step.key} ({rule}): went to {', '.join(got) or 'nobody'}")
        for reason, names in skipped.items():
            lines.append(f"    skipped for {', '.join(names)}: {reason}")
    return lines


def say(text: str) -> None:
    print(text, flush=True)
