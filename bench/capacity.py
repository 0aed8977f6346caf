"""Capacity: messages per second per worker layout, the rate limiter holding a provider's
limit, the tick's claim rate, and what they mean for a number of subscribers.

    .venv/bin/python bench/capacity.py   # --layouts 1x1,1x2,2x2,2x2s --emails 4000 --texts 2000
                                         # --limited-sms 40 --tick-size 100000
                                         # --subscribers 100000 --window-hours 12

Layouts: "WxC" is W worker processes of `-c C`, every queue, the first with beat; a
trailing "s" splits the queues: one more process (`-c 1`, with beat) takes schedule and
events, the W take email and sms. Each layout drains `--emails` emails, then `--texts`
texts, with the rate limits off, through bench/throughput.py's machinery (real
PostgreSQL, Redis and Celery workers; the official SDKs against the fakes of tests/fakes;
a fresh database and Redis prefix per phase). Then texts with `SMS_RATE_PER_SECOND` set
to `--limited-sms` (burst a quarter of it) on the largest layout: the limit, shared
through Redis by every process, is what they get. Then bench/scale.py times the tick that
claims 1,000 due people among `--tick-size` enrolled. Last, the figures are turned into
what a day of `--subscribers` people needs (one lesson each a day, by email and by text,
in a `--window-hours` window), against the providers' limits.

PostgreSQL and Redis as for bench/throughput.py (BENCH_/TEST_POSTGRES_URL, BENCH_/TEST_REDIS_URL).
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throughput import Bench
from campaigns.delivery.scheduler import tick
from settings import Settings

# Providers' limits a deployment meets (per sender, or per account), in messages a second.
# Twilio: one 10-digit long code 1 (US A2P 10DLC: set per campaign by the carriers),
# toll-free 3 by default (25 to 150 with high throughput), a short code 30 and more.
# SendGrid publishes no per-second limit for mail/send (the plan caps the daily volume;
# 1,000 recipients a request): EMAIL_RATE_PER_SECOND is our own pace, shipped at 50.
SMS_SENDERS = {"long code": 1.0, "toll-free": 3.0, "toll-free high": 25.0, "short code": 30.0}
EMAIL_PACES = {"shipped 50/s": 50.0, "200/s": 200.0}


# The shipped tick: TICK_SECONDS apart, up to max_batches of CLAIM_BATCH_SIZE each.
TICK = Settings.model_fields["tick_seconds"].default
CLAIM_BATCH = Settings.model_fields["claim_batch_size"].default
MAX_BATCHES = inspect.signature(tick).parameters["max_batches"].default


def layout(spec: str) -> tuple[int, int, bool]:
    match = re.fullmatch(r"(\d+)x(\d+)(s?)", spec)
    if not match:
        raise SystemExit(f"bad layout {spec!r}: expected WxC or WxCs, e.g. 2x2s")
    return int(match[1]), int(match[2]), bool(match[3])


def tick_claims(size: int) -> tuple[float, float]:
    """(median tick in s, people claimed a tick) from bench/scale.py."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--sizes", str(size), "--ticks", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    median = re.search(r"enrolled: median\s+([\d.]+) ms", out.stdout)
    claimed = re.search(r"claimed per tick \(median\) (\d+)", out.stdout)
    # Its exit status also reports its own goal and its plan check (a small table may
    # rightly be read whole): only missing figures are a failure here.
    if not (median and claimed):
        raise SystemExit(f"bench/scale.py failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return float(median[1]) / 1000, float(claimed[1])


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", default="1x1,1x2,2x2,2x2s")
    parser.add_argument("--emails", type=int, default=4000)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--email-batch", type=int, default=500, help="EMAIL_BATCH_SIZE")
    parser.add_argument("--sms-batch", type=int, default=250, help="SMS_BATCH_SIZE")
    parser.add_argument("--limited-sms", type=float, default=40.0, help="0: skip")
    parser.add_argument("--tick-size", type=int, default=100_000, help="0: skip")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--window-hours", type=float, default=12.0)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds per phase")
    a = parser.parse_args()
    # A plain `kill` unwinds like Ctrl-C: the bench's workers, databases and keys go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    layouts = [(spec, *layout(spec)) for spec in a.layouts.split(",")]
    admin = os.environ.get(
        "BENCH_POSTGRES_URL",
        os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    redis_url = os.environ.get(
        "BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    load_before = os.getloadavg()[0]
    rows = []
    with Bench(admin, redis_url, 2, a.email_batch, a.deadline, a.sms_batch) as bench:
        for spec, workers, concurrency, split in layouts:
            bench.concurrency = concurrency
            email = bench.drip_rate("email", a.emails, workers, split)
            sms = bench.drip_rate("sms", a.texts, workers, split)
            rows.append((spec, workers, concurrency, split, email, sms))
            print(
                f"layout {spec:5s} email {email['rate']:7.1f}/s  texts {sms['rate']:7.1f}/s",
                flush=True,
            )
        limited = None
        if a.limited_sms:
            spec, workers, concurrency, split = layouts[-1]
            bench.concurrency = concurrency
            n = int(a.limited_sms * 20) // 2 * 2  # about 20 s at the limit
            limited = bench.drip_rate(
                "sms",
                n,
                workers,
                split,
                SMS_RATE_PER_SECOND=a.limited_sms,
                SMS_RATE_BURST=max(1, int(a.limited_sms / 4)),
                SMS_BATCH_SIZE=max(1, int(a.limited_sms)),
            )
    timed = tick_claims(a.tick_size) if a.tick_size else None
    load_after = os.getloadavg()[0]

    print(
        f"\nmachine: {os.cpu_count()} cores, load average {load_before:.1f} before and "
        f"{load_after:.1f} after (shared); EMAIL_BATCH_SIZE={a.email_batch}, "
        f"SMS_BATCH_SIZE={a.sms_batch}, rate limits off, worker_prefetch_multiplier=1"
    )
    print("layout  processes (queues)                          email msgs/s   texts msgs/s")
    for spec, workers, concurrency, split, email, sms in rows:
        procs = (
            f"1 x -c 1 (schedule,events) + {workers} x -c {concurrency} (email,sms)"
            if split
            else f"{workers} x -c {concurrency} (all queues)"
        )
        print(f"{spec:6s}  {procs:44s} {email['rate']:10.1f}   {sms['rate']:12.1f}")
    if limited:
        print(
            f"texts with SMS_RATE_PER_SECOND={a.limited_sms:g} on layout {layouts[-1][0]}: "
            f"{limited['count']} in {limited['seconds']:.1f} s = {limited['rate']:.1f}/s "
            f"({limited['rate'] / a.limited_sms:.2f}x the limit)"
        )
    best_email = max(r[4]["rate"] for r in rows)
    best_sms = max(r[5]["rate"] for r in rows)
    one_email = min((r[4]["rate"] for r in rows if (r[1], r[3]) == (1, False)), default=0)
    one_sms = min((r[5]["rate"] for r in rows if (r[1], r[3]) == (1, False)), default=0)
    claim_rate = None
    if timed:
        claim_rate = timed[1] / timed[0]
        print(
            f"tick among {a.tick_size:,} enrolled: {timed[0] * 1000:.0f} ms for {timed[1]:.0f} "
            f"claimed = {claim_rate:.0f} claims/s (one beat: the tick does not scale out)"
        )

    s, window = a.subscribers, a.window_hours * 3600
    print(
        f"\n{s:,} subscribers, one lesson a day each by email and by text, sent in a "
        f"{a.window_hours:g} h window: at least {s / window:.1f} msgs/s per channel on "
        f"average; everyone due at the window's start is the peak"
    )
    if claim_rate:
        # A tick claims at most MAX_BATCHES batches; beat starts one every TICK_SECONDS.
        per_tick = MAX_BATCHES * CLAIM_BATCH
        ticks = math.ceil(s / per_tick)
        print(
            f"  claiming {s:,} due at once: {ticks} ticks of up to {per_tick:,} "
            f"({per_tick / claim_rate:.1f} s each), one every {TICK:g} s: about "
            f"{ticks * max(TICK, per_tick / claim_rate):.0f} s"
        )
    print(
        f"  the pipeline, limits off: email {s / best_email:.0f} s at {best_email:.0f}/s, "
        f"texts {s / best_sms:.0f} s at {best_sms:.0f}/s (best layout)"
    )
    for name, pace in EMAIL_PACES.items():
        need = math.ceil(pace / one_email) if one_email else "?"
        print(
            f"  email at {name}: {hours(s / pace)} for everyone; bottleneck: the pace; "
            f"worker processes needed for the pace: {need}"
        )
    for name, limit in SMS_SENDERS.items():
        drain = s / limit
        fits = "fits" if drain <= window else "does NOT fit"
        need = math.ceil(limit / one_sms) if one_sms else "?"
        print(
            f"  texts from one {name} ({limit:g}/s): {hours(drain)}, {fits} the window; "
            f"bottleneck: the sender; worker processes needed: {need}"
        )
    print(f"  texts: to fit the window a sender needs at least {s / window:.1f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
