"""The yardstick for bench/throughput.py: the drip's own Celery app (same broker, acks,
prefetch and serializer settings from workers.app.make_app) plus one task that does
nothing. Run by a worker the bench starts with `celery -A bench.noop_app worker`; it
lives here, not in workers/, because production never needs it."""

from __future__ import annotations

from workers.app import make_app

app = make_app()


@app.task(name="bench.noop")
def noop() -> None:
    return None
