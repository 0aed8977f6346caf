"""CSV import: rows per second through the set-based path, beside the row-by-row path.

    .venv/bin/python bench/imports.py [--rows 50000] [--old-rows 2000] [--batch-size 1000]
                                      [--deadline 120]

Generates a CSV with a realistic mix (seeded, so every run reads the same file): mostly
good rows with an email, a phone, a name, a zone and consent; some people listed twice;
rows without consent; bad emails, bad phones, unknown zones, a NUL byte, formula cells.
Then, each on its own fresh PostgreSQL database (created and dropped here, like
tests/conftest.py does):

  new    the whole file through `import_file` (streamed, batches written set-based)
  again  the same file again on that database: nothing new, every person found
  old    the first --old-rows rows with `bulk=False`: every record in its own savepoint
         with its own queries, as every import ran before (81 rows/s for 50,000 rows)

and prints rows/s for each and the ratio new/old, with the process's peak RSS. Goal
(issue 8): 50,000 rows in under 30 s. Bounded: each phase has a deadline (SIGALRM), and
the databases and the temporary directory are removed at the end.
PostgreSQL comes from BENCH_POSTGRES_URL or TEST_POSTGRES_URL (an admin URL).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg

from campaigns.clock import FixedClock
from campaigns.db import make_engine, make_session_factory
from campaigns.intake.imports import import_file
from campaigns.migrate import upgrade
from campaigns.sequences.registry import Registry
from campaigns.sequences.timing import Policy
from tests.conftest import T0

FIXTURES = ROOT / "tests" / "fixtures"
AREAS = (201, 202, 212, 213, 305, 312, 404, 415, 512, 617, 646, 702, 718, 801, 919)
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "")
HEADER = "email,phone,first_name,locale,timezone,consent_email,consent_sms,consent_source\n"


def generate(path: Path, rows: int, seed: int = 8) -> None:
    """Written line by line, so the bench's own memory stays small too."""
    rnd = random.Random(seed)
    seen: list[str] = []
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        for i in range(rows):
            kind = rnd.random()
            email = f"patient{i}@example.com"
            phone = f"+1 {rnd.choice(AREAS)} {rnd.randint(200, 999)} {i % 10000:04d}"
            zone = rnd.choice(ZONES)
            consent = ("yes", "yes" if rnd.random() < 0.6 else "no")
            name = f"Pat{i}"
            if kind < 0.04 and seen:  # listed twice (another clinic's export)
                email, phone = rnd.choice(seen), ""
            elif kind < 0.07:
                consent = ("no", "no")  # imported, not enrolled
            elif kind < 0.09:
                email = f"patient{i}.example.com"  # bad email
            elif kind < 0.11:
                phone = "12345"  # bad phone
            elif kind < 0.12:
                zone = "Mars/Olympus"
            elif kind < 0.125:
                name = "Pat\x00"  # a NUL byte
            elif kind < 0.13:
                name = '"=HYPERLINK(""http://x.example"")"'  # a formula, and a bad flag
                consent = ("=1+1", "no")
            else:
                seen.append(email)
            if phone and consent[1] == "no" and rnd.random() < 0.5:
                phone = ""
            f.write(
                f"{email},{phone},{name},{rnd.choice(('en', 'es'))},{zone},"
                f"{consent[0]},{consent[1]},clinic-{i % 7}\n"
            )


class Deadline(Exception):
    pass


def _alarm(_signum, _frame):
    raise Deadline


def timed(label: str, rows: int, deadline: int, fn) -> float | None:
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(deadline)
    start = time.perf_counter()
    try:
        report = fn()
    except Deadline:
        print(f"{label:6} {rows:>7} rows: over the {deadline} s deadline, stopped")
        return None
    finally:
        signal.alarm(0)
    elapsed = time.perf_counter() - start
    rate = report.read / elapsed
    print(
        f"{label:6} {report.read:>7} rows in {elapsed:7.2f} s = {rate:8.1f} rows/s  "
        f"(imported {report.imported}, new {report.created}, enrolled {report.enrolled}, "
        f"rejected {len(report.rejects)})"
    )
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--old-rows", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--deadline", type=int, default=120, help="seconds per phase")
    args = parser.parse_args()
    admin_url = os.environ.get(
        "BENCH_POSTGRES_URL",
        os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    run = f"drip_bench_imports_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="drip-bench-imports-"))
    admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    databases: list[str] = []
    registry = Registry(FIXTURES / "definitions", FIXTURES / "templates")
    policy = Policy()

    def fresh(phase: str):
        name = f"{run}_{phase}"
        admin.execute(f'CREATE DATABASE "{name}"')
        databases.append(name)
        url = "postgresql+psycopg://" + f"{admin_url.rsplit('/', 1)[0]}/{name}".split("://")[1]
        upgrade(url)
        return make_session_factory(make_engine(url))

    def importer(factory, path, **kw):
        return lambda: import_file(
            factory, FixedClock(T0), registry, policy, path, campaign_key="tiny", **kw
        )

    try:
        big, small = tmp / "people.csv", tmp / "sample.csv"
        generate(big, args.rows)
        with big.open() as src, small.open("w") as dst:
            for _, line in zip(range(args.old_rows + 1), src, strict=False):
                dst.write(line)
        size = big.stat().st_size / 1e6
        print(f"{args.rows} rows ({size:.1f} MB), batches of {args.batch_size}, PostgreSQL")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        new_db = fresh("new")
        new = timed(
            "new", args.rows, args.deadline, importer(new_db, big, batch_size=args.batch_size)
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        timed("again", args.rows, args.deadline, importer(new_db, big))
        old = timed("old", args.old_rows, args.deadline, importer(fresh("old"), small, bulk=False))
        print(f"peak RSS {rss:.0f} MiB before the import, {peak:.0f} MiB after it")
        if new and old:
            print(f"new / old = {new / old:.1f}x")
        return 0 if new and args.rows / new < 30 else 1
    finally:
        for name in databases:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
