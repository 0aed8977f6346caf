"""Real worker processes for integration tests: `celery worker -B` started as a
subprocess against the test's database and broker, killed as a process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from campaigns.models import Enrollment, Message
from campaigns.states import TERMINAL
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parent.parent
# Monday 2 March 2026, 15:00 UTC: mid-morning in New York, so texts are allowed.
VIRTUAL_EPOCH = 1772463600.0


@dataclass
class Stack:
    """The environment one test's processes share."""

    tmp: Path
    database_url: str
    redis_url: str | None
    procs: list[subprocess.Popen] = field(default_factory=list)
    real_epoch: float = field(default_factory=time.time)
    # Unique per stack, not per test name: pytest names a test's folder the same in every
    # run, and a Redis that outlives runs would hand this run's worker the last one's
    # queues and bindings under the same prefix.
    redis_prefix: str = field(default_factory=lambda: f"drip-test-{uuid.uuid4().hex[:12]}:")

    @property
    def outbox(self) -> Path:
        return self.tmp / "outbox"

    @property
    def cwd(self) -> Path:
        """Where the processes run: the test's own folder, never the checkout. Settings
        read `.env` from the working directory, and a deployment's `.env` in the checkout
        (compose's `cp .env.example .env`) would hand the tests' workers its providers,
        keys, Redis and public URL for every variable the environment below leaves unset."""
        return self.tmp

    def env(self, **extra) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
        env.update(
            ENVIRONMENT="test",
            SECRET_KEY="integration-test-secret-key-0123456789abcdef",
            # Stated, not left to defaults: with a `.env` beside them these would be read
            # from it (EMAIL_PROVIDER=sendgrid in .env.example), real keys and all.
            EMAIL_PROVIDER="outbox",
            SMS_PROVIDER="outbox",
            DATABASE_URL=self.database_url,
            BROKER_DIR=str(self.tmp / "broker"),
            OUTBOX_DIR=str(self.outbox),
            DEFINITIONS_DIR=str(FIXTURES / "definitions"),
            TEMPLATES_DIR=str(FIXTURES / "templates"),
            TICK_SECONDS="0.5",
            REAP_SECONDS="1",
            # Workers started with -B each run a scheduler and one leads: a test that kills
            # the leading worker gets its ticks back from another within two seconds.
            SCHEDULER_LEASE_SECONDS="1.5",
            SCHEDULER_RENEW_SECONDS="0.5",
            CLOCK_REAL_EPOCH=str(self.real_epoch),
            CLOCK_VIRTUAL_EPOCH=str(VIRTUAL_EPOCH),
            PYTHONPATH=str(ROOT),
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
            env["REDIS_KEY_PREFIX"] = self.redis_prefix
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def settings(self, **extra):
        from settings import Settings

        env = self.env(**extra)
        keys = [k for k in Settings.model_fields]
        # _env_file=None: this process's working directory may be a checkout with a `.env`.
        return Settings(_env_file=None, **{k: env[k.upper()] for k in keys if k.upper() in env})

    def start_worker(
        self, name: str, beat: bool = True, concurrency: int = 2, **extra
    ) -> subprocess.Popen:
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "-Q",
            "schedule,email,sms,events",
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-l",
            "info",
        ]
        if beat:
            args += ["-B", "-s", str(self.tmp / f"beat-{name}")]
        return self._spawn(name, args, **extra)

    def start_drip(self, name: str, *args: str, **extra) -> subprocess.Popen:
        """`drip <args>` as a process of its own (`drip beat`, `drip worker ...`), its
        output in <name>.log."""
        return self._spawn(name, [sys.executable, "-m", "workers.cli", *args], **extra)

    def _spawn(self, name: str, argv: list[str], **extra) -> subprocess.Popen:
        with open(self.tmp / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env(**extra),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the worker's whole process group (main process, pool children, embedded
        beat) and return only once none of them runs any more."""
        _killpg(proc)
        _wait_for_group_gone(proc.pid)

    def stop_all(self) -> None:
        """SIGKILL every worker's process group: no SIGTERM first.

        A warm shutdown buys a test nothing (its assertions are made, its database and
        broker are thrown away) and costs seconds; SIGTERM to the group can cost much
        more. It reaches the pool children and the beat process as well as the main
        process, and a pool child that dies holding its queue's lock leaves the main
        process's exit handler (billiard's `_terminate_pool`, `_help_stuff_finish`)
        waiting on that lock for ever. Seen on the file-system broker, where the old
        SIGTERM-then-wait-10-s stop ran out its 10 s."""
        for proc in self.procs:  # all at once, then wait: one slow group delays no other
            _killpg(proc)
        for proc in self.procs:
            _wait_for_group_gone(proc.pid)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("*.log"))


def _killpg(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in the process group, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited while we looked
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def _wait_for_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """SIGKILL is asynchronous for the children: wait until none of the group runs, so
    nothing of a killed worker can touch the database after `kill` returns."""
    deadline = time.monotonic() + timeout
    while members := _group_members(pgid):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {members} of group {pgid} outlived SIGKILL")
        time.sleep(0.02)


def wait_until_done(factory, expected_messages: int, timeout: float = 90.0) -> list[Message]:
    """Until every enrollment finished and every expected message is terminal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as s:
            active = s.scalar(
                select(func.count(Enrollment.id)).where(Enrollment.status == "active")
            )
            rows = s.scalars(select(Message).order_by(Message.id)).all()
        if (
            not active
            and len(rows) >= expected_messages
            and all(m.status in TERMINAL for m in rows)
        ):
            return rows
        time.sleep(0.3)
    raise AssertionError(f"not done after {timeout}s: {[(m.id, m.status) for m in rows]}")


def delivery_lines(outbox: Path) -> list[str]:
    log = outbox / "deliveries.log"
    return log.read_text().splitlines() if log.exists() else []


def open_stack(request, tmp_path: Path) -> Stack:
    """The stack a worker test runs on, by its fixture's param: "embedded" (a SQLite file
    and the file-system broker) or "redis-postgres" (the run's emptied PostgreSQL database
    and Redis). The caller stops it (`stop_all`)."""
    if request.param == "embedded":
        from campaigns.migrate import upgrade

        url = f"sqlite:///{tmp_path / 'drip.sqlite3'}"
        upgrade(url)
        return Stack(tmp_path, url, None)
    return Stack(
        tmp_path,
        request.getfixturevalue("clean_pg_url"),
        request.getfixturevalue("redis_url"),
    )
