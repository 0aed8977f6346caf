"""Delivery: enrolling, claiming due steps into the outbox, sending, outcomes, the reaper
and the scheduler's tick."""
