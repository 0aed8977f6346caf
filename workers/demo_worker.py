"""The demo's Celery worker: the shipped app (workers.app) with its embedded broker polled
every 50 ms instead of every second, and written safely for that pace.

`drip demo` moves its virtual clock to the next due moment as soon as the engine is idle;
with kombu's default one-second poll, each of the course's moments would wait up to a
second for its tick and again for its sends. Polling that often makes a consumer likely
to catch a message file kombu has created but not yet written, so the demo's processes
publish through workers/filesystem_broker.py, which writes each message whole before
it appears. Run only by `drip demo` (`celery -A workers.demo_worker worker ...`).
"""

from __future__ import annotations

from workers.app import app
from workers.filesystem_broker import register

if not app.conf.broker_url.startswith("redis"):
    app.conf.broker_url = register()
app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "polling_interval": 0.05,
}
