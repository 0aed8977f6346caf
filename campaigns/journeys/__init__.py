"""Journeys: what a person's own doings change in their courses. goals.py (a campaign's
goal reached: exit, or jump to a step), triggers.py (campaigns that enroll people by
themselves), on_event.py (an event from outside, recorded and acted on: the one entry for
the events API and `drip import-events`)."""
