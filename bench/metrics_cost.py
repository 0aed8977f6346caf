"""What instrumentation costs: one counter increment, one histogram observation and one
send batch's bookkeeping (`record_batch`), in-process and in multiprocess mode, beside an
empty function call.

    .venv/bin/python bench/metrics_cost.py [--n 200000]

Each mode runs in a fresh interpreter of its own, since prometheus_client chooses its
mode when it is imported (PROMETHEUS_MULTIPROC_DIR set or not); the multiprocess run
writes to a temporary directory removed afterwards. Printed: nanoseconds per operation,
each as a ratio of the empty call, and the multiprocess/in-process ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
from campaigns.delivery.outcomes import BatchReport
from workers import metrics

n = int(sys.argv[1])

def empty():
    pass

def best(fn, rounds=5):
    times = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / n)
    return min(times)

def loop_empty():
    for _ in range(n):
        empty()

child = metrics.SEND_OUTCOMES.labels("sms", "sent")
def loop_inc():
    for _ in range(n):
        child.inc()

def loop_labels_inc():
    for _ in range(n):
        metrics.SEND_OUTCOMES.labels("sms", "sent").inc()

def loop_call():
    for _ in range(n):
        metrics.record_provider_call("sms", "twilio", "accepted", 201, 0.05)

report = BatchReport(sent=95, retry=3, failed=2, sent_delays=[1.5] * 95)
def loop_batch():
    for _ in range(n // 100):
        metrics.record_batch("sms", report)

print(json.dumps({
    "empty call": best(loop_empty),
    "counter inc (child kept)": best(loop_inc),
    "counter labels().inc()": best(loop_labels_inc),
    "provider call (counter + histogram)": best(loop_call),
    "record_batch, 100 messages (per batch)": best(loop_batch) * 100,
}))
"""


def run(n: int, multiproc_dir: str | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    if multiproc_dir:
        env["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="drip-bench-metrics-")
    try:
        single = run(args.n, None)
        multi = run(args.n, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base_single, base_multi = single["empty call"], multi["empty call"]
    print(f"{'operation':42} {'in-process':>12} {'multiprocess':>13} {'multi/in':>9}")
    for name in single:
        s, m = single[name], multi[name]
        print(
            f"{name:42} {s:9.0f} ns {m:10.0f} ns {m / s:8.2f}x"
            + (
                f"   ({s / base_single:.0f}x / {m / base_multi:.0f}x an empty call)"
                if name != "empty call"
                else ""
            )
        )


if __name__ == "__main__":
    main()
