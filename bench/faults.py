"""Fault run: what the engine does to people when its parts fail, on the real stack.

    .venv/bin/python bench/faults.py            # every scenario, shipped timing (~45 min)
    .venv/bin/python bench/faults.py --short    # small and fast (~3 min), for CI
    .venv/bin/python bench/faults.py --only kill,redis --people 3000

Each scenario enrolls people across time zones and channels (email only, text only,
both) in a fresh PostgreSQL database, starts the deployment's own processes (`drip beat`,
two `drip worker -c 2`, `drip web`) on a Redis server of the bench's own, with the
official SendGrid and Twilio SDKs talking to the fakes from tests/fakes, applies one
fault, waits until nothing is due any more, and prints what reached the providers
(bench/fault_figures.py says how each figure is counted):

    baseline   no fault: the same load, for comparison
    kill       SIGKILL both workers (every process) while a provider call is in flight;
               start them again a second later
    redis      stop Redis (no persistence: every queued task is lost) for 5 s, start it
    postgres   cut every database connection of the stack and refuse new ones for 10 s
               (a TCP proxy in front of PostgreSQL, tests/faultproxy.py)
    provider   for 40 s a fifth of SendGrid's and Twilio's answers are 429, 500 or no
               answer within the SDK timeout (the provider accepted the message)
    optout     people text STOP to the inbound webhook or press one-click unsubscribe
               (the List-Unsubscribe URL of a mail they got) while their next lessons
               are queued or being sent
    beats      a second `drip beat` runs beside the first for 40 s

Timing: the shipped settings (TICK_SECONDS 5, REAP_SECONDS 30, LEASE_SECONDS 300,
REQUEUE_AFTER_SECONDS 600, MAX_ATTEMPTS 6, RETRY_BASE_SECONDS 30, provider timeouts 10 s),
except the text rate: SMS_RATE_PER_SECOND=40 with a burst of 10 (the shipped 1/s suits
one long code; thousands of texts at 1/s would take an hour). The clock is not
compressed: TIME_SCALE=1, and only its epoch is moved, so that the run starts at 14:59
UTC on Wednesday 4 March 2026 plus a few seconds, and 21:00 in Dhaka and 08:00 in Denver
fall while texts are going out. Lessons are a minute apart. `--short` shortens what
would otherwise wait minutes (printed at the start), runs fewer people, and exits 1 if
any safety figure (duplicates, lost, sent to opted-out, texts outside hours) is not zero.

Needs PostgreSQL (BENCH_POSTGRES_URL or TEST_POSTGRES_URL, an admin URL that may create
databases) and `redis-server` on the PATH. The databases and processes are removed at
the end; logs stay in the folder printed at the start.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
from twilio.request_validator import RequestValidator

from bench.fault_figures import LESSON, Figures, OptOut, measure
from bench.fault_stack import (
    FROM_NUMBER,
    SID,
    TOKEN,
    Databases,
    Person,
    RedisServer,
    Stack,
    accepted,
    log,
    write_course,
)
from tests.fakes import Response, sendgrid_error, twilio_error

SCENARIOS = ("baseline", "kill", "redis", "postgres", "provider", "optout", "beats")
# 21:00 in Asia/Dhaka and 08:00 in America/Denver: texts must stop there and start here.
BOUNDARY = datetime(2026, 3, 4, 15, 0, tzinfo=UTC).timestamp()
ZONES = {  # zone: weight; at the boundary it is, locally:
    "America/New_York": 20,  # 10:00
    "America/Chicago": 10,  # 09:00
    "America/Denver": 10,  # 08:00: texts start
    "America/Los_Angeles": 5,  # 07:00: texts wait the whole run
    "Europe/London": 5,  # 15:00
    "Europe/Madrid": 10,  # 16:00
    "Asia/Kolkata": 10,  # 20:30
    "Asia/Dhaka": 25,  # 21:00: texts stop
    "Australia/Sydney": 5,  # 02:00: texts wait the whole run
}
SHIPPED = {  # settings.py defaults the fault run is about
    "TICK_SECONDS": "5",
    "REAP_SECONDS": "30",
    "LEASE_SECONDS": "300",
    "REQUEUE_AFTER_SECONDS": "600",
    "RETRY_BASE_SECONDS": "30",
    "RETRY_CAP_SECONDS": "3600",
    "MAX_ATTEMPTS": "6",
    "SENDGRID_TIMEOUT": "10",
    "TWILIO_TIMEOUT": "10",
}
TEXT_RATE = {"SMS_RATE_PER_SECOND": "40", "SMS_RATE_BURST": "10"}


@dataclass(frozen=True)
class Mode:
    name: str
    people: int
    delay: str  # between lessons
    boundary_after: float  # real seconds from the start of the processes to BOUNDARY
    env: dict[str, str]  # settings that differ from the shipped ones
    redis_down: float
    pg_cut: float
    provider_faults: float
    no_answer: float  # how long a "timeout" answer takes (beyond the SDK timeouts)
    rate_reset: float  # what a 429 asks us to wait
    two_beats: float
    optout_share: float
    settle_within: float  # after the fault ends, before the run counts what is left as lost
    skip: tuple[str, ...] = field(default=())


FULL = Mode(
    name="full",
    people=1500,
    delay="1m",
    boundary_after=20,
    env=TEXT_RATE,
    redis_down=5,
    pg_cut=10,
    provider_faults=40,
    no_answer=12,
    rate_reset=60,
    two_beats=40,
    optout_share=0.15,
    # The reaper requeues lost work after REQUEUE_AFTER_SECONDS, unconfirms expired
    # leases after LEASE_SECONDS, each on a REAP_SECONDS pass: all that, and three minutes.
    settle_within=600 + 300 + 4 * 30 + 180,
)
SHORT = Mode(
    name="short",
    people=150,
    delay="0m",
    boundary_after=10,
    env={
        **TEXT_RATE,
        "TICK_SECONDS": "1",
        "REAP_SECONDS": "1",
        "LEASE_SECONDS": "8",
        "REQUEUE_AFTER_SECONDS": "5",
        "RETRY_BASE_SECONDS": "1",
        "RETRY_CAP_SECONDS": "4",
        "SENDGRID_TIMEOUT": "2",
        "TWILIO_TIMEOUT": "2",
    },
    redis_down=3,
    pg_cut=4,
    provider_faults=6,
    no_answer=3,
    rate_reset=2,
    two_beats=8,
    optout_share=0.2,
    settle_within=45,
    skip=("baseline",),
)


def make_people(n: int, seed: int) -> list[Person]:
    rng = random.Random(seed)
    zones = rng.choices(list(ZONES), weights=list(ZONES.values()), k=n)
    people = []
    for i, zone in enumerate(zones):
        kind = rng.random()
        email = f"p{i}@example.com" if kind < 0.7 else None  # 40% email, 30% both
        phone = f"+1202{2000000 + i:07d}" if kind >= 0.4 else None  # 30% text only
        people.append(Person(i, zone, email, phone))
    return people


class Bench:
    def __init__(self, admin_url: str, mode: Mode, seed: int, keep_databases: bool = False):
        self.mode, self.seed, self.keep_databases = mode, seed, keep_databases
        self.run = f"drip_faults_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.tmp = Path(tempfile.mkdtemp(prefix="drip-faults-"))
        self.definitions, self.templates = write_course(self.tmp / "course", mode.delay)
        self.virtual_epoch = BOUNDARY - mode.boundary_after
        self.admin_url = admin_url

    def __enter__(self) -> Bench:
        self.databases = Databases(self.admin_url, self.run, keep=self.keep_databases)
        self.redis = RedisServer(self.tmp)
        self.redis.start()
        return self

    def __exit__(self, *exc) -> None:
        self.redis.stop()
        self.databases.close()


# ---------------------------------------------------------------- the scenarios


def wait_first_wave(st: Stack, people: list[Person], share: float, timeout=120) -> None:
    """Until this share of the first lessons has been accepted (sending is under way)."""
    wanted = share * sum(len(p.channels) for p in people)

    def enough() -> bool:
        texts = sum(1 for r in st.texts() if accepted(r))
        mails = sum(len(r.json["personalizations"]) for r in st.mails() if accepted(r))
        return texts + mails >= wanted

    st.wait_for(enough, timeout, step=0.1)


def baseline(st, people, mode):
    return st.real_epoch, st.real_epoch, "no fault"


def kill(st, people, mode):
    wait_first_wave(st, people, 0.2)
    # Hold the providers' answers a moment so that a call is certainly in flight.
    hold = Response(delay=1.5)
    st.sendgrid.sometimes(1.0, hold)
    st.twilio.sometimes(1.0, hold)
    seen = len(st.mails()), len(st.texts())
    st.wait_for(lambda: len(st.mails()) > seen[0] and len(st.texts()) > seen[1], 5)
    start = time.time()
    st.kill(*[n for n in list(st.procs) if n.startswith("worker")])
    st.sendgrid.sometimes(0)
    st.twilio.sometimes(0)
    time.sleep(1)
    end = time.time()
    st.start_worker(1, 2)
    st.start_worker(2, 2)
    return start, end, "SIGKILL both workers with calls in flight; restarted 1 s later"


def redis_restart(st, people, mode):
    wait_first_wave(st, people, 0.2)
    start = time.time()
    st.bench.redis.stop()
    time.sleep(mode.redis_down)
    st.bench.redis.start()
    return start, time.time(), f"Redis down {mode.redis_down:g} s, restarted empty"


def postgres_cut(st, people, mode):
    wait_first_wave(st, people, 0.2)
    start = time.time()
    st.proxy.cut(mode.pg_cut)
    st.proxy.wait_restored()
    return start, time.time(), f"every PostgreSQL connection cut, refused {mode.pg_cut:g} s"


def provider_errors(st, people, mode):
    wait_first_wave(st, people, 0.05)

    def sg_429():
        reset = str(int(time.time() + mode.rate_reset))
        return sendgrid_error(429, "too many requests", headers={"X-RateLimit-Reset": reset})

    no_answer = Response(delay=mode.no_answer)  # accepted, answered after the SDK gave up
    st.sendgrid.sometimes(0.2, sg_429, sendgrid_error(500, "internal error"), no_answer, seed=1)
    st.twilio.sometimes(
        0.2,
        twilio_error(429, 20429, "Too Many Requests", {"Retry-After": f"{mode.rate_reset:g}"}),
        twilio_error(500, 20500, "Internal Server Error"),
        no_answer,
        seed=2,
    )
    start = time.time()
    time.sleep(mode.provider_faults)
    st.sendgrid.sometimes(0)
    st.twilio.sometimes(0)
    return (
        start,
        time.time(),
        (
            f"1 in 5 provider answers 429, 500 or none within the timeout for "
            f"{mode.provider_faults:g} s"
        ),
    )


def two_beats(st, people, mode):
    start = time.time()
    st.start("beat2", ["beat"])
    time.sleep(mode.two_beats)
    st.kill("beat2")
    return start, time.time(), f"a second drip beat for {mode.two_beats:g} s"


def opt_outs(st, people, mode, plan_seed: int, record: list[OptOut]):
    """Half of the chosen people opt out as soon as their first lesson on that channel
    arrives, half once the second lessons have started going out on it, while theirs
    may be queued or in flight."""
    rng = random.Random(plan_seed)
    plan = []
    for channel in ("email", "sms"):
        reachable = [p for p in people if channel in p.channels]
        for n, p in enumerate(rng.sample(reachable, int(len(reachable) * mode.optout_share))):
            address = p.email if channel == "email" else p.phone
            plan.append((channel, address, "early" if n % 2 else "late"))
    client = httpx.Client(timeout=10)
    validator = RequestValidator(TOKEN)
    deadline = time.monotonic() + (180 if mode.name == "full" else 40)
    first = None
    while plan and time.monotonic() < deadline:
        if st.settled():
            break  # nothing more will come: the rest of the plan waits for text hours
        got: dict[tuple[str, str], set[int]] = {}
        unsubscribe: dict[str, str] = {}
        for r in st.texts():
            if accepted(r):
                got.setdefault(("sms", r.form["To"]), set()).add(_lesson(r.form.get("Body")))
        for r in st.mails():
            if accepted(r):
                for p in r.json["personalizations"]:
                    to = p["to"][0]["email"]
                    got.setdefault(("email", to), set()).add(_lesson(p.get("subject")))
                    unsubscribe[to] = p["headers"]["List-Unsubscribe"].strip("<>")
        second = {ch for (ch, _), lessons in got.items() if 2 in lessons}
        still = []
        for channel, address, when in plan:
            lessons = got.get((channel, address), set())
            due = 1 in lessons if when == "early" else (channel in second and 1 in lessons)
            if not due:
                still.append((channel, address, when))
                continue
            first = first or time.time()
            sent = time.time()
            if channel == "sms":
                url = st.public("/webhooks/twilio/inbound")
                form = {
                    "MessageSid": "SM" + uuid.uuid4().hex,
                    "AccountSid": SID,
                    "From": address,
                    "To": FROM_NUMBER,
                    "Body": "STOP",
                    "NumMedia": "0",
                }
                signature = validator.compute_signature(url, form)
                answer = client.post(url, data=form, headers={"X-Twilio-Signature": signature})
            else:
                answer = client.post(unsubscribe[address], data={"List-Unsubscribe": "One-Click"})
            record.append(OptOut(channel, address, sent, time.time(), answer.status_code))
        plan = still
        time.sleep(0.1)
    client.close()
    if plan:
        log(f"{len(plan)} planned opt-outs never came due (their lessons did not arrive)")
    end = record[-1].answered if record else time.time()
    return first or time.time(), end, f"{len(record)} STOPs and unsubscribes while sending"


def _lesson(text: str | None) -> int:
    m = LESSON.search(text or "")
    return int(m[1]) if m else 0


FAULTS = {
    "baseline": baseline,
    "kill": kill,
    "redis": redis_restart,
    "postgres": postgres_cut,
    "provider": provider_errors,
    "beats": two_beats,
}


def run_scenario(bench: Bench, name: str, people: list[Person]) -> Figures:
    mode = bench.mode
    began = time.time()
    figures = Figures(name)
    record: list[OptOut] = []
    with Stack(bench, name, mode.env, use_proxy=name == "postgres") as st:
        st.enroll(people, datetime.fromtimestamp(bench.virtual_epoch, UTC))
        log(f"{name}: {len(people)} people enrolled; starting beat, 2 workers, web")
        st.launch(workers=2, concurrency=2)
        log(f"{name}: running ({time.time() - st.real_epoch:.1f} s to start)")
        if name == "optout":
            start, end, what = opt_outs(st, people, mode, bench.seed, record)
        else:
            start, end, what = FAULTS[name](st, people, mode)
        figures.fault = what
        log(f"{name}: {what} (at {start - st.real_epoch:.1f}-{end - st.real_epoch:.1f} s)")
        figures.settled = st.settle(after=end, deadline=end + mode.settle_within)
        if not figures.settled:
            figures.notes.append(
                f"not settled {mode.settle_within:g} s after the fault: what is left counts as lost"
            )
        measure(st, figures, people, end, record, bench.virtual_epoch)
        figures.notes.append(
            f"fault from {start - st.real_epoch:.1f} s to {end - st.real_epoch:.1f} s"
        )
    figures.seconds = time.time() - began
    log(f"{name}: done in {figures.seconds:.0f} s")
    return figures


# ---------------------------------------------------------------- report


COLUMNS = (
    ("scenario", 9), ("msgs", 5), ("dup", 4), ("lost", 4), ("optd-out", 8), ("outside", 7),
    ("order", 5), ("unconf(never)", 13), ("resume", 6), ("recover", 7), ("txt/s", 5), ("run", 5),
)  # fmt: skip


def table(results: list[Figures]) -> str:
    def cell(v) -> str:
        return "-" if v is None else (f"{v:.0f}s" if isinstance(v, float) else str(v))

    lines = ["  ".join(f"{name:>{w}}" for name, w in COLUMNS)]
    for f in results:
        values = (
            f.scenario, f.messages, f.duplicates, f.lost, f.to_opted_out, f.outside_hours,
            f.out_of_order, f"{f.unconfirmed}({f.unconfirmed_never_sent})", f.resume, f.recover,
            f.peak_texts, f.seconds,
        )  # fmt: skip
        widths = (w for _, w in COLUMNS)
        lines.append("  ".join(f"{cell(v):>{w}}" for v, w in zip(values, widths, strict=True)))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="small and fast; exit 1 if unsafe")
    parser.add_argument("--only", help=f"comma-separated, from {','.join(SCENARIOS)}")
    parser.add_argument("--people", type=int, help="people per scenario")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs folder")
    parser.add_argument(
        "--keep-databases", action="store_true", help="keep each scenario's database, to look"
    )
    a = parser.parse_args()
    mode = SHORT if a.short else FULL
    if a.people:
        mode = replace(mode, people=a.people)
    names = a.only.split(",") if a.only else [s for s in SCENARIOS if s not in mode.skip]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if not shutil.which("redis-server"):
        parser.error("redis-server is not on the PATH")
    admin = os.environ.get(
        "BENCH_POSTGRES_URL",
        os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    people = make_people(mode.people, a.seed)
    changed = {k: v for k, v in mode.env.items() if SHIPPED.get(k) != v}
    print(
        f"fault run ({mode.name}): {len(people)} people a scenario, "
        f"{sum(len(p.channels) for p in people)} addresses, 3 lessons {mode.delay} apart; "
        "2 workers -c 2, 1 beat, 1 web; "
        f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print("settings not shipped: " + ", ".join(f"{k}={v}" for k, v in changed.items()), flush=True)
    began = time.time()
    results = []
    with Bench(admin, mode, a.seed, keep_databases=a.keep_databases) as bench:
        log(f"logs in {bench.tmp}")
        for name in names:
            try:
                results.append(run_scenario(bench, name, people))
            except Exception as exc:  # the other scenarios still run; this one is unsafe
                log(f"{name} failed:\n{traceback.format_exc()}")
                results.append(Figures(name, fault=f"failed: {exc!r}", error=repr(exc)))
    print(table(results))
    for f in results:
        states = ", ".join(f"{k} {v}" for k, v in sorted(f.statuses.items()))
        print(f"  {f.scenario}: {f.fault}; " + "; ".join(f.notes) + f"; outbox: {states}")
    unsafe = [f.scenario for f in results if not f.safe]
    print(
        f"total {time.time() - began:.0f} s; load {os.getloadavg()[0]:.2f}; "
        + (f"UNSAFE: {', '.join(unsafe)}" if unsafe else "every safety figure is zero")
    )
    if not a.keep_logs and not unsafe:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    return 1 if (a.short and unsafe) else 0


if __name__ == "__main__":
    sys.exit(main())
