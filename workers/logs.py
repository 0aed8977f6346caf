"""How every process logs (worker, beat, web, CLI): LOG_FORMAT=text for a terminal, json
for a log pipeline (one object a line), at LOG_LEVEL.

A JSON line holds time, level, logger and message, the fields a caller passed as
`extra=` (message_id, provider_ids, ...), and the ids of what this process is doing now:
the Celery task (task_id, task) or the web request (request_id), kept in context
variables by workers/task_log.py and web/request_log.py. python-json-logger writes the
JSON (extras and exceptions already handled, one small dependency) rather than our own
encoder; structlog would mean changing every `log.info(...)` call to its API.

Masking (invariant 8): every line's message, exception text and string extras pass
through campaigns.redact.mask_text, so an address that reaches a log call by accident
(an exception's text, a payload, a forgotten mask()) is masked in text and JSON alike.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

from campaigns.redact import mask_text

# What this process is doing now; set by the task signals and the request middleware.
context: ContextVar[dict | None] = ContextVar("log_context", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "drip"


class ContextAndMask(logging.Filter):
    """Adds the current ids to the record and masks addresses in what it will print."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as it would
            return True
        record.msg, record.args = mask_text(message), None
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, mask_text(value))
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class _Masked:
    # The whole line, last: a traceback another handler formatted first is cached on the
    # record (exc_text) unmasked, and reaches this formatter as it was.
    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


class TextFormatter(_Masked, logging.Formatter):
    pass


class JsonLines(_Masked, JsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )

    def formatTime(self, record, datefmt=None) -> str:
        # ISO 8601 in UTC with milliseconds: what log pipelines parse without a pattern.
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def formatter(fmt: str) -> logging.Formatter:
    return JsonLines() if fmt == "json" else TextFormatter(TEXT_FORMAT)


def configure(log_format: str = "text", level: str = "INFO", stream=None) -> None:
    """Root logger: one handler on stderr with the chosen format, the ids and masking.
    Idempotent: a second call replaces our handler, never adds one."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(ContextAndMask())
    root.addHandler(handler)
    root.setLevel(level)
    # Python's warnings (Celery's "running as root", deprecations) as log lines too.
    logging.captureWarnings(True)


def configure_from(settings) -> None:
    configure(settings.log_format, settings.log_level)


def lean_records() -> None:
    """Log records that skip what no line here prints: the caller's file and line (a walk
    up the stack), thread and process names. The logging docs' own advice for speed;
    for the web processes, whose one line per request was a tenth of the open pixel's
    time (bench/web_load.py). Not for Celery's processes, whose lines name the process."""
    logging._srcfile = None  # documented in the logging HOWTO, "Optimization"
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def take_over_uvicorn() -> None:
    """uvicorn's loggers through our handler (so its lines are JSON too), and its access
    log off: web/request_log.py writes one line per request, with tokens cut short."""
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
