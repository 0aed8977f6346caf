"""The pages a click storm hits, under load, beside a bare FastAPI endpoint, in one run.

    .venv/bin/python bench/web_load.py [--workers 2] [--people 5000] [--seconds 10]
                                       [--connections 50] [--no-redis] [--profile]

Starts, on loopback: a bare FastAPI app answering the same GIF (bench/bare_gif.py) and
`drip web --workers N`, both under uvicorn with N processes, against a PostgreSQL database
of its own (created, migrated, dropped) and Redis under a prefix of its own, with a Celery
worker and beat recording the queued opens and clicks as they come (workers/hit_queue.py).
Real data: `--people` people with an email address enrolled in the shipped course
(hip_and_back), each sent its first lesson; every request names one of their messages
(each connection walks the list from a random place), as a storm after a send would.

Each target is driven by wrk (Debian's `wrk`) at `--connections` connections for
`--seconds`, after a 2 s warm-up, with a browser's user agent: bare GIF, open pixel,
click redirect (/l/), lesson read online (/m/). Printed: req/s, p50/p99, errors
(non-2xx/3xx answers and socket errors) and the ratio to the bare GIF; then whether every
answered open and click reached the events table once the queue drained.

Goal: pixel >= 40% of bare, lesson >= 20%, p99 < 100 ms at 50 connections, no
error. `--no-redis` runs `drip web` without REDIS_URL (every hit recorded in the request).
`--profile` instead profiles 300 requests of each page in this process (cProfile, top 25).
Needs PostgreSQL (BENCH_POSTGRES_URL or TEST_POSTGRES_URL, an admin URL) and Redis
(BENCH_REDIS_URL or TEST_REDIS_URL); defaults are the test defaults on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg
import redis
from sqlalchemy import func, select, update

from campaigns.audience.subscribers import upsert_subscriber
from campaigns.clock import FixedClock
from campaigns.db import transaction
from campaigns.delivery.claiming import claim_due
from campaigns.delivery.enrollment import enroll
from campaigns.links import links_for
from campaigns.migrate import upgrade
from campaigns.models import Event, Message, Subscriber
from campaigns.states import MessageStatus
from campaigns.tracking import portal, redirects
from settings import load_settings
from workers.runtime import build_runtime

PG_ADMIN = os.environ.get(
    "BENCH_POSTGRES_URL",
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
REDIS_URL = os.environ.get(
    "BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
)
CAMPAIGN = "hip_and_back"
# Monday 2 March 2026, 15:00 UTC: inside the course's send window in New York.
SENT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
# Each wrk connection walks the list of paths from a random place.
LUA = """
local paths = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(#paths)
end
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="drip-web-bench-"))
        self.db = f"drip_bench_web_{os.getpid()}"
        self.prefix = f"drip-bench-web-{uuid.uuid4().hex[:8]}:"
        self.procs: list[subprocess.Popen] = []
        self.servers: dict[str, subprocess.Popen] = {}  # "bare", "web", "worker"
        self.admin = psycopg.connect(PG_ADMIN, autocommit=True)
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        self.admin.execute(f'CREATE DATABASE "{self.db}"')
        base = PG_ADMIN.rsplit("/", 1)[0].split("://", 1)[1]
        self.url = f"postgresql+psycopg://{base}/{self.db}"
        upgrade(self.url)
        self.web_port, self.bare_port = free_port(), free_port()
        # The shipped course, its first lesson with one link to another site (the shipped
        # copy has none, and the click redirect needs one); review is not asked for.
        self.definitions = self.tmp / "definitions"
        self.templates = self.tmp / "templates"
        shutil.copytree(ROOT / "campaigns" / "definitions", self.definitions)
        shutil.copytree(ROOT / "templates", self.templates)
        first = self.templates / CAMPAIGN / "en" / "welcome"
        with open(f"{first}.html", "a") as f:
            f.write('<p><a href="https://example.org/hip-and-back">More to read</a></p>\n')
        with open(f"{first}.txt", "a") as f:
            f.write("More to read: https://example.org/hip-and-back\n")

    def env(self, redis_on: bool = True) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
        env.update(
            ENVIRONMENT="development",
            SECRET_KEY="bench-secret-key-0123456789abcdef-web-load",
            DATABASE_URL=self.url,
            PUBLIC_BASE_URL=f"http://127.0.0.1:{self.web_port}",
            BROKER_DIR=str(self.tmp / "broker"),
            OUTBOX_DIR=str(self.tmp / "outbox"),
            SEQUENCES_SOURCE="database",
            DEFINITIONS_DIR=str(self.definitions),
            TEMPLATES_DIR=str(self.templates),
            PUBLISH_REQUIRES_REVIEW="false",
            PYTHONPATH=str(ROOT),
        )
        if redis_on:
            env.update(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=self.prefix)
        return env

    def settings(self):
        env = self.env(not self.args.no_redis)
        return load_settings(
            **{
                k.lower(): v
                for k, v in env.items()
                if k
                in (
                    "ENVIRONMENT",
                    "SECRET_KEY",
                    "DATABASE_URL",
                    "PUBLIC_BASE_URL",
                    "REDIS_URL",
                    "REDIS_KEY_PREFIX",
                    "SEQUENCES_SOURCE",
                    "BROKER_DIR",
                    "OUTBOX_DIR",
                    "DEFINITIONS_DIR",
                    "TEMPLATES_DIR",
                    "PUBLISH_REQUIRES_REVIEW",
                )
            }
        )

    def make_data(self) -> dict[str, list[str]]:
        """People enrolled and sent their first lesson; {page: paths, one per message}."""
        settings = self.settings()
        clock = FixedClock(SENT)
        rt = build_runtime(settings, clock=clock)
        rt.seed_sequences()
        n = self.args.people
        with transaction(rt.factory) as s:
            for i in range(n):
                sub = upsert_subscriber(
                    s,
                    clock,
                    email=f"person{i}@bench.example",
                    first_name=f"Person{i}",
                    timezone="America/New_York",
                    consent=("email",),
                )
                enroll(s, clock, rt.registry, sub, CAMPAIGN, rt.policy)
        with transaction(rt.factory) as s:
            ids = claim_due(s, clock, rt.registry, rt.policy, limit=n).email
            # As the send path leaves them, a day ago: no open is "seconds after sending".
            s.execute(
                update(Message)
                .where(Message.id.in_(ids))
                .values(status=MessageStatus.SENT, sent_at=SENT - timedelta(days=1))
            )
        with rt.factory() as s:
            messages = s.scalars(select(Message).where(Message.id.in_(ids))).all()
            first = portal.Visit(messages[0], s.get(Subscriber, messages[0].subscriber_id))
            targets = redirects.link_targets(
                rt.registry, rt.renderer, rt.signer, settings.public_base_url, first
            )
            tokens = [m.public_token for m in messages]
        rt.dispose()
        if not targets:
            raise SystemExit(f"{CAMPAIGN}'s first lesson links to no page: nothing to click")
        link_id = sorted(targets)[0]
        paths: dict[str, list[str]] = {"open": [], "click": [], "lesson": []}
        cut = len(settings.public_base_url)
        for token in tokens:
            links = links_for(settings.public_base_url, rt.signer, token)
            paths["open"].append(links.open[cut:])
            paths["click"].append(f"{links.redirect[cut:]}/{link_id}")
            paths["lesson"].append(links.read_online[cut:])
        paths["bare"] = list(paths["open"])  # the bare app answers the same paths
        for kind in paths:
            random.shuffle(paths[kind])
        print(f"data: {n} people, {len(tokens)} messages sent ({CAMPAIGN}, first lesson)")
        return paths

    # ------------------------------------------------------------ processes
    def start(self, args: list[str], name: str, env: dict) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
        )
        self.procs.append(proc)
        self.servers[name] = proc
        return proc

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each started process and its children."""
        return {name: tree_cpu(proc.pid) for name, proc in self.servers.items()}

    def start_all(self) -> None:
        w = str(self.args.workers)
        py = sys.executable
        env = self.env(not self.args.no_redis)
        self.start(
            [py, "-m", "uvicorn", "bench.bare_gif:app", "--port", str(self.bare_port),
             "--workers", w, "--no-server-header", "--log-level", "warning",
             "--http", "web.server_protocol:NoDelayHTTPProtocol"],
            "bare",
            env,
        )  # fmt: skip
        self.start(
            [py, "-m", "workers.cli", "web", "--port", str(self.web_port), "--workers", w],
            "web",
            {**env, "UVICORN_LOG_LEVEL": "warning"},
        )
        if not self.args.no_redis:
            self.start(
                [py, "-m", "celery", "-A", "workers.app", "worker", "-B", "-Q", "events",
                 "-c", "1", "-s", str(self.tmp / "beat"), "--without-mingle",
                 "--without-gossip", "-l", "warning"],
                "worker",
                {**env, "HIT_DRAIN_SECONDS": "0.5"},
            )  # fmt: skip
        for port, path in ((self.bare_port, "/o/x"), (self.web_port, "/healthz")):
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"port {port} did not answer:\n{self.logs()}") from None
                    time.sleep(0.3)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.tmp.glob("*.log"))

    def close(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(f"{self.prefix}*"))
        if keys:
            r.delete(*keys)
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        self.admin.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------ load
    def wrk(self, port: int, paths: list[str], seconds: float) -> dict:
        listing = self.tmp / f"paths-{port}-{len(paths)}.txt"
        listing.write_text("\n".join(paths) + "\n")
        script = self.tmp / "walk.lua"
        script.write_text(LUA)
        out = subprocess.run(
            ["wrk", "-t2", f"-c{self.args.connections}", f"-d{round(seconds)}s", "--latency",
             "--timeout", "5s", "-H", f"User-Agent: {AGENT}", "-s", str(script),
             f"http://127.0.0.1:{port}", "--", str(listing)],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout  # fmt: skip
        try:
            result = parse_wrk(out)
        except AttributeError:
            raise SystemExit(f"cannot read wrk's output:\n{out}") from None
        if not result["total"]:
            print(f"wrk made no request:\n{out}")
        return result


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()
    return float(number) * UNITS[unit]


def tree_cpu(root: int) -> float:
    """User + system CPU seconds of a process and every live descendant (Linux /proc):
    what a page cost the server, whatever else the machine was doing meanwhile."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, used = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += used.get(pid, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


def parse_wrk(out: str) -> dict:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"rate": rate, "total": total, "p50": p50, "p99": p99, "errors": errors}


def profile(bench: Bench, paths: dict[str, list[str]]) -> None:
    """cProfile of the work behind each page, in this process, on messages not looked at
    before (the per-process caches start cold for each): the token check and the queue
    push of the pixel, the redirect's look-up, the lesson's look-up and rendering."""
    import cProfile
    import pstats

    from web import hits
    from web.app import create_app
    from workers.hit_queue import build_hit_queue

    state = create_app(bench.settings()).state
    queue = build_hit_queue(state.settings)

    def token(path: str) -> str:
        return path.split("/")[2]

    pages = {
        "open": lambda p: queue.redis.rpush("profile", hits.signed(state, "o", token(p))),
        "click": lambda p: hits.targets_of(
            state, hits.look_up(state, hits.signed(state, "l", token(p)))
        ),
        "lesson": lambda p: hits.lesson_page(
            state, hits.look_up(state, hits.signed(state, "m", token(p)))
        ),
    }
    for kind, work in pages.items():
        for p in paths[kind][:20]:
            work(p)
        prof = cProfile.Profile()
        prof.enable()
        for p in paths[kind][20:320]:
            work(p)
        prof.disable()
        print(f"\n==== {kind}: 300 messages")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    queue.redis.delete("profile")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--hold", type=float, default=0, help="keep the stack up this long")
    args = ap.parse_args()
    if not args.profile and shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    bench = Bench(args)
    try:
        paths = bench.make_data()
        if args.profile:
            profile(bench, paths)
            return 0
        bench.start_all()
        if args.hold:
            hold(bench, paths)
            return 0
        mode = "without Redis (recorded in the request)" if args.no_redis else "Redis queue"
        print(
            f"uvicorn --workers {args.workers} for both apps; drip web: {mode}; wrk -t2 "
            f"-c{args.connections}, {args.seconds:g} s per page after a 2 s warm-up; "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
        )
        results, answered = {}, 0
        for kind, port in (
            ("bare", bench.bare_port),
            ("open", bench.web_port),
            ("click", bench.web_port),
            ("lesson", bench.web_port),
        ):
            warm = bench.wrk(port, paths[kind], 2)
            before = bench.cpu()
            results[kind] = bench.wrk(port, paths[kind], args.seconds)
            after = bench.cpu()
            served = max(results[kind]["total"], 1)
            server = "bare" if kind == "bare" else "web"
            results[kind]["cpu_ms"] = (after[server] - before[server]) * 1000 / served
            results[kind]["drainer"] = after.get("worker", 0) - before.get("worker", 0)
            if kind != "bare":
                answered += sum(r["total"] - r["errors"] for r in (warm, results[kind]))
        recorded = _drained(bench)
        report(results, recorded, answered, args.connections)
        return 0
    finally:
        bench.close()


def hold(bench: Bench, paths: dict[str, list[str]]) -> None:
    """The stack kept up for a look from outside (py-spy, wrk by hand): its ports and a
    file of paths per page, until --hold seconds pass, Ctrl-C or SIGTERM."""
    for kind, listing in paths.items():
        (bench.tmp / f"{kind}.txt").write_text("\n".join(listing) + "\n")
    (bench.tmp / "walk.lua").write_text(LUA)
    print(f"web http://127.0.0.1:{bench.web_port}  bare http://127.0.0.1:{bench.bare_port}")
    print(f"paths and wrk script in {bench.tmp} (open.txt, click.txt, lesson.txt, walk.lua)")

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # killed, it still stops what it started
    with contextlib.suppress(KeyboardInterrupt):
        time.sleep(bench.args.hold)


def _drained(bench: Bench, timeout: float = 120.0) -> int:
    """Events in the table once nothing is left in the queue."""
    from campaigns.db import make_engine

    r = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while time.monotonic() < deadline and not bench.args.no_redis:
        if not r.llen(f"{bench.prefix}hits") and not r.llen(f"{bench.prefix}hits:processing"):
            break
        time.sleep(0.5)
    print(f"queue drained {time.monotonic() - started:.0f} s after the last request")
    left = r.llen(f"{bench.prefix}hits") + r.llen(f"{bench.prefix}hits:processing")
    if left:
        print(f"{left} hit(s) still queued after {timeout:.0f} s")
    engine = make_engine(bench.url)
    with engine.connect() as conn:
        n = conn.scalar(select(func.count()).select_from(Event))
    engine.dispose()
    # Repeats of one open or click within seconds are answered and not queued (counted).
    repeats = int(r.get(f"{bench.prefix}hits:repeats") or 0)
    if repeats:
        print(f"repeats answered and not queued: {repeats}; counted below with the events")
    return n + repeats


def report(results: dict, recorded: int, answered: int, connections: int) -> None:
    bare = results["bare"]["rate"]
    names = {
        "bare": "bare GIF (FastAPI)",
        "open": "open pixel /o/",
        "click": "click redirect /l/",
        "lesson": "lesson page /m/",
    }
    cpu = results["bare"]["cpu_ms"]
    print(
        f"{'page':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'vs bare':>9}"
        f"{'CPU ms/req':>12}{'bare/this':>10}{'drainer s':>10}"
    )
    for kind, r in results.items():
        print(
            f"{names[kind]:<22}{r['rate']:>9.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}"
            f"{r['errors']:>8}{r['rate'] / bare:>8.0%}{r['cpu_ms']:>12.3f}"
            f"{cpu / r['cpu_ms'] if r['cpu_ms'] else 0:>9.0%}{r['drainer']:>10.1f}"
        )
    print(
        "CPU ms/req: CPU time of the server's processes over its requests (the same "
        "whatever else ran); bare/this: the bare GIF's CPU per request over this page's; "
        "drainer s: CPU seconds the Celery worker recording the queue used meanwhile"
    )
    # Warm-ups included: every open and click answered is one event. wrk does not count
    # the requests still in flight when a run stops (up to one per connection), which the
    # server answered and recorded all the same: six runs of 50 connections.
    slack = 6 * connections
    fits = answered <= recorded <= answered + slack
    print(
        f"opens and clicks wrk saw answered (warm-ups included): {answered}; events in the "
        f"table after the drain: {recorded} (wrk leaves up to {slack} uncounted in flight): "
        + ("consistent" if fits else "MISMATCH")
    )
    ok = (
        results["open"]["rate"] >= 0.4 * bare
        and results["lesson"]["rate"] >= 0.2 * bare
        and all(r["p99"] < 100 for r in results.values())
        and not any(r["errors"] for r in results.values())
    )
    print(
        "goal: pixel >= 40% of bare, lesson >= 20%, p99 < 100 ms, no error: "
        + ("met" if ok else "NOT met")
    )


if __name__ == "__main__":
    sys.exit(main())
