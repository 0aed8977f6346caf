"""Beat's scheduler, quiet about a broker outage: Celery's own logs a full traceback
(and the stack) for every due task it cannot publish, one every few seconds for as long
as Redis is away. This one says it once when publishing starts failing and once when it
works again, with how many runs were skipped; the schedule itself is unchanged (a tick
missed during the outage is not replayed: the next one claims everything due)."""

from __future__ import annotations

import logging

from celery.beat import PersistentScheduler

from workers.outages import Outage

log = logging.getLogger(__name__)
broker = Outage("broker", log)


class QuietScheduler(PersistentScheduler):
    def apply_entry(self, entry, producer=None):
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:  # what failed is said once per outage, by broker.failed
            broker.failed(f"publishing {entry.task}", exc.__cause__ or exc)
        else:
            broker.ok()
            log.debug("beat: sent %s (%s)", entry.name, entry.task)
