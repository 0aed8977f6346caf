"""What the broker holds: queue depths for `drip status`, and the message ids inside the
send tasks for the reaper (campaigns.delivery.reaper.Held), whichever transport is in use.

Redis (kombu's layout, under REDIS_KEY_PREFIX): each queue is a list named after it, and
with acks_late every task a worker has taken and not finished sits in the `unacked` hash
until it is acknowledged (or, after `visibility_timeout`, restored to its queue). The
file-system transport keeps one file per waiting task and forgets a task once a worker
has it, so there only the waiting ones can be seen.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import redis

from campaigns.delivery.reaper import Held
from workers.app import QUEUES, make_app

log = logging.getLogger(__name__)

SEND_QUEUES = ("email", "sms")
SEND_TASKS = {"drip.send_email", "drip.send_sms"}


# kombu's Redis transport keeps a queue's messages of priority 3, 6 and 9 in lists of
# their own beside the plain one (kombu.transport.redis: PRIORITY_STEPS, sep "\x06\x16").
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_depths(settings) -> dict[str, int | str]:
    if settings.redis_url:
        return _redis_depths(settings)
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


def _redis_depths(settings) -> dict[str, int | str]:
    # The lists themselves, under REDIS_KEY_PREFIX: kombu's passive queue_declare looks
    # for the binding without the global key prefix and answered 0 for every queue.
    prefix = settings.redis_key_prefix or ""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in QUEUES:
                for suffix in PRIORITY_SUFFIXES:
                    pipe.llen(prefix + name + suffix)
            lengths = pipe.execute()
    except redis.RedisError as exc:  # status must still print when the broker is down
        return {name: f"unavailable ({type(exc).__name__})" for name in QUEUES}
    finally:
        client.close()
    step = len(PRIORITY_SUFFIXES)
    return {name: sum(lengths[i * step : (i + 1) * step]) for i, name in enumerate(QUEUES)}


def held_ids(settings) -> Held | None:
    """The ids in every send task the broker holds; None if it cannot be read."""
    try:
        if settings.redis_url:
            return _held_in_redis(settings)
        return _held_in_folder(Path(settings.broker_dir) / "queue")
    except (redis.RedisError, OSError) as exc:
        log.warning("broker contents not readable (%s); nothing requeued this pass", exc)
        return None


def _held_in_redis(settings) -> Held:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3)
    prefix = settings.redis_key_prefix or ""
    try:
        # The lists first: a worker pops a task from its list and then records it in
        # `unacked`, so reading in the other order could miss a task in transit. (Missing
        # one costs only a task that finds its rows gone.)
        waiting = _ids(
            json.loads(item)
            for queue in SEND_QUEUES
            for item in client.lrange(prefix + queue, 0, -1)
        )
        taken = _ids(json.loads(v)[0] for v in client.hvals(prefix + "unacked"))
    finally:
        client.close()
    return Held(waiting=frozenset(waiting), taken=frozenset(taken))


def _held_in_folder(folder: Path) -> Held:
    payloads = []
    for path in folder.glob("*.msg"):
        if path.name.partition(".")[2] not in {f"{q}.msg" for q in SEND_QUEUES}:
            continue
        try:
            payloads.append(json.loads(path.read_bytes()))
        except (OSError, ValueError):  # taken by a worker while we listed the folder
            continue
    return Held(waiting=frozenset(_ids(payloads)), taken=None)


def _ids(payloads) -> set[int]:
    """Message ids in Celery (protocol 2) task messages: the body is [args, kwargs, embed]
    and a send task's one argument is its list of ids."""
    ids: set[int] = set()
    for payload in payloads:
        try:
            if payload.get("headers", {}).get("task") not in SEND_TASKS:
                continue
            body = payload["body"]
            if payload.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args, kwargs, _ = json.loads(body)
            found = args[0] if args else kwargs.get("message_ids", [])
            ids.update(int(i) for i in found)
        except (KeyError, TypeError, ValueError, IndexError):
            log.debug("a broker message that is not a send task left aside", exc_info=True)
    return ids
