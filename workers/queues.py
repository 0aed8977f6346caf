"""Queue depths from the broker, whichever transport is in use."""

from __future__ import annotations

from workers.app import QUEUES, make_app


def queue_depths(settings) -> dict[str, int | str]:
    app = make_app(settings)
    depths: dict[str, int | str] = {}
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            channel = conn.default_channel
            for name in QUEUES:
                try:
                    depths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except Exception:  # a queue never used yet does not exist
                    depths[name] = 0
    except Exception as exc:  # status must still print when the broker is down
        return {name: f"unavailable ({type(exc).__name__})" for name in QUEUES}
    return depths
