"""Outages said once: the first failure logs a WARNING naming what is down, the rest
are counted quietly, and the first success after them logs how long it lasted and how
much was skipped. One tracker per process and kind of outage (the database for tasks,
the broker for beat); a process that never saw the failure never says it ended."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)


class Outage:
    def __init__(self, what: str, logger: logging.Logger = log):
        self.what, self.log = what, logger
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, doing: str, exc: BaseException) -> None:
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
            self._failures += 1
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        if first:
            self.log.warning(
                "%s unreachable (%s: %s) during %s; retrying quietly, logged again when it is back",
                self.what,
                type(exc).__name__,
                detail,
                doing,
            )
        else:
            self.log.debug("%s still unreachable during %s", self.what, doing)

    def ok(self) -> None:
        if self._since is None:  # the common case: no lock, nothing to say
            return
        with self._lock:
            since, failures = self._since, self._failures
            self._since, self._failures = None, 0
        if since is not None:
            self.log.warning(
                "%s back after %.0f s; %d attempt(s) failed meanwhile",
                self.what,
                time.monotonic() - since,
                failures,
            )

    @contextlib.contextmanager
    def watch(self, doing: str):
        """Run a periodic task's body: a database error is logged once per outage and the
        run skipped (the next beat runs it again), instead of a traceback per run."""
        try:
            yield
        except OperationalError as exc:
            self.failed(doing, exc)
        else:
            self.ok()


database = Outage("database")
