"""The demo's Celery worker: the shipped app (workers.app) with its embedded broker polled
every 50 ms instead of every second.

`drip demo` moves its virtual clock to the next due moment as soon as the engine is idle;
with kombu's default one-second poll, each of the course's moments would wait up to a
second for its tick and again for its sends. Run only by `drip demo`
(`celery -A workers.demo_worker worker ...`); nothing else changes.
"""

from __future__ import annotations

from workers.app import app

app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "polling_interval": 0.05,
}
