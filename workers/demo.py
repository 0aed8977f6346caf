"""`drip demo`: the whole hip-and-back sequence for a few sample people, in about a minute.

Nothing is faked: a real Celery worker with its embedded scheduler (beat) runs as a
subprocess on the embedded stack (SQLite, the file-system broker, the local outbox). Only
time is compressed: every process reads the same scaled clock from the environment, so
four weeks of delays, send windows and text hours pass in about a minute. Durations the
engine measures on that clock (leases, re-queue and retry delays) are scaled to match.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from settings import ROOT

CAMPAIGN = "hip_and_back"
COURSE_DAYS = 40  # four weeks of lessons plus the send windows, weekends and time zones

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


def _env(workdir: Path, scale: float, epoch: float) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "DATABASE_", "EMAIL_PROVIDER", "SMS_PROVIDER"))
    }
    env.update(
        ENVIRONMENT="development",
        DATABASE_URL=f"sqlite:///{workdir / 'drip.sqlite3'}",
        BROKER_DIR=str(workdir / "broker"),
        OUTBOX_DIR=str(workdir / "outbox"),
        TIME_SCALE=str(scale),
        CLOCK_REAL_EPOCH=str(epoch),
        CLOCK_VIRTUAL_EPOCH=str(epoch),
        TICK_SECONDS="0.25",
        REAP_SECONDS="2",
        # Measured on the scaled clock: 20 real seconds of lease, 5 of re-queue delay.
        LEASE_SECONDS=str(int(20 * scale)),
        REQUEUE_AFTER_SECONDS=str(int(5 * scale)),
        BROKER_VISIBILITY_TIMEOUT=str(int(100 * scale)),
        RETRY_BASE_SECONDS=str(2 * scale),
        RETRY_CAP_SECONDS=str(10 * scale),
        PYTHONPATH=str(ROOT),
    )
    return env


def run_demo(seconds: int = 60, workdir: str = "var/demo") -> int:
    folder = Path(workdir).resolve()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    scale = COURSE_DAYS * 86400 / seconds
    epoch = time.time()
    env = _env(folder, scale, epoch)
    os.environ.update(env)  # this process reads the same settings as the worker

    from settings import get_settings, load_settings

    get_settings.cache_clear()  # anything in this process that reads settings sees the demo's
    from campaigns.audience.subscribers import upsert_subscriber
    from campaigns.db import transaction
    from campaigns.delivery.enrollment import enroll
    from campaigns.migrate import upgrade
    from workers.runtime import build_runtime

    upgrade(env["DATABASE_URL"])
    rt = build_runtime(load_settings())  # the demo's database and scaled clock, from `env`
    rt.registry.get(CAMPAIGN)  # a broken sequence file stops the demo before anything starts
    with transaction(rt.factory) as session:
        for person in SAMPLE_PEOPLE:
            consent = tuple(c for c, k in (("email", "email"), ("sms", "phone")) if person.get(k))
            sub = upsert_subscriber(session, rt.clock, consent=consent, source="demo", **person)
            enroll(session, rt.clock, rt.registry, sub, CAMPAIGN, rt.policy, source="demo")
    click_echo(
        f"Enrolled {len(SAMPLE_PEOPLE)} sample people in {CAMPAIGN!r}; "
        f"running ~{COURSE_DAYS} days in ~{seconds}s (1 s = {scale / 3600:.1f} h)."
    )
    with open(folder / "worker.log", "wb") as log:  # the child keeps its own descriptor
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.app",
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
    try:
        done = _watch(rt, worker, deadline=time.monotonic() + seconds * 3 + 30)
    finally:
        _stop(worker)
    _summary(rt, folder)
    if not done:
        click_echo(
            f"Not everything finished in time; see {folder / 'worker.log'} and `drip status`."
        )
        return 1
    return 0


def _watch(rt, worker, deadline: float) -> bool:
    from campaigns.reporting.overview import read_status
    from campaigns.states import TERMINAL, EnrollmentStatus

    last = ""
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            click_echo(f"The worker exited with code {worker.returncode}.")
            return False
        with rt.factory() as s:
            status = read_status(s, rt.clock)
        active = status.enrollments.get(EnrollmentStatus.ACTIVE, 0)
        counts = status.messages
        line = (
            f"  {rt.clock.now():%a %d %b %H:%M} UTC  people still in course: {active}  "
            + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        )
        if line[30:] != last:
            click_echo(line)
            last = line[30:]
        if not active and counts and all(k in TERMINAL for k in counts):
            return True
        time.sleep(1.0)
    return False


def _stop(worker) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def _summary(rt, folder: Path) -> None:
    from campaigns.reporting.overview import read_status

    campaign = rt.registry.get(CAMPAIGN)
    table: dict[str, collections.Counter] = {s.key: collections.Counter() for s in campaign.steps}
    with rt.factory() as s:
        by_step = read_status(s, rt.clock).by_step
    for (campaign_key, step_key, channel), statuses in by_step.items():
        if campaign_key == CAMPAIGN:
            for status, n in statuses.items():
                table[step_key][f"{channel}:{status}"] += n
    click_echo("\nWhat went out, per step (sent / not sent and why is in `drip status`):")
    click_echo(
        f"  {'#':>2}  {'step':<15} {'emails sent':>11} {'texts sent':>10} "
        f"{'skipped':>8} {'other':>6}"
    )
    for step in campaign.steps:
        c = table[step.key]
        skipped = sum(v for k, v in c.items() if k.endswith(":skipped"))
        other = sum(c.values()) - c["email:sent"] - c["sms:sent"] - skipped
        click_echo(
            f"  {step.index + 1:>2}  {step.key:<15} {c['email:sent']:>11} {c['sms:sent']:>10} "
            f"{skipped:>8} {other:>6}"
        )
    from campaigns.reporting.progress import course_progress

    with rt.factory() as s:
        people = course_progress(s, CAMPAIGN, rt.settings.default_country)
    click_echo("\nWho got what (lessons handed to a provider, on which channels):")
    for p in people:
        click_echo(
            f"  {p.first_name or '(no name)':<10} {'+'.join(sorted(p.channels)) or '-':<10} "
            f"{p.country or '?':<3} emergency {p.emergency_number:<4} "
            f"{len(p.steps):>2}/{len(campaign.steps)} lessons  {p.status}"
        )
    outbox = folder / "outbox"
    emails = sorted((outbox / "email").glob("*.eml")) if (outbox / "email").exists() else []
    click_echo(
        f"\nEmails: {outbox / 'email'}/ ({len(emails)} .eml files; open one in a mail client)"
    )
    click_echo(f"Texts:  {outbox / 'texts.log'} (one line per text)")
    click_echo(f"Every provider call: {outbox / 'deliveries.log'}")
    click_echo(f"Database: {folder / 'drip.sqlite3'}   Worker log: {folder / 'worker.log'}")


def click_echo(text: str) -> None:
    print(text, flush=True)
