"""Queue depths on Redis under a key prefix, as `drip status` and /metrics read them."""

from __future__ import annotations

import uuid

import redis

from settings import load_settings
from workers.app import make_app
from workers.queues import queue_depths


def test_depths_count_the_tasks_waiting_under_the_key_prefix(redis_url, tmp_path):
    prefix = f"drip-test-depth-{uuid.uuid4().hex[:8]}:"
    settings = load_settings(
        redis_url=redis_url,
        redis_key_prefix=prefix,
        database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}",
    )
    app = make_app(settings)
    try:
        assert queue_depths(settings) == {"schedule": 0, "email": 0, "sms": 0, "events": 0}
        for _ in range(3):
            app.send_task("drip.send_email", args=[[1]])
        app.send_task("drip.send_sms", args=[[2]], priority=6)
        app.send_task("drip.tick")
        assert queue_depths(settings) == {"schedule": 1, "email": 3, "sms": 1, "events": 0}
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_depths_say_the_broker_is_unavailable_rather_than_raise(tmp_path):
    settings = load_settings(
        redis_url="redis://127.0.0.1:1/0", database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}"
    )
    depths = queue_depths(settings)
    assert set(depths) == {"schedule", "email", "sms", "events"}
    assert all(str(v).startswith("unavailable (") for v in depths.values()), depths
