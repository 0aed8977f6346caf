"""Invariant 1, read off the code: the broker only carries work that is due now.

Celery on Redis redelivers unacknowledged ETA messages after the visibility timeout, so a
drip scheduled with countdown=days would send its steps more than once. Nothing in the
project may schedule with countdown/eta; the database holds the schedule. (Celery's own
retry of a send task after a database hiccup waits `db_retry_delay`, capped in
workers/tasks.py, and is the one countdown allowed.)
"""

import ast

from settings import ROOT

SOURCES = [p for d in ("campaigns", "workers", "web") for p in (ROOT / d).rglob("*.py")]


def test_no_task_is_scheduled_for_later_on_the_broker():
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    short_retry = (
                        kw.arg == "countdown"
                        and isinstance(kw.value, ast.Call)
                        and getattr(kw.value.func, "id", None) == "db_retry_delay"
                    )
                    if kw.arg in ("countdown", "eta") and not short_retry:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {kw.arg}=")
    assert offenders == []


def test_database_retries_of_tasks_stay_short():
    from workers import tasks

    assert tasks.DB_RETRY_CAP <= 60
    waits = [tasks.db_retry_delay(n, rng=lambda: 0.0) for n in range(tasks.DB_RETRIES)]
    assert max(waits) <= tasks.DB_RETRY_CAP
    assert sum(waits) >= 60  # an outage of a minute is ridden out, whatever the jitter
    assert all(path.suffix == ".py" for path in SOURCES) and len(SOURCES) > 20


def test_visibility_timeout_far_above_any_lease():
    from settings import load_settings

    s = load_settings()
    assert s.lease_seconds * 2 <= s.broker_visibility_timeout
