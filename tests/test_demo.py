"""`drip demo` end to end, as a newcomer runs it: a real worker with its scheduler and the
real web app as subprocesses, on the shipped templates with the course's first four
lessons a day apart and the shipped course's two branches (tests/fixtures/demo_course).
Then, from its own database: no message later than its window explains, every person's
lessons in order, the people's doings (opens, clicks, a call request, a STOP, an
unsubscribe) recorded, the branches taken (the email reader who did not open a lesson
got its text version; the one who asked for a call skipped the closing "ask us to call
you" lesson); and every command its summary prints works as printed."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campaigns.clock import FileClock
from campaigns.db import make_engine, make_session_factory
from campaigns.models import ConsentRecord, ContactRequest, Event, Message, Subscriber, Suppression
from campaigns.reporting.funnels import campaign_report
from campaigns.reporting.timelines import course_timelines, lateness
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from settings import ROOT
from tests.conftest import FIXTURES

COURSE = FIXTURES / "demo_course"
DRIP = Path(sys.executable).parent / "drip"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    where = tmp_path_factory.mktemp("demo-run")
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "CLOCK_"))
    }
    env["PUBLIC_BASE_URL"] = f"http://localhost:{port}"
    # The product's default: the course runs from its revisions in the demo's database,
    # seeded from the files on the first look.
    env["SEQUENCES_SOURCE"] = "database"
    run = subprocess.run(
        [str(DRIP), "demo", "--workdir", "demo", "--definitions", str(COURSE)],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    folder = where / "demo"
    engine = make_engine(f"sqlite:///{folder / 'drip.sqlite3'}")
    yield {
        "out": run.stdout,
        "where": where,
        "folder": folder,
        "env": env,
        "port": port,
        "factory": make_session_factory(engine),
        "registry": Registry(COURSE, ROOT / "templates"),
    }
    engine.dispose()


def test_every_message_went_at_its_moment_and_every_lesson_in_order(demo):
    out = demo["out"]
    assert "0 later than that; 0 outside their window; 0 lessons out of order." in out
    with demo["factory"]() as session:
        timelines = course_timelines(
            session, demo["registry"], Policy(), "hip_and_back", default_country="US"
        )
    assert len(timelines) == 7
    figures = lateness(timelines)
    assert figures.clean and figures.sent >= 25, figures
    for t in timelines:
        assert t.sent, t.first_name
        for channel in {e.channel for e in t.sent}:
            went = sorted((e for e in t.sent if e.channel == channel), key=lambda e: e.sent_at)
            positions = [e.position for e in went]
            assert positions == sorted(positions), (t.first_name, channel, positions)
        # Each lesson the person got came in step order, with none skipped on the way
        # but the steps whose condition did not hold for them (each with its reason).
        lessons = sorted({e.position for e in t.sent})
        passed = {e.position for e in t.entries if (e.reason or "").startswith("condition: ")}
        done = sorted(set(lessons) | {p for p in passed if p < max(lessons)})
        assert done == list(range(1, len(done) + 1)), (t.first_name, lessons, passed)
    # Times are each person's own: the summary shows Kolkata, Sydney and Madrid clocks.
    for zone in (" IST ", " AEDT ", " CET"):
        assert zone in out


def test_the_people_did_what_people_do_through_the_web_app(demo):
    with demo["factory"]() as session:
        kinds = dict(
            session.execute(
                select(Event.type, func.count())
                .where(Event.automated.is_(False))
                .group_by(Event.type)
            ).all()
        )
        asks = session.scalars(select(ContactRequest)).all()
        revoked = dict(
            session.execute(
                select(ConsentRecord.source, ConsentRecord.channel).where(
                    ConsentRecord.action == "revoked"
                )
            ).all()
        )
        suppressed = set(session.execute(select(Suppression.channel, Suppression.address)).all())
        report = campaign_report(session, demo["registry"], "hip_and_back")
    assert kinds["opened"] >= 10 and kinds["clicked"] >= 3
    assert kinds["inbound"] == 1 and kinds["unsubscribed"] == 1  # STOP; the one-click POST
    assert kinds["delivered"] >= 25  # the providers' signed receipts
    assert len(asks) == 1 and asks[0].preferred_channel == "phone"
    assert revoked == {"sms_keyword": "sms", "link": "email"}
    assert {("sms", "+919876543210"), ("email", "lucia@example.com")} <= suppressed
    steps = report.steps
    assert sum(s.opens for s in steps) >= 10 and sum(s.clicks for s in steps) >= 3
    assert sum(s.contact_requests for s in steps) == 1 and sum(s.unsubscribes for s in steps) == 1
    assert all(s.delivered == s.sent for s in steps)
    # And the summary says so.
    out = demo["out"]
    assert "asked for a call from" in out and "stopped texts: texted STOP" in out
    assert "stopped email: unsubscribed with the link" in out
    assert re.search(r"exited: unsubscribed: \d", out) or "unsubs" in out
    assert "Call requests waiting for the care team" in out and "Maria" in out
    # The course's goal, posted through the events API: James leaves the course there.
    assert "books a visit (the booking system posts visit_booked)" in out
    assert "POST /api/v1/events 201" in out
    assert "exited (reached the goal visit_booked)" in out
    assert "goal: visit_booked (then exit): 1 of 7 enrolled reached it" in out


def printed_commands(out: str) -> list[str]:
    block = out.split("On the demo's data (these work as printed, from here):", 1)[1]
    return [
        line.strip()
        for line in block.splitlines()
        if line.startswith("  ") and not line.startswith("      ") and "DATABASE_URL=" in line
    ]


def test_every_printed_command_works_as_printed(demo):
    commands = printed_commands(demo["out"])
    assert all(c.startswith("DATABASE_URL=sqlite:///demo/drip.sqlite3 ") for c in commands)
    names = [c.split(f"{DRIP} ", 1)[1].split()[0] for c in commands]
    assert names == ["report", "contacts", "status", "web", "simulate"]
    for command in commands:
        if " web " in command:
            continue
        run = subprocess.run(
            command,
            shell=True,
            cwd=demo["where"],
            env=demo["env"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, (command, run.stdout[-2000:], run.stderr[-2000:])
        assert run.stdout.strip(), command
    report = subprocess.run(
        commands[0], shell=True, cwd=demo["where"], env=demo["env"], capture_output=True, text=True
    ).stdout
    assert "hip_and_back v1" in report and "100.0%" in report


def test_the_printed_web_command_opens_the_links_in_the_demo_s_emails(demo):
    command = next(c for c in printed_commands(demo["out"]) if " web " in c)
    first = sorted((demo["folder"] / "outbox" / "email").glob("*.eml"))[0]
    with open(first, "rb") as f:
        html = BytesParser(policy=policy.default).parse(f).get_body(("html",)).get_content()
    link = re.search(rf"http://localhost:{demo['port']}/m/[A-Za-z0-9_.-]+", html).group()
    server = subprocess.Popen(
        command, shell=True, cwd=demo["where"], env=demo["env"], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(link, timeout=5) as page:
                    assert page.status == 200 and b"<html" in page.read().lower()
                break
            except urllib.error.HTTPError:
                raise
            except OSError:  # not listening yet
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)


def test_the_file_clock_is_shared_and_only_moves_forward(tmp_path):
    a, b = FileClock(tmp_path / "clock"), FileClock(tmp_path / "clock")
    start = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    a.set(start)
    assert abs(b.now() - start) < timedelta(seconds=5)  # runs at real speed from there
    later = start + timedelta(days=3)
    assert abs(b.jump_to(later) - later) < timedelta(seconds=1)
    assert abs(a.now() - later) < timedelta(seconds=5)  # every reader sees the jump
    a.jump_to(start)  # never back
    assert b.now() >= later


def test_the_demo_s_broker_writes_each_message_whole_and_kombu_reads_it(tmp_path):
    from kombu import Connection

    from workers.filesystem_broker import register

    queue = tmp_path / "queue"
    queue.mkdir()
    folders = {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "control_folder": str(tmp_path / "control"),
    }
    with Connection(register(), transport_options=folders) as ours:
        ours.SimpleQueue("sms").put({"ids": [1, 2, 3]})
    names = [p.name for p in queue.iterdir()]
    assert len(names) == 1 and names[0].endswith(".sms.msg")  # nothing left aside
    with Connection("filesystem://", transport_options=folders) as kombus:
        queue = kombus.SimpleQueue("sms")
        message = queue.get(timeout=5)
        assert message.payload == {"ids": [1, 2, 3]}
        message.ack()


def test_the_branches_took_each_person_their_own_way(demo):
    """Sam opens only his first and third emails: the hip lesson's text version reached
    him a day after its email. Maria and Lee opened that email within hours, so the step
    ended at once for them, skipped by its condition; James has no phone and Priya and
    Rosa no email, so it never applied to them (nor made them wait). Maria asked for a
    call, so she skipped the closing "ask us to call you" lesson; everyone else still in
    the course got it."""
    with demo["factory"]() as session:
        rows = session.execute(
            select(Subscriber.first_name, Message.step_key, Message.channel, Message.status,
                   Message.reason_code, Message.reason, Message.sent_at, Message.due_at)
            .join(Subscriber, Subscriber.id == Message.subscriber_id)
        ).all()  # fmt: skip
    by = {}
    for name, step, channel, status, code, reason, sent_at, due_at in rows:
        by.setdefault((name, step), []).append((channel, status, code, reason, sent_at, due_at))
    (sam_text,) = by[(None, "hip_pain_by_text")]  # Sam has no first name
    assert sam_text[0] == "sms" and sam_text[1] in ("sent", "delivered")
    (sam_email,) = by[(None, "hip_pain")]
    # He was waited for a whole day, counted from the claim of his email (its cursor's
    # base), which is milliseconds before the email went out: within one tick of it.
    assert sam_text[4] - sam_email[4] >= timedelta(days=1) - timedelta(seconds=5)
    for name in ("Maria", "Lee"):
        (row,) = by[(name, "hip_pain_by_text")]
        assert row[1:4] == (
            "skipped",
            "condition",
            "condition: unless opened hip_pain, which holds",
        ), name
        (email,) = by[(name, "hip_pain")]
        assert row[5] - email[4] < timedelta(hours=10), name  # woken by the open, not a day
    for name in ("James", "Priya", "Rosa"):
        (row,) = by[(name, "hip_pain_by_text")]
        assert row[1:4] == (
            "skipped",
            "condition",
            "condition: if has email and text, which does not hold",
        ), name
    maria = by[("Maria", "next_step")]
    assert {r[0] for r in maria} == {"email", "sms"}
    assert all(r[1:4] == ("skipped", "condition", "condition: unless asked for a call, which holds")
               for r in maria)  # fmt: skip
    for name in ("Lee", None):
        assert any(r[1] in ("sent", "delivered") for r in by[(name, "next_step")]), name
    assert not by.get(("James", "next_step"))  # he left at the goal, before the last lesson
    out = demo["out"]
    assert "Branches (steps with a condition" in out
    assert "skipped for Maria: condition: unless asked for a call, which holds" in out
