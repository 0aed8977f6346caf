"""Delivery: enrolling, claiming due steps into the outbox, composing and sending them,
what a provider's answer does, the reaper, and the scheduler's tick."""
