"""One log line per Celery task run: task name and id, the message ids it was handed (or
how many), what it returned (counts), how long it took and how it ended. Every line the
task logs meanwhile carries its task and task_id (workers/logs.py's context), so a send
task's lines and its provider results join on the message ids a tick claimed."""

from __future__ import annotations

import logging
import time

from celery import signals

from workers.logs import context

log = logging.getLogger("drip.tasks")
# Ids listed in full up to this many; past it the line says how many.
MAX_IDS = 200
_started: dict[str, float] = {}


def _ids(args, kwargs) -> dict:
    ids = kwargs.get("message_ids") or (args[0] if args and isinstance(args[0], list) else None)
    if not ids:
        return {}
    out = {"message_count": len(ids)}
    if len(ids) <= MAX_IDS:
        out["message_ids"] = list(ids)
    return out


@signals.task_prerun.connect
def _prerun(task_id=None, task=None, args=(), kwargs=None, **_) -> None:
    _started[task_id] = time.monotonic()
    ids = {"task": task.name, "task_id": task_id}
    # A send task enqueued by a tick names that tick: claim -> send joins on it.
    parent = getattr(task.request, "parent_id", None)
    if parent:
        ids["parent_task_id"] = parent
    context.set(ids)


@signals.task_postrun.connect
def _postrun(task_id=None, task=None, args=(), kwargs=None, retval=None, state=None, **_) -> None:
    started = _started.pop(task_id, None)
    ms = round((time.monotonic() - started) * 1000, 1) if started is not None else None
    fields = {"duration_ms": ms, "outcome": state or "unknown", **_ids(args, kwargs or {})}
    if isinstance(retval, dict | int | list) and not isinstance(retval, bool):
        fields["result"] = retval
    elif isinstance(retval, BaseException):
        fields["error"] = type(retval).__name__
    level = logging.INFO if state in ("SUCCESS", "RETRY") else logging.WARNING
    log.log(level, "task %s %s in %s ms", task.name, (state or "ended").lower(), ms, extra=fields)
    context.set(None)
